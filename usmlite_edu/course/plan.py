"""The series as a course: what each notebook needs, how long it takes, where it fits.

One table, :data:`PLAN`, says for every notebook of ``notebooks/`` its prerequisites, the
time to read it, the lecture topic it serves and what to assign as homework. The time to
*run* it is measured, not written here: ``scripts/time_notebooks.py`` executes notebooks
and records their wall times, with the processor, in ``notebooks/run_times.json``.
``scripts/notebook_header.py`` writes both into each notebook's header cell (beside the
Colab and Binder badges, whose links come from ``pyproject.toml``'s repository URL), and
the README's lecture map is :func:`lecture_map`'s table. ``tests/test_course.py`` checks
that every notebook has a plan, a measured run time and an up-to-date header.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from urllib.parse import quote

from usmlite_edu.course import editions

__all__ = [
    "PLAN",
    "NotebookPlan",
    "badges_markdown",
    "colab_cell",
    "header_markdown",
    "lecture_map",
    "reading_minutes",
    "repository_url",
    "run_times",
]

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class NotebookPlan:
    """One notebook's place in a course."""

    number: str  # "01"
    prerequisites: str  # what the reader should know or have run first
    lecture: str  # the lecture topic it serves
    homework: str  # what to assign after the lecture


PLAN: dict[str, NotebookPlan] = {
    p.number: p
    for p in (
        NotebookPlan(
            "01",
            "Python and NumPy; matrix products. No machine learning needed.",
            "L1 Integer weights: per-channel scales, rounding error, Eq. (1) and (2)",
            "Exercises 1-3 (the int4/int8 error ratio, a moving outlier, int32 accumulation)",
        ),
        NotebookPlan(
            "02",
            "Notebook 01.",
            "L2 N:M sparsity: masks, the energy they keep, one-shot and few-shot",
            "Exercises 1-3 (1:4 on Fig. 1, heavier tails, the length of the few-shot phase)",
        ),
        NotebookPlan(
            "03",
            "Notebooks 01-02; gradients and the chain rule (any deep-learning course's first weeks).",
            "L3 Training through rounding: the straight-through estimator, QAT on a toy",
            "Exercises 1-3 (where clipping blocks gradients, sub-channels or bits, your own STE)",
        ),
        NotebookPlan(
            "04",
            "Notebooks 01 and 03.",
            "L4 Two bits: asymmetric grids, sub-channel groups, clipping",
            "Exercises 1-3 (the price of 128 groups, more scales or a better grid, which groups get clipped)",
        ),
        NotebookPlan(
            "05",
            "Notebooks 01-04.",
            "L5 Joint compression and model size: Algorithm 1, the size column",
            "Exercises 1-3 (a size the paper did not print, what moves the frontier, a narrow model's overhead)",
        ),
        NotebookPlan(
            "06",
            "Notebooks 01-05; convolutions and attention at the level of a deep-learning course.",
            "L6 The speech model: log-mel features, Conformer blocks, CTC and its decoding",
            "Exercises 1-3 (feature shapes, encoder frames and CTC, a hand-made CTC path)",
        ),
        NotebookPlan(
            "07",
            "Notebook 06 (its run or the committed B0).",
            "L7 Compression-aware fine-tuning: B0, PTQ live, Algorithm 1 on int4 + 2:4 and its invariants",
            "Exercises 1-2 (the size column, nested masks); fine-tune your own spec (section 4)",
        ),
        NotebookPlan(
            "13",
            "Notebook 07; paired bootstrap intervals (explained inside). Optional: no later notebook needs it.",
            "Deep dive after L7 (optional): the reduced-scale Tables 1-3, every WER from its transcripts, the paper's claims with paired intervals",
            "Exercises 1-3 (the Pareto frontier, what one word weighs, a halved margin); compare your spec of 07 paired with a row",
        ),
        NotebookPlan(
            "08",
            "Notebooks 05-06; what data and model parallelism are (any distributed-training introduction).",
            "L8 Scaling up: device meshes, sharded compressed weights, memory plans for the 2B model",
            "Exercises 1-3 (one device's slice, the state per core, whether the 2B step fits without remat)",
        ),
        NotebookPlan(
            "09",
            "Notebooks 05 and 07.",
            "L9 Deployment: a packed file whose bytes match the size column, integer inference and its speed",
            "Exercises (the bytes of another spec, the W8A8 rounding bound); time --arith on your own machine",
        ),
        NotebookPlan(
            "10",
            "Notebooks 01, 02 and 04.",
            "Lab session: the quantization-error explorer (fits after L4 or L5)",
            "Exercises 1-3 (three levels, a loud channel, an int2 layer's bytes); one setting of your own with its PTQ WER",
        ),
        NotebookPlan(
            "11",
            "Notebooks 01-03 (grids, N:M masks, the STE) and 07 (fine-tuning).",
            "L10 Beyond the paper: SR-STE for N:M masks and learned step sizes (LSQ)",
            "Exercises 1-3 (SR-STE with a frozen mask, the learned int2 step, the paper's initialisation at int8)",
        ),
        NotebookPlan(
            "12",
            "Notebooks 01-05 (specs and the size column) and 07 (B0); paired comparisons: 13 (optional).",
            "L11 Beyond the paper: a spec per layer, from sensitivities and a knapsack or a Gumbel-softmax supernet",
            "Exercises 1-3 (a hand-made map's size, the size penalty, the most decided layer); rerun with your own BUDGET",
        ),
    )
}


def repository_url(root: Path = ROOT) -> str:
    """The repository's public URL, ``[project.urls] Repository`` of ``pyproject.toml``."""
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    try:
        return meta["urls"]["Repository"].rstrip("/")
    except KeyError:
        raise ValueError(
            f"{root / 'pyproject.toml'} has no [project.urls] Repository: the badges and the "
            "Colab cell need the repository's https URL there"
        ) from None


