"""The rendered book (usmlite_edu.course.book, book/conf.py, `make book`).

The slow tests build the book from the fast-mode executed notebooks that
tests/test_notebooks.py also checks (executed once per test run, tests/executed_notebooks.py),
then look at it: every notebook found by glob has a page, each page shows exactly its
notebook's figures as PNG files, and headless Chromium, scrolled to a figure on two pages,
draws that figure's pixels (skipped, saying why, where Chromium is not installed).
"""

import base64
import html as html_lib
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import pytest
from executed_notebooks import cache_dir, executed
from nbclient.exceptions import CellExecutionError
from PIL import Image

from usmlite_edu import cli
from usmlite_edu.course import book, editions, notebook_runner

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = notebook_runner.list_notebooks(NB_DIR)
# the module's tests share one build: keep them on one xdist worker
pytestmark = pytest.mark.xdist_group("book")


def _code(source, text):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return cell


def _fake_executed(directory: Path, fast: bool) -> None:
    """An 'executed' copy of each notebook of the series whose set-up cell says the mode."""
    directory.mkdir(parents=True, exist_ok=True)
    for p in NOTEBOOKS:
        nb = nbformat.v4.new_notebook()
        nb.cells = [_code("print(env.summary())", f"FAST={fast}  seed 0\n")]
        nbformat.write(nb, directory / p.name)


# ----------------------------------------------------------------------- quick (no build)
def test_locate_finds_a_figure_and_nothing_else():
    rng = np.random.default_rng(0)
    screen = np.full((300, 400, 3), 255, np.uint8)
    figure = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    screen[100:160, 250:330] = figure
    score, where = book.locate(screen, figure)
    assert score > 0.999 and where == (100, 250)
    # an alpha channel is composited onto white, as the page draws it
    rgba = np.concatenate([figure, np.full((60, 80, 1), 255, np.uint8)], axis=2)
    assert book.locate(screen, rgba)[1] == (100, 250)
    # another figure, a blank page, a page too small: no match
    other = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert book.locate(screen, other)[0] < 0.2
    assert book.locate(np.full_like(screen, 255), figure)[0] == 0.0
    assert book.locate(screen[:50], figure) == (0.0, None)
    with pytest.raises(ValueError, match="flat colour"):
        book.locate(screen, np.full((10, 10, 3), 7, np.uint8))


