"""The rendered book: a static HTML site of the notebook series (``usmlite-edu book``).

Three steps, each a function:

1. :func:`execute_series` runs every notebook of ``notebooks/`` (``NN_name.ipynb``, found by
   glob) with the project's own runner, :func:`usmlite_edu.course.notebook_runner.execute`, in
   full mode (the sizes a learner runs) or fast mode (``USMLITE_FAST=1``, the test command).
2. :func:`stage` lays out a Sphinx source folder: the README as the front page, the executed
   notebooks as pages (worked solutions collapsed behind a "show" toggle), the pages of
   ``docs/`` and the results' READMEs, and a page that says how this build was made (mode,
   per-notebook run time, commit, processor).
3. :func:`sphinx_build` renders it with MyST-NB (configuration: ``book/conf.py``), which
   never executes anything, then :func:`check_site` checks that every notebook has a page
   and every figure of every notebook is on it as a PNG file.

:func:`screenshot` and :func:`locate` let a test look at the result as a reader would:
headless Chromium draws a page scrolled to a figure, and normalised cross-correlation finds
the figure's pixels in the screenshot.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from html import escape as html_escape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from usmlite_edu.course import editions, notebook_runner
from usmlite_edu.speech.paths import in_checkout

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What the set-up cell prints first (NotebookEnv.summary): the mode the notebook ran in.
_MODE = re.compile(r"\bFAST=(True|False)\b")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$", re.M)


def _series(directory: Path | str | None) -> list[Path]:
    return notebook_runner.select(None, directory)


# ------------------------------------------------------------------------------ executing
def run_seconds(nb) -> float | None:
    """Wall time of an executed notebook's cells: the first cell's start to the last one's
    reply (nbclient's timing metadata; kernel start-up not included), or None if absent."""
    stamps = []
    for c in nb.cells:
        t = c.get("metadata", {}).get("execution", {})
        stamps += [t[k] for k in ("iopub.execute_input", "shell.execute_reply") if k in t]
    if not stamps:
        return None
    parsed = [datetime.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps]
    return (max(parsed) - min(parsed)).total_seconds()


def executed_mode(nb) -> bool | None:
    """``True`` if the notebook ran in fast mode, ``False`` in full mode (read from what its
    set-up cell printed), ``None`` if it does not say (not executed, or no set-up cell)."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        for o in c.get("outputs", []):
            m = _MODE.search(str(o.get("text", "")))
            if m:
                return m.group(1) == "True"
    return None


def _cell_timeout(fast: bool) -> int:
    """Seconds one cell may run: the runner's default in fast mode; in full mode the
    training cells of 06 and 07 can pass that on a slow machine, so three hours (a cell
    that hangs still ends)."""
    return 900 if fast else 3 * 3600


def execute_series(
    out_dir: Path | str, fast: bool, directory: Path | str | None = None
) -> list[Path]:
    """Execute every notebook of the series into ``out_dir`` (top to bottom, check cells
    assert); returns the executed copies in order. Prints each notebook's time."""
    out_dir = Path(out_dir)
    done = []
    for p in _series(directory):
        t0 = time.time()
        done.append(
            notebook_runner.execute(p, out_dir=out_dir, fast=fast, timeout=_cell_timeout(fast))
        )
        print(f"executed {p.name} in {time.time() - t0:.0f} s -> {done[-1]}", flush=True)
    return done


def collect_executed(
    executed_dir: Path | str, fast: bool, directory: Path | str | None = None
) -> list[Path]:
    """The executed copies in ``executed_dir`` of every notebook of the series.

    Raises ``FileNotFoundError`` naming the notebooks that have no executed copy there, and
    ``ValueError`` naming those that ran in the other mode (a full-mode book is never built
    from fast-mode copies by mistake) or do not say which.
    """
    import nbformat

    executed_dir = Path(executed_dir)
    series = _series(directory)
    missing = [p.name for p in series if not (executed_dir / p.name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"no executed copy of {', '.join(missing)} in {executed_dir.resolve()}: execute "
            f"them there first (usmlite-edu notebooks{'' if fast else ' --full'}), or leave "
            "out --executed to let the book execute the series"
        )
    wanted = "fast" if fast else "full"
    wrong = []
    for p in series:
        mode = executed_mode(nbformat.read(executed_dir / p.name, as_version=4))
        if mode is None or mode != fast:
            said = "no FAST= line" if mode is None else ("fast" if mode else "full")
            wrong.append(f"{p.name} ({said})")
    if wrong:
        raise ValueError(
            f"a {wanted}-mode book needs notebooks executed in {wanted} mode; in "
            f"{executed_dir.resolve()}: {', '.join(wrong)}"
            + ("" if fast else "; add --fast for a fast-mode book")
        )
    return [executed_dir / p.name for p in series]


# ------------------------------------------------------------------------------- staging
def _collapse_solutions(nb) -> int:
    """Put the instructor edition's answers behind toggles, so that a reader can predict
    before looking; returns how many solution cells there were.

    A solution code cell gets MyST-NB's ``hide-cell`` tag (input and output behind "show"),
    a code cell holding ``# ANSWER`` slots ``hide-input`` (its filled-in answers hidden, the
    check's output shown), and a solution markdown cell is wrapped in ``<details>`` (its
    headings, if any, become bold lines, since a section cannot sit inside raw HTML).
    """
    n = 0
    for c in nb.cells:
        if editions.is_solution(c):
            n += 1
            if c.cell_type == "code":
                _tag(c, "hide-cell")
            else:
                body = _HEADING.sub(r"**\1**", c.source)
                c.source = (
                    '<details class="usmlite-solution">\n<summary>Solution (click to show)'
                    f"</summary>\n\n{body}\n\n</details>"
                )
        elif c.cell_type == "code" and editions.answer_lines(c.source):
            _tag(c, "hide-input")
    return n


def _student_pages(nb) -> int:
    """The student edition of an executed notebook, for the student book; returns how many
    solution cells were dropped.

    As :func:`usmlite_edu.course.editions.make_edition` makes it (solutions dropped, every
    answer slot ``...``), but the other cells keep their executed outputs (figures,
    printed values: what a student sees on running them), except the cells that hold an
    answer slot or an exercise check, whose outputs were computed from the instructor's
    answers and are cleared."""
    n = sum(editions.is_solution(c) for c in nb.cells)
    nb.cells = [c for c in nb.cells if not editions.is_solution(c)]
    nb.metadata.setdefault("usmlite_edu", {})["edition"] = "student"
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        if editions.answer_lines(c.source) or editions.has_check(c.source):
            c.source = editions.student_source(c.source)
            c.outputs = []
            c.execution_count = None
    return n


def for_edition(nb, edition: str) -> int:
    """Prepare an executed notebook (in place) as a page of ``edition``'s book: the
    instructor book collapses the solutions (:func:`_collapse_solutions`), the student book
    has none (:func:`_student_pages`); returns how many solution cells there were."""
    if edition not in editions.EDITIONS:
        raise ValueError(
            f"unknown edition {edition!r}; choose one of {', '.join(editions.EDITIONS)}"
        )
    return _collapse_solutions(nb) if edition == "instructor" else _student_pages(nb)


def _for_reading(nb) -> None:
    """What a reader of the book skips: the Colab set-up cell (``colab`` tag) is removed
    (the page's launch buttons and the header's badges stand for it), and a cell that draws
    a figure shows the figure with its code behind a "show code" toggle (MyST-NB's
    ``hide-input``), so the plotting plumbing does not come before every picture. The
    notebooks themselves keep all their code in view."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        tags = c.metadata.get("tags", [])
        if "colab" in tags:
            _tag(c, "remove-cell")
        elif "hide-cell" not in tags and any(
            "image/png" in o.get("data", {}) for o in c.get("outputs", [])
        ):
            _tag(c, "hide-input")


def _tag(cell, tag: str) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


_LINK_TARGET = re.compile(r"\]\(([^)\s#]+)[^)]*\)|src=\"([^\"#]+)\"")

#: the order of ``docs/`` in the book's table of contents (pages not named here follow,
#: alphabetically; a name here without its page is left out)
DOCS_ORDER = (
    "training",
    "reproduction",
    "results",
    "conventions",
    "packed-format",
    "integer-inference",
    "scaling",
    "mixed-precision",
    "bad-inputs",
    "notebooks",
    "book",
    "other-pythons",
    "architecture",
    "maintainers",
)


def _readme_files(readme: str, root: Path, base: str = "") -> list[str]:
    """Files of the repository a page links or shows (relative paths that exist, as paths
    from the repository's root); ``base`` is the page's folder (``""``: the README)."""
    found = []
    for target in _LINK_TARGET.findall(readme):
        rel = next(t for t in target if t)
        if "://" in rel or rel.startswith(("/", "mailto:")):
            continue
        rel = os.path.normpath(os.path.join(base, rel))
        if rel.startswith(".."):
            continue
        if (root / rel).is_file() and (root / rel).suffix not in {".md", ".ipynb"}:
            found.append(Path(rel).as_posix())
    return sorted(set(found))


def doc_pages(root: Path) -> tuple[list[str], list[str]]:
    """The book's Markdown pages besides the README, as paths from the repository's root:
    ``docs/*.md`` (in :data:`DOCS_ORDER`) and the results' ``results/*/README.md``."""
    docs = {p.stem: p for p in (root / "docs").glob("*.md")}
    order = [n for n in DOCS_ORDER if n in docs] + sorted(set(docs) - set(DOCS_ORDER))
    results = sorted((root / "results").glob("*/README.md"))
    rel = [docs[n].relative_to(root).as_posix() for n in order]
    return rel, [p.relative_to(root).as_posix() for p in results]


def _to_front_page(text: str, base: str) -> str:
    """``text`` with its links to the repository's README pointed at the front page
    (``index.md``), which is the README in the book."""

    def swap(m: re.Match) -> str:
        target = m.group(1)
        path, sep, anchor = target.partition("#")
        if os.path.normpath(os.path.join(base, path)) != "README.md":
            return m.group(0)
        return m.group(0).replace(
            f"({target}", f"({path[: -len('README.md')]}index.md{sep}{anchor}", 1
        )

    return re.sub(r"\]\(([^)\s]+)", swap, text)


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    import platform

    return f"{platform.machine()} {platform.processor()}".strip() + f", {os.cpu_count()} cores"


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


@dataclasses.dataclass(frozen=True)
class Staged:
    """A Sphinx source folder ready to render."""

    src: Path
    pages: list[str]  # the notebooks' docnames, e.g. "notebooks/01_per_channel_quantization"
    fast: bool
    docs: tuple[str, ...] = ()  # the other pages' docnames, e.g. "docs/architecture"


def stage(
    executed: list[Path],
    src: Path | str,
    fast: bool,
    root: Path,
    executed_here: bool = True,
    edition: str = "instructor",
) -> Staged:
    """Write the Sphinx sources to ``src`` (emptied first): the front page ``index.md`` (the
    README with the tables of contents appended), ``notebooks/NN_name.ipynb`` (the executed
    copies, solutions collapsed, or for the student ``edition`` left out:
    :func:`for_edition`), the pages of ``docs/`` and the results' READMEs
    (:func:`doc_pages`, links to the README pointed at the front page), the files those
    pages show, and ``build.md``."""
    import nbformat

    src = Path(src)
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    pages, rows = [], []
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        for_edition(nb, edition)
        _for_reading(nb)
        nbformat.write(nb, src / "notebooks" / path.name)
        pages.append(f"notebooks/{path.stem}")
        secs = run_seconds(nb)
        rows.append(f"| {path.stem} | {'not recorded' if secs is None else f'{secs:,.0f}'} |")

    readme = (root / "README.md").read_text()
    docs, results = doc_pages(root)
    shown = _readme_files(readme, root)
    for page in docs + results:
        base = Path(page).parent.as_posix()
        text = (root / page).read_text()
        shown += _readme_files(text, root, base)
        (src / page).parent.mkdir(parents=True, exist_ok=True)
        (src / page).write_text(_to_front_page(text, base))
    for rel in sorted(set(shown)):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, src / rel)

    def toc(caption: str, names: list[str]) -> str:
        head = ["", "```{toctree}", ":hidden:", f":caption: {caption}", ":maxdepth: 1", ""]
        return "\n".join([*head, *names, "```", ""])

    docnames = [p.removesuffix(".md") for p in docs + results]
    (src / "index.md").write_text(
        readme.rstrip()
        + "\n"
        + toc("Notebooks", pages)
        + toc("Documentation", docnames[: len(docs)])
        + toc("Results", docnames[len(docs) :])
        + "\n".join(["", "```{toctree}", ":hidden:", ":caption: This build", "", "build", "```"])
    )

    mode = (
        "**fast mode** (`USMLITE_FAST=1`: tiny sizes and a few training steps, as in the "
        "test command; the trained-model results of notebooks 06 and 07 are not what a "
        "learner sees)"
        if fast
        else "**full mode** (the sizes a learner runs in JupyterLab)"
    )
    who = (
        "by this build, with `usmlite_edu.course.notebook_runner`"
        if executed_here
        else "beforehand, with `usmlite_edu.course.notebook_runner`, and passed in with `--executed`"
    )
    total = sum(s for p in executed if (s := run_seconds(nbformat.read(p, as_version=4))))
    lines = [
        "# About this build",
        "",
        f"The notebooks on these pages were executed in {mode} {who}; the book tool only "
        "renders them (MyST-NB with execution off).",
        "",
        f"- commit: `{_commit(root)}`",
        f"- built: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {_processor()}",
        f"- Python {sys.version.split()[0]}",
        "",
        "Time each notebook's cells took (first cell's start to last cell's end, from the "
        "executed notebook's own timing records; kernel start-up not included):",
        "",
        "| notebook | seconds |",
        "|---|---:|",
        *rows,
        f"| **all** | **{total:,.0f}** |",
        "",
    ]
    (src / "build.md").write_text("\n".join(lines))
    return Staged(src=src, pages=pages, fast=fast, docs=tuple(docnames))


# ----------------------------------------------------------------------------- rendering
def conf_dir(root: Path) -> Path:
    """``book/`` of the clone: the Sphinx configuration."""
    return root / "book"


def sphinx_build(staged: Staged, html: Path | str, root: Path, quiet: bool = True) -> Path:
    """Render ``staged`` to ``html`` with Sphinx (``book/conf.py``); returns ``html``.

    Raises ``RuntimeError`` with Sphinx's output when the build fails. Warnings go to
    ``html/../sphinx-warnings.txt``.
    """
    html = Path(html)
    if html.exists():
        shutil.rmtree(html)
    warnings = html.parent / "sphinx-warnings.txt"
    doctrees = html.parent / "doctrees"
    shutil.rmtree(doctrees, ignore_errors=True)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(conf_dir(root))]
    cmd += ["-d", str(doctrees), "-w", str(warnings), str(staged.src), str(html)]
    if quiet:
        cmd.insert(3, "-q")
    env = dict(os.environ, USMLITE_BOOK_FAST="1" if staged.fast else "0")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(
            f"sphinx-build failed (exit {out.returncode}): {' '.join(cmd)}\n"
            f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
        )
    return html


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append({k: v or "" for k, v in attrs})
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


def page_figures(page: Path) -> list[tuple[str, Path]]:
    """The notebook figures of a built page: ``(id, file)`` of each ``<img id="figure-N">``
    (``book/conf.py`` numbers the PNG outputs of the notebook's cells), in page order."""
    parser = _Images()
    parser.feed(page.read_text())
    return [
        (im["id"], (page.parent / im.get("src", "")).resolve())
        for im in parser.images
        if im.get("id", "").startswith("figure-")
    ]


def png_outputs(nb) -> int:
    """How many PNG figures the notebook's cells displayed."""
    return sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )


def page_of(html: Path | str, notebook: Path | str) -> Path:
    """The built page of a notebook (by its file name)."""
    return Path(html) / "notebooks" / f"{Path(notebook).stem}.html"


def check_site(
    html: Path | str, executed: list[Path], edition: str = "instructor"
) -> dict[str, int]:
    """Check the built site: a front page, MathJax shipped with the site (no page loads it
    from elsewhere: an offline reader must see formulas), and for every executed notebook a
    page that shows each of its PNG figures from an existing PNG file (those of the
    ``edition``'s page: the student book has no solution and no exercise output), and in a
    student book no page that holds a solution. Returns figures per page; raises
    ``RuntimeError`` listing every problem."""
    import nbformat

    html = Path(html)
    problems, counts = [], {}
    if not (html / "index.html").is_file():
        problems.append(f"no front page {html / 'index.html'}")
    if not (html / "_static" / "mathjax" / "tex-chtml.js").is_file():
        problems.append(f"MathJax is not shipped in {html / '_static' / 'mathjax'}")
    if not (html / "_static" / "usmlite.css").is_file():
        problems.append("the book's style sheet (book/_static/usmlite.css) was not copied")
    for page in sorted(html.rglob("*.html")):
        for src in re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page.read_text()):
            if "://" in src or src.startswith("//"):
                problems.append(f"{page.name} loads MathJax from {src}, not from the book")
    for path in executed:
        page = page_of(html, path)
        if not page.is_file():
            problems.append(f"{path.name}: no page {page}")
            continue
        nb = nbformat.read(path, as_version=4)
        for_edition(nb, edition)
        want = png_outputs(nb)
        figures = page_figures(page)
        if edition == "student" and "usmlite-solution" in page.read_text():
            problems.append(f"{page.name}: a solution in the student book")
        counts[path.stem] = len(figures)
        if len(figures) != want:
            problems.append(f"{page.name}: {len(figures)} figures on the page, {want} in {path}")
        for fid, f in figures:
            if not f.is_file():
                problems.append(f"{page.name}#{fid}: image file {f} missing")
            elif f.read_bytes()[:8] != PNG_MAGIC:
                problems.append(f"{page.name}#{fid}: {f} is not a PNG file")
    if problems:
        raise RuntimeError("the built book is incomplete:\n  " + "\n  ".join(problems))
    return counts


# --------------------------------------------------------------------------------- build
def build(
    out: Path | str = "build/book",
    fast: bool = False,
    directory: Path | str | None = None,
    executed_dir: Path | str | None = None,
    edition: str = "instructor",
) -> Path:
    """Execute the series (or take ``executed_dir``'s copies), stage, render and check the
    book of ``edition`` (``instructor``: worked solutions behind toggles; ``student``: no
    solutions, answer slots empty, exercise outputs cleared); returns the site's folder
    ``out/html`` (open ``out/html/index.html``).

    Executed copies go to ``out/executed-fast`` or ``out/executed-full``.
    """
    root = in_checkout(
        "book/conf.py",
        "the book's configuration (book/conf.py)",
        "build the book from a clone of the repository",
        start=Path(directory) if directory is not None else None,
    ).parents[1]
    out = Path(out)
    if executed_dir is None:
        executed = execute_series(out / f"executed-{'fast' if fast else 'full'}", fast, directory)
    else:
        executed = collect_executed(executed_dir, fast, directory)
    staged = stage(
        executed, out / "src", fast, root, executed_here=executed_dir is None, edition=edition
    )
    html = sphinx_build(staged, out / "html", root)
    counts = check_site(html, executed, edition)
    warnings = out / "sphinx-warnings.txt"
    n_warn = len(warnings.read_text().splitlines()) if warnings.is_file() else 0
    print(
        f"{edition} book ({'fast' if fast else 'full'} mode): {len(counts)} notebook pages, "
        f"{sum(counts.values())} figures -> {html / 'index.html'}"
        + (f" ({n_warn} lines of Sphinx warnings in {warnings})" if n_warn else ""),
        flush=True,
    )
    return html


# --------------------------------------------------------------------- looking at a page
def find_chromium() -> str | None:
    """A headless-capable Chromium: ``$USMLITE_CHROMIUM``, else ``chromium`` or
    ``chromium-browser`` on the PATH (Debian's package), else None."""
    if os.environ.get("USMLITE_CHROMIUM"):
        return os.environ["USMLITE_CHROMIUM"]
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(
    url: str,
    out: Path | str,
    size: tuple[int, int] = (1280, 1000),
    chromium: str | None = None,
    timeout: float = 120,
) -> np.ndarray:
    """Draw ``url`` in headless Chromium at ``size`` CSS pixels, one device pixel each; save
    the PNG to ``out`` and return it as an RGB array.

    A fragment (``page.html#figure-2``) scrolls to that element. The page is drawn inside a
    frame of exactly ``size``: Chromium's ``--screenshot`` draws a scrolled top-level page
    blank (seen with Chromium 156 headless, even on a plain test page), while a scrolled
    frame draws. Every host name fails to resolve, so a page that would fetch from the
    network (MathJax, widget scripts) loads at once, without it.
    """
    from PIL import Image

    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError(
            "no Chromium found: install Debian's chromium or set USMLITE_CHROMIUM"
        )
    out = Path(out)
    out.unlink(missing_ok=True)
    w, h = size
    with tempfile.TemporaryDirectory(prefix="usmlite_chromium_") as tmp:
        frame = Path(tmp) / "frame.html"
        frame.write_text(
            '<!DOCTYPE html><html><body style="margin:0;overflow:hidden">'
            f'<iframe src="{html_escape(url)}" style="border:0;width:{w}px;height:{h}px">'
            "</iframe></body></html>"
        )
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--no-first-run",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=3000",
            f"--window-size={w},{h}",
            f"--screenshot={out.resolve()}",
            frame.as_uri(),
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        raise RuntimeError(
            f"Chromium wrote no screenshot (exit {run.returncode}): {' '.join(cmd)}\n"
            f"{run.stderr[-2000:]}"
        )
    return np.asarray(Image.open(out).convert("RGB"))


def rendered_dom(url: str, chromium: str | None = None, timeout: float = 120) -> str:
    """The DOM of ``url`` after its scripts ran (headless Chromium ``--dump-dom``, 10 s of
    virtual time, every host name unresolvable as in :func:`screenshot`): what MathJax
    typeset is there as ``mjx-container`` elements, and a formula it could not typeset is
    left as its raw ``\\(...\\)`` text."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError(
            "no Chromium found: install Debian's chromium or set USMLITE_CHROMIUM"
        )
    with tempfile.TemporaryDirectory(prefix="usmlite_chromium_") as tmp:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0 or "<html" not in run.stdout:
        raise RuntimeError(f"Chromium dumped no page (exit {run.returncode}): {run.stderr[-2000:]}")
    return run.stdout


def raw_formulas(dom: str) -> list[str]:
    """The ``\\(...\\)`` and ``\\[...\\]`` formulas left as text in a rendered page's body
    (scripts, styles and code blocks, which may hold such text on purpose, left out): the
    first 24 characters from each opening ``\\(`` or ``\\[``."""
    body = re.sub(r"<(script|style|pre|code)\b.*?</\1>", "", dom, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", "", body)
    return [text[m.start() : m.start() + 24] for m in re.finditer(r"\\[(\[]", text)]


def _gray(image: np.ndarray) -> np.ndarray:
    """Luminance in [0, 255]; an alpha channel is composited onto white (the page)."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        return a
    if a.shape[2] == 4:
        alpha = a[..., 3:4] / 255.0
        a = a[..., :3] * alpha + 255.0 * (1 - alpha)
    return a[..., :3] @ np.array([0.299, 0.587, 0.114])


def _window_sums(a: np.ndarray, h: int, w: int) -> np.ndarray:
    c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


def locate(screen: np.ndarray, figure: np.ndarray) -> tuple[float, tuple[int, int] | None]:
    """Where ``figure`` appears in ``screen`` at the same scale: the best normalised
    cross-correlation of the figure's luminance with each same-sized window of the screen's
    (1 is an exact copy up to brightness and contrast; a blank or unrelated window scores
    near 0) and that window's top-left corner ``(row, column)``. A figure larger than the
    screen scores 0 at ``None``.

    Raises ``ValueError`` for a figure of one flat colour (it would match any blank area).
    """
    from scipy.signal import fftconvolve

    s, f = _gray(screen), _gray(figure)
    h, w = f.shape
    if h > s.shape[0] or w > s.shape[1]:
        return 0.0, None
    f0 = f - f.mean()
    fnorm = np.sqrt((f0**2).sum())
    if fnorm < 1e-6:
        raise ValueError("the figure is one flat colour: nothing to look for")
    corr = fftconvolve(s, f0[::-1, ::-1], mode="valid")
    n = h * w
    var = _window_sums(s * s, h, w) - _window_sums(s, h, w) ** 2 / n
    denom = np.sqrt(np.maximum(var, 0.0)) * fnorm
    ncc = np.where(denom > 1e-6 * fnorm, corr / np.maximum(denom, 1e-12), 0.0)
    r, c = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    return float(ncc[r, c]), (int(r), int(c))