def _github_path(url: str) -> str:
    prefix = "https://github.com/"
    if not url.startswith(prefix):
        raise ValueError(
            f"Colab and Binder open notebooks from GitHub; {url!r} is not on github.com"
        )
    return url[len(prefix) :]


def badges_markdown(notebook: str, url: str, branch: str = "main") -> str:
    """The "Open in Colab" and Binder badges of ``notebooks/<notebook>``."""
    gh = _github_path(url)
    colab = f"https://colab.research.google.com/github/{gh}/blob/{branch}/notebooks/{notebook}"
    binder = f"https://mybinder.org/v2/gh/{gh}/{branch}?labpath={quote('notebooks/' + notebook, safe='')}"
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({binder})"
    )


def run_times(path: Path | None = None) -> dict:
    """``notebooks/run_times.json``: measured seconds per notebook and mode, and where."""
    path = path or ROOT / "notebooks" / "run_times.json"
    return json.loads(path.read_text()) if path.exists() else {"notebooks": {}}


#: Reading speed for technical prose with formulas, and the time an exercise takes.
WORDS_PER_MINUTE = 120
MINUTES_PER_EXERCISE = 5


def reading_minutes(path: Path) -> int:
    """Minutes to work through the notebook at ``path`` (``.ipynb`` or jupytext ``.py``):
    its Markdown words (solutions excluded) at :data:`WORDS_PER_MINUTE`, plus
    :data:`MINUTES_PER_EXERCISE` per exercise check, rounded up to 5 minutes. A rule of
    thumb that scales with the text, not a measurement of learners."""
    import jupytext

    nb = jupytext.read(path)
    words = sum(
        len(c.source.split())
        for c in nb.cells
        if c.cell_type == "markdown"
        and not editions.is_solution(c)
        and "header" not in c.metadata.get("tags", [])
    )
    minutes = words / WORDS_PER_MINUTE + MINUTES_PER_EXERCISE * editions.count_checks(nb)
    return int(-(-minutes // 5) * 5)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def header_markdown(notebook: str, url: str, times: dict, read_minutes: int) -> str:
    """The header cell: badges, then prerequisites, reading time and measured run times."""
    number = notebook[:2]
    if number not in PLAN:
        raise KeyError(f"notebook {notebook} has no entry in usmlite_edu.course.plan.PLAN: add one")
    plan = PLAN[number]
    measured = times.get("notebooks", {}).get(number, {})
    modes = [mode for mode in ("fast", "full") if mode in measured]
    # each figure's machine: its own where recorded, else the file's default
    where = {m: measured.get("machine", {}).get(m) or times.get("machine", "") for m in modes}
    one_machine = len(set(where.values())) == 1
    runs = [
        f"{_duration(measured[m])} in {m} mode" + ("" if one_machine else f" ({where[m]})")
        for m in modes
    ]
    run = "; ".join(runs) if runs else "not measured yet"
    how = "`python scripts/time_notebooks.py`"
    shared = where[modes[0]] if runs and one_machine else ""
    cite = f" ({shared}; {how})." if shared else (f" ({how})." if runs else ".")
    return (
        badges_markdown(notebook, url)
        + "\n\n"
        + f"* **Before you start:** {plan.prerequisites}\n"
        + f"* **Reading time:** about {read_minutes} min (its text at {WORDS_PER_MINUTE} words "
        f"a minute, {MINUTES_PER_EXERCISE} min an exercise).\n"
        + f"* **Running time:** {run}"
        + cite
        + " Fast mode (`USMLITE_FAST=1`) uses tiny sizes; full mode is what the figures in "
        "the text describe."
    )


def colab_cell(url: str) -> str:
    """The install cell every notebook runs first: on Colab it clones the repository,
    installs the package (its version ranges, not the exact pins) and moves into the
    clone's ``notebooks/`` so ``data_small/`` and ``results/`` are found; elsewhere it does
    nothing (a local clone or Binder, whose image is built from ``environment.yml``)."""
    return (
        "# Colab only (elsewhere this cell does nothing): clone the repository, install the\n"
        "# package and work in the clone's notebooks/ folder, as in a local checkout.\n"
        "import os\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        '    CLONE = "/content/usmlite_edu"\n'
        "    if not os.path.isdir(CLONE):\n"
        "        subprocess.run(\n"
        f'            ["git", "clone", "--depth", "1", "{url}", CLONE],\n'
        "            check=True,\n"
        "        )\n"
        '        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", CLONE], check=True)\n'
        "    sys.path.insert(0, CLONE)  # an editable install is seen by new kernels only\n"
        '    os.chdir(f"{CLONE}/notebooks")'
    )


def lecture_map(times: dict | None = None) -> str:
    """The README's lecture plan: a Markdown table, one row per notebook of :data:`PLAN`."""
    times = times if times is not None else run_times()
    rows = [
        "| lecture | notebook | before it | reading | running (fast / full) | homework |",
        "|---|---|---|---|---|---|",
    ]
    names = {p.name[:2]: p.name for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
    for number, plan in PLAN.items():
        measured = times.get("notebooks", {}).get(number, {})
        run = " / ".join(_duration(measured[m]) if m in measured else "?" for m in ("fast", "full"))
        name = names.get(number, number)
        read = f"{reading_minutes(ROOT / 'notebooks' / name)} min" if number in names else "?"
        rows.append(
            f"| {plan.lecture} | [{number}](notebooks/{name}) | {plan.prerequisites} | "
            f"{read} | {run} | {plan.homework} |"
        )
    return "\n".join(rows)