def test_stage_puts_the_readme_first_and_collapses_solutions(tmp_path):
    # the committed notebooks stand in for executed ones: staging only copies and tags
    staged = book.stage(NOTEBOOKS, tmp_path / "src", fast=True, root=ROOT)
    index = (staged.src / "index.md").read_text()
    assert index.startswith((ROOT / "README.md").read_text().rstrip())
    toc = index[index.index("```{toctree}") :]
    assert re.findall(r"^notebooks/\S+$", toc, re.M) == [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    assert staged.pages == [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    # docs/ and the results' READMEs are pages, in the contents after the notebooks
    docs, results = book.doc_pages(ROOT)
    assert "docs/architecture.md" in docs and "results/cpu/README.md" in results
    assert set(docs) == {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert list(staged.docs) == [p.removesuffix(".md") for p in docs + results]
    for page in docs + results:
        assert (staged.src / page).is_file(), page
        assert re.search(rf"^{re.escape(page.removesuffix('.md'))}$", toc, re.M), page
    # a page's link to the README points at the front page; its other links stay
    notebooks_page = (staged.src / "docs" / "notebooks.md").read_text()
    assert "](../index.md#the-notebooks)" in notebooks_page and "../README.md" not in notebooks_page
    assert "](book.md)" in notebooks_page
    # the files the pages show come along (the results plot of docs/results.md and
    # results/cpu/README.md)
    assert (staged.src / "results" / "cpu" / "plot.png").read_bytes()[:8] == book.PNG_MAGIC
    solutions = answers = colab = 0
    for p in NOTEBOOKS:
        for a, b in zip(
            nbformat.read(p, 4).cells, nbformat.read(staged.src / "notebooks" / p.name, 4).cells
        ):
            if "solution" not in a.metadata.get("tags", []):
                if a.cell_type == "code" and "# ANSWER" in a.source:  # filled-in answers
                    assert b.metadata["tags"] == [*a.metadata.get("tags", []), "hide-input"]
                    answers += 1
                elif "colab" in a.metadata.get("tags", []):  # the set-up cell is not read
                    assert b.metadata["tags"] == ["colab", "remove-cell"]
                    colab += 1
                else:
                    assert a == b
                continue
            solutions += 1
            if a.cell_type == "code":
                assert "hide-cell" in b.metadata["tags"] and a.source == b.source
            else:
                assert b.source.startswith('<details class="usmlite-solution">')
                assert b.source.rstrip().endswith("</details>") and not re.search(
                    r"^#", b.source, re.M
                )
    assert solutions > 0 and answers > 0 and colab == len(NOTEBOOKS)
    about = (staged.src / "build.md").read_text()
    assert "**fast mode**" in about and "| **all** |" in about


def test_executed_copies_are_checked_for_presence_and_mode(tmp_path):
    _fake_executed(tmp_path / "fast", fast=True)
    got = book.collect_executed(tmp_path / "fast", fast=True, directory=NB_DIR)
    assert [p.name for p in got] == [p.name for p in NOTEBOOKS]
    # a full-mode book is never built from fast-mode copies
    with pytest.raises(ValueError, match=rf"full mode.*{NOTEBOOKS[0].name} \(fast\)"):
        book.collect_executed(tmp_path / "fast", fast=False, directory=NB_DIR)
    (tmp_path / "fast" / NOTEBOOKS[-1].name).unlink()
    with pytest.raises(FileNotFoundError, match=f"no executed copy of {NOTEBOOKS[-1].name}"):
        book.collect_executed(tmp_path / "fast", fast=True, directory=NB_DIR)
    # the CLI says the same in one line, exit code 2
    assert (
        cli.main(["book", "--fast", "--executed", str(tmp_path / "fast"), "--dir", str(NB_DIR)])
        == 2
    )


def test_each_notebook_is_executed_once_per_test_run(tmp_path, tmp_path_factory):
    """tests/executed_notebooks.py: concurrent requests (two xdist workers) execute a
    notebook once; a failed one is not executed again, its first error is quoted."""
    log = tmp_path / "ran.txt"
    ok, bad = tmp_path / "98_cache_probe.ipynb", tmp_path / "99_cache_probe_fails.ipynb"
    for path, src in ((ok, f"open({str(log)!r}, 'a').write('ran\\n')"), (bad, "1 / 0")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src)]
        nbformat.write(nb, path)
    with ThreadPoolExecutor(2) as pool:
        copies = list(pool.map(lambda _: executed(ok, tmp_path_factory), range(2)))
    assert copies[0] == copies[1] and copies[0].is_file()
    assert log.read_text() == "ran\n"
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        executed(bad, tmp_path_factory)
    with pytest.raises(RuntimeError, match="(?s)failed earlier in this test run.*ZeroDivision"):
        executed(bad, tmp_path_factory)


def test_run_seconds_reads_the_timing_records():
    nb = nbformat.v4.new_notebook()
    assert book.run_seconds(nb) is None and book.executed_mode(nb) is None
    a, b = _code("1", "FAST=False  seed 0\n"), _code("2", "")
    a.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00.5Z"}
    b.metadata["execution"] = {"shell.execute_reply": "2026-01-01T00:01:03.5Z"}
    nb.cells = [a, b]
    assert book.run_seconds(nb) == 63.0 and book.executed_mode(nb) is False


def test_make_book_and_its_publishing_workflow():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^book: .*\n\t\$\(BIN\)/usmlite-edu book\b", make, re.M)
    flow = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    assert "make book" in flow and "build/book/html" in flow
    assert "actions/deploy-pages" in flow
    args = cli.build_parser().parse_args(["book", "--fast", "--out", "x"])
    assert args.fast and args.out == Path("x") and args.executed is None


# ------------------------------------------------------------------- the build (slow)
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The book built from this test run's fast-mode executed notebooks."""
    for p in NOTEBOOKS:
        executed(p, tmp_path_factory)
    out = tmp_path_factory.mktemp("book")
    t0 = time.time()
    html = book.build(
        out=out, fast=True, directory=NB_DIR, executed_dir=cache_dir(tmp_path_factory)
    )
    print(f"book rendered in {time.time() - t0:.0f} s")
    return html, [cache_dir(tmp_path_factory) / p.name for p in NOTEBOOKS]


def _png_outputs(nb) -> list[bytes]:
    return [
        base64.b64decode(o["data"]["image/png"])
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]


@pytest.mark.slow
def test_every_notebook_has_a_page_with_its_figures(built):
    html, copies = built
    index = (html / "index.html").read_text()
    assert "<h1>usmlite_edu" in index and "The notebooks" in index  # the README, front page
    about = (html / "build.html").read_text()
    assert "fast mode" in about
    for nb_path in copies:
        page = html / "notebooks" / f"{nb_path.stem}.html"
        assert page.is_file(), f"no page for {nb_path.name}"
        # the page's heading is the notebook's first heading
        heading = next(
            c.source for c in nbformat.read(nb_path, 4).cells if c.cell_type == "markdown"
        )
        heading = re.sub(r"[`*$]", "", heading.splitlines()[0].lstrip("# "))
        h1 = re.search(r"<h1>(.*?)</h1>", page.read_text(), re.S).group(1)
        shown_heading = html_lib.unescape(re.sub(r"<[^>]+>", "", h1)).rstrip("#¶ ")
        # Sphinx typesets straight quotes as curly ones ("model's" -> "model’s")
        smart = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})
        assert shown_heading.translate(smart) == heading
        # the page shows each figure the notebook drew, byte for byte, in order
        want = _png_outputs(nbformat.read(nb_path, 4))
        shown = book.page_figures(page)
        assert [fid for fid, _ in shown] == [f"figure-{i}" for i in range(1, len(want) + 1)]
        for (fid, f), data in zip(shown, want):
            assert f.is_file() and f.read_bytes() == data, f"{page.name}#{fid}"
            assert Image.open(f).format == "PNG"
    assert sum(len(book.page_figures(html / "notebooks" / f"{p.stem}.html")) for p in copies) > 0


