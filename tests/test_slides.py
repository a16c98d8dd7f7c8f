"""The lecture decks (usmlite_edu.course.slides, `usmlite-edu slides`, `make slides`)."""

import re
from pathlib import Path

import nbformat
import pytest
from executed_notebooks import cache_dir, executed

from usmlite_edu import cli
from usmlite_edu.course import book, notebook_runner, slides

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = notebook_runner.list_notebooks(ROOT / "notebooks")
pytestmark = pytest.mark.xdist_group("book")  # shares the executed notebooks with the book
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _figure(source="plt.plot(x)", tags=()):
    c = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})
    c.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG})]
    return c


def test_the_deck_rule_and_its_tags():
    md = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md("# 04 · Int2\n\nObjectives ..."),
        md("## 1. The quantizer\n\nText.\n\n$$s = \\frac{a}{b}$$\n\nMore."),
        nbformat.v4.new_code_cell("x = 1"),  # no figure: not a slide
        md("## 2. No equation, no figure\n\nText only."),  # left out: nothing to show
        md("## 3. A figure\n\nText."),
        _figure(),
        _figure(tags=["no-slide"]),
        md("A key paragraph.", metadata={"tags": ["slide"]}),
        _figure(tags=["solution"]),  # a worked solution never
        md("## 4. Skipped", metadata={"tags": ["no-slide"]}),
    ]
    deck = slides.slides_of(nb)
    assert [s["title"] for s in deck] == [
        "04 · Int2",
        "1. The quantizer",
        "3. A figure",
        "3. A figure",
        "3. A figure",
    ]
    assert deck[1]["markdown"] == "$$s = \\frac{a}{b}$$" and not deck[1]["images"]
    assert deck[2] == {"title": "3. A figure", "markdown": "", "images": []}  # the heading
    assert deck[3]["images"] == [PNG] and deck[4]["markdown"] == "A key paragraph."
    html = slides.render(deck)
    assert html.count("<section>") == 5 and f"base64,{PNG}" in html
    assert "_deck/reveal/reveal.js" in html and "_deck/mathjax/tex-chtml.js" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "a deck loads nothing remote"


def test_assets_come_from_the_installed_packages(tmp_path):
    slides.copy_assets(tmp_path)
    for f in ("reveal/reveal.js", "reveal/reveal.css", "reveal/theme/white.css",
              "mathjax/tex-chtml.js"):  # fmt: skip
        assert (tmp_path / f).is_file(), f


@pytest.mark.slow
def test_make_slides_builds_a_deck_per_lecture_that_opens_offline(tmp_path_factory, tmp_path):
    """`usmlite-edu slides --executed` on this run's fast-mode executed notebooks: a deck per
    notebook; in headless Chromium with every host unresolvable, reveal.js starts (the
    `ready` class) and MathJax typesets the decks' equations, none left raw."""
    for p in NOTEBOOKS:
        executed(p, tmp_path_factory)
    out = tmp_path / "slides"
    argv = ["slides", "--fast", "--out", str(out), "--executed", str(cache_dir(tmp_path_factory))]
    assert cli.main(argv) == 0
    decks = sorted(out.glob("[0-9][0-9]_*.html"))
    assert [d.stem for d in decks] == [p.stem for p in NOTEBOOKS]
    index = (out / "index.html").read_text()
    assert all(f'href="{d.name}"' in index for d in decks)
    assert re.search(r"^slides:", (ROOT / "Makefile").read_text(), re.M)
    chromium = book.find_chromium()
    if chromium is None:
        pytest.skip("Chromium not installed (apt-get install chromium; or set USMLITE_CHROMIUM)")
    typeset = 0
    for d in decks:
        dom = book.rendered_dom(d.as_uri(), chromium)
        assert re.search(r'class="reveal[^"]*\bready\b', dom), f"{d.name}: reveal.js did not start"
        assert dom.count("<section") >= 2, d.name
        assert book.raw_formulas(dom) == [], d.name
        typeset += dom.count("<mjx-container")
    assert typeset >= 5
