"""Write every notebook's header: badges and pacing after the title, the Colab cell first.

    python scripts/notebook_header.py          # rewrite notebooks/NN_*.py and their .ipynb
    python scripts/notebook_header.py --check  # exit 1 if a header is missing or stale

The header is two cells placed after the notebook's title cell, in this order:

* a Markdown cell tagged ``header`` (:func:`usmlite_edu.course.plan.header_markdown`): the
  "Open in Colab" and Binder badges, prerequisites, reading time and the measured running
  times of ``notebooks/run_times.json``;
* a code cell tagged ``colab`` (:func:`usmlite_edu.course.plan.colab_cell`), just before the
  common set-up cell: on Colab it clones and installs the repository.

It also fills two blocks of README.md: the first notebook's badges (between
``<!-- badges:start/end -->``) and the lecture map (``<!-- lecture-map:start/end -->``,
:func:`usmlite_edu.course.plan.lecture_map`).

The badges and the clone URL come from ``pyproject.toml``'s ``[project.urls] Repository``:
a fork changes that line and runs this script. The ``.py`` is the source; the ``.ipynb``
is rewritten from it with jupytext (outputs kept), as ``jupytext --update`` does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import jupytext
from nbformat.v4 import new_code_cell, new_markdown_cell

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from usmlite_edu.course import plan as course  # noqa: E402

NB_DIR = ROOT / "notebooks"


def _tagged(nb, tag: str) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


def with_header(nb, name: str, url: str, times: dict, read_minutes: int):
    """``nb`` with its header cells (re)built; other cells untouched."""
    cells = [c for c in nb.cells if not {"header", "colab"} & set(c.metadata.get("tags", []))]
    setup_at = next(
        (
            i
            for i, c in enumerate(cells)
            if c.cell_type == "code"
            and "from usmlite_edu.course.notebook_setup import setup" in c.source
        ),
        None,
    )
    if setup_at is None or cells[0].cell_type != "markdown":
        raise ValueError(
            f"{name}: expected a Markdown title cell first and the common set-up cell after it"
        )
    header = new_markdown_cell(course.header_markdown(name, url, times, read_minutes))
    header.metadata["tags"] = ["header"]
    colab = new_code_cell(course.colab_cell(url))
    colab.metadata["tags"] = ["colab"]
    # title, (objectives...), header, colab, set-up: the header goes right after the title
    nb.cells = [cells[0], header, *cells[1:setup_at], colab, *cells[setup_at:]]
    return nb


def _fill(text: str, block: str, content: str) -> str:
    start, end = f"<!-- {block}:start -->\n", f"<!-- {block}:end -->"
    i, j = text.index(start) + len(start), text.index(end)
    return text[:i] + content.strip() + "\n" + text[j:]


def readme_text(url: str) -> str:
    readme = (ROOT / "README.md").read_text()
    first = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))[0].name
    readme = _fill(readme, "badges", course.badges_markdown(first, url))
    return _fill(readme, "lecture-map", course.lecture_map())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = ap.parse_args(argv)
    url, times = course.repository_url(ROOT), course.run_times()
    stale = []
    for py in sorted(NB_DIR.glob("[0-9][0-9]_*.py")):
        ipynb = py.with_suffix(".ipynb")
        before = py.read_text()
        nb = with_header(jupytext.read(py), ipynb.name, url, times, course.reading_minutes(py))
        after = jupytext.writes(nb, fmt="py:percent")
        if after != before:
            stale.append(py.name)
            if not args.check:
                py.write_text(after)
        if not args.check and after != before:
            # the .ipynb from the .py, keeping the .ipynb's outputs
            subprocess.run(
                [sys.executable, "-m", "jupytext", "-q", "--to", "ipynb", "--update", py.name],
                cwd=NB_DIR,
                check=True,
            )
    readme = readme_text(url)
    if readme != (ROOT / "README.md").read_text():
        stale.append("README.md")
        if not args.check:
            (ROOT / "README.md").write_text(readme)
    if args.check:
        if stale:
            print(f"stale headers: {', '.join(stale)}; run python scripts/notebook_header.py")
            return 1
        print("every notebook header is up to date")
    else:
        print(f"headers written; changed: {', '.join(stale) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