def _fits(html, stem, max_width=600, max_height=800):
    """The first figure of a page small enough to be drawn whole at its own size (a
    1280 x 1000 window: the text column is about 690 px wide, and a taller figure is cut
    off at the window's bottom), or None."""
    for fid, f in book.page_figures(html / "notebooks" / f"{stem}.html"):
        w, h = Image.open(f).size
        if w <= max_width and h <= max_height:
            return fid, np.asarray(Image.open(f))
    return None


@pytest.mark.slow
def test_formulas_are_typeset_offline(built):
    """Every host name unresolvable: a notebook page's formulas are typeset by the MathJax
    shipped with the book (``mjx-container`` elements), none left as raw ``\\(...\\)``."""
    chromium = book.find_chromium()
    if chromium is None:
        pytest.skip("Chromium not installed (apt-get install chromium; or set USMLITE_CHROMIUM)")
    html, copies = built
    stem = next(p.stem for p in copies if p.stem.startswith("04"))  # Eq. (1), g/I, ...
    dom = book.rendered_dom((html / "notebooks" / f"{stem}.html").as_uri(), chromium)
    assert dom.count("<mjx-container") >= 10, "MathJax typeset nothing"
    assert book.raw_formulas(dom) == []


@pytest.mark.slow
def test_screenshots_show_the_figures(built, tmp_path):
    chromium = book.find_chromium()
    if chromium is None:
        pytest.skip("Chromium not installed (apt-get install chromium; or set USMLITE_CHROMIUM)")
    html, copies = built
    candidates = [(p.stem, hit) for p in copies if (hit := _fits(html, p.stem))]
    assert len(candidates) >= 2, "fewer than two pages have a figure to look for"
    pages = [candidates[0], candidates[-1]]  # the first and the last page that have one
    shots = {}
    for stem, (fid, _) in pages:
        url = (html / "notebooks" / f"{stem}.html").as_uri() + f"#{fid}"
        shots[stem] = book.screenshot(url, tmp_path / f"{stem}.png", chromium=chromium)
        shutil.copy(tmp_path / f"{stem}.png", html.parent / f"screenshot-{stem}.png")
    for (stem, (fid, figure)), (other, _) in zip(pages, pages[::-1]):
        shot = shots[stem]
        assert shot.std() > 20, f"{stem}: the screenshot is nearly uniform (blank page?)"
        score, where = book.locate(shot, figure)
        assert score > 0.98, f"{stem}#{fid} not drawn: best match {score:.3f} ({tmp_path})"
        # the match is the figure, not any busy region: the other page's figure is not there
        assert book.locate(shots[other], figure)[0] < 0.9, f"{stem}#{fid} found on {other}"


def test_the_student_book_has_no_solution_and_no_exercise_output(tmp_path):
    """Staged as the student edition: every page's cells are the student edition's (no
    solution, answer slots ``...``, so the answer-leak scan of tests/test_answer_leaks.py
    covers them), and outputs planted in an answer cell and a check cell are cleared while
    another cell's output stays."""
    planted = tmp_path / "executed"
    planted.mkdir()
    out = nbformat.v4.new_output("stream", name="stdout", text="planted 4.17\n")
    for p in NOTEBOOKS:
        nb = nbformat.read(p, 4)
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs = [out]
        nbformat.write(nb, planted / p.name)
    staged = book.stage(
        sorted(planted.glob("*.ipynb")), tmp_path / "src", fast=True, root=ROOT, edition="student"
    )
    cleared = kept = 0
    for p in NOTEBOOKS:
        page = nbformat.read(staged.src / "notebooks" / p.name, 4)
        student = editions.make_edition(nbformat.read(p, 4), "student")
        assert [c.source for c in page.cells] == [c.source for c in student.cells], p.name
        assert page.metadata["usmlite_edu"]["edition"] == "student"
        for c in page.cells:
            assert not editions.is_solution(c)
            if c.cell_type != "code":
                continue
            if editions.answer_lines(c.source) or editions.has_check(c.source):
                assert c.outputs == [], (p.name, c.source[:60])
                cleared += 1
            elif "remove-cell" not in c.metadata.get("tags", []):
                assert c.outputs == [out]
                kept += 1
    assert cleared > 20 and kept > 100
    with pytest.raises(ValueError, match="unknown edition 'teacher'"):
        book.for_edition(nbformat.read(NOTEBOOKS[0], 4), "teacher")


def test_raw_formulas_finds_untypeset_math_outside_code():
    dom = (
        "<html><body><p>size \\(g/I\\) and \\[x^2\\]</p><pre>print('\\(a\\)')</pre>"
        "<mjx-container>g/I</mjx-container><script>var s = '\\(b\\)';</script></body></html>"
    )
    found = book.raw_formulas(dom)  # the code block's and the script's are left out
    assert len(found) == 2 and found[0].startswith("\\(g/I") and found[1].startswith("\\[x^2")
    assert book.raw_formulas("<html><body><mjx-container>g</mjx-container></body></html>") == []


def test_the_site_check_wants_mathjax_shipped_with_the_book(tmp_path):
    """Offline, a CDN MathJax leaves every formula as raw \\(...\\): the check refuses it."""
    (tmp_path / "index.html").write_text(
        '<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
    )
    with pytest.raises(RuntimeError) as info:
        book.check_site(tmp_path, [])
    assert "MathJax is not shipped" in str(info.value)
    assert "loads MathJax from https://cdn.jsdelivr.net" in str(info.value)
    (tmp_path / "_static" / "mathjax").mkdir(parents=True)
    (tmp_path / "_static" / "mathjax" / "tex-chtml.js").write_text("// MathJax")
    (tmp_path / "_static" / "usmlite.css").write_text("pre { white-space: pre-wrap; }")
    (tmp_path / "index.html").write_text('<script defer src="_static/mathjax/tex-chtml.js">')
    assert book.check_site(tmp_path, []) == {}


def test_a_figure_comes_before_its_plotting_code():
    nb = nbformat.v4.new_notebook()
    fig = nbformat.v4.new_code_cell("plt.plot(x)\nplt.show()")
    fig.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"})]
    text = nbformat.v4.new_code_cell("print(1)")
    text.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    solution = nbformat.v4.new_code_cell("plt.plot(y)", metadata={"tags": ["hide-cell"]})
    solution.outputs = list(fig.outputs)
    nb.cells = [fig, text, solution]
    book._for_reading(nb)
    assert fig.metadata["tags"] == ["hide-input"]
    assert "tags" not in text.metadata and solution.metadata["tags"] == ["hide-cell"]
