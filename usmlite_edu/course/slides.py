"""Slide decks of the lectures: one reveal.js deck per notebook (``usmlite-edu slides``).

A deck is made from an *executed* notebook (its figures are outputs), by rule with tags to
override it:

* the title slide: the notebook's first heading;
* a section heading (a markdown cell with a ``## `` line) gives a slide with that heading
  and the cell's display equations (``$$ ... $$``), the key equations of the section; a
  heading cell without one gives a slide with the heading only when a figure follows it in
  the same section (otherwise it would be an empty slide);
* a figure (a code cell with a PNG output) gives a slide with the figure alone, titled with
  its section's heading; worked solutions are left out;
* a cell tagged ``slide`` is a slide in full (a markdown cell's whole text, a code cell's
  outputs), whatever the rule says; a cell tagged ``no-slide`` is never one.

The deck is one HTML file with its figures inline, and everything it loads is copied
beside it: reveal.js (from the ``pyreveal`` package, which bundles it) and MathJax 3 (from
``sphinx-mathjax-offline``, as the book): a deck opens and typesets with no network.
"""

from __future__ import annotations

import importlib
import re
import shutil
from html import escape
from pathlib import Path

from usmlite_edu.course import book, editions

__all__ = ["SLIDE_TAG", "SKIP_TAG", "slides_of", "render", "write_deck", "copy_assets", "build"]

SLIDE_TAG = "slide"
SKIP_TAG = "no-slide"
_SECTION = re.compile(r"^##\s+(.*)$", re.M)
_TITLE = re.compile(r"^#\s+(.*)$", re.M)
_DISPLAY = re.compile(r"\$\$.*?\$\$", re.S)


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _pngs(cell) -> list[str]:
    return [
        o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})
    ]


def slides_of(nb) -> list[dict]:
    """The deck of an executed notebook ``nb`` (an ``nbformat`` node), as a list of
    slides ``{"title": str, "markdown": str, "images": [base64 PNG, ...]}`` (see the
    module docstring for the rule)."""
    cells = [c for c in nb.cells if not editions.is_solution(c) and SKIP_TAG not in _tags(c)]
    title = next(
        (m[1] for c in cells if c.cell_type == "markdown" for m in [_TITLE.search(c.source)] if m),
        "Lecture",
    )
    deck = [{"title": title, "markdown": "", "images": [], "kind": "title"}]
    section = title
    pending: dict | None = None  # a heading-only slide, kept if a figure follows
    for c in cells:
        forced = SLIDE_TAG in _tags(c)
        if c.cell_type == "markdown":
            m = _SECTION.search(c.source)
            if forced:
                deck.append({"title": m[1] if m else section, "markdown": c.source, "images": []})
            if m:
                section, pending = m[1], None
                if forced:
                    continue
                eqs = _DISPLAY.findall(c.source)
                slide = {"title": section, "markdown": "\n\n".join(eqs), "images": []}
                if eqs:
                    deck.append(slide)
                else:
                    pending = slide
            continue
        if c.cell_type == "code":
            images = _pngs(c)
            if not images and not forced:
                continue
            if pending is not None:
                deck.append(pending)
                pending = None
            deck.append({"title": section, "markdown": "", "images": images})
    return deck


_CSS = """
.reveal h1 { font-size: 1.6em; } .reveal h2 { font-size: 1.1em; }
.reveal section img { max-height: 560px; max-width: 100%; border: 0; box-shadow: none; }
.reveal .md { font-size: 0.6em; text-align: left; }
"""


def render(deck: list[dict], assets: str = "_deck") -> str:
    """The deck's HTML page; ``assets`` is the folder (relative to the page) that
    :func:`copy_assets` fills."""
    from nbconvert.filters.markdown import markdown2html

    sections = []
    for s in deck:
        if s.get("kind") == "title":
            sections.append(f"<section><h1>{escape(s['title'])}</h1></section>")
            continue
        body = [f"<h2>{escape(s['title'])}</h2>"]
        if s["markdown"]:
            body.append(f'<div class="md">{markdown2html(s["markdown"])}</div>')
        body += [f'<img alt="figure" src="data:image/png;base64,{p.strip()}">' for p in s["images"]]
        sections.append("<section>" + "".join(body) + "</section>")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8">
<title>{escape(deck[0]["title"])}</title>
<link rel="stylesheet" href="{assets}/reveal/reset.css">
<link rel="stylesheet" href="{assets}/reveal/reveal.css">
<link rel="stylesheet" href="{assets}/reveal/theme/white.css">
<style>{_CSS}</style>
<script>window.MathJax = {{tex: {{inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]],
  displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]]}}}};</script>
<script defer src="{assets}/mathjax/tex-chtml.js"></script>
</head><body>
<div class="reveal"><div class="slides">
{chr(10).join(sections)}
</div></div>
<script src="{assets}/reveal/reveal.js"></script>
<script>Reveal.initialize({{hash: true, slideNumber: true, width: 1280, height: 800}});</script>
</body></html>
"""


def _package_dir(module: str) -> Path:
    try:
        return Path(importlib.import_module(module).__file__).parent
    except ImportError:
        raise FileNotFoundError(
            f"the slides need the Python package {module!r} (pip install "
            "'usmlite_edu[book]', or .venv from requirements.txt)"
        ) from None


def copy_assets(dest: Path | str) -> Path:
    """Copy reveal.js (``dist/``: script, styles, the white theme and its fonts) and MathJax
    3 into ``dest`` (``dest/reveal``, ``dest/mathjax``); returns ``dest``."""
    dest = Path(dest)
    reveal = _package_dir("pyreveal") / "revealjs" / "dist"
    mathjax = _package_dir("sphinx-mathjax-offline") / "static" / "mathjax"
    for src, name in ((reveal, "reveal"), (mathjax, "mathjax")):
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: the installed package has no {name} files")
        shutil.copytree(src, dest / name, dirs_exist_ok=True)
    return dest


def write_deck(executed: Path | str, out_dir: Path | str, assets: str = "_deck") -> Path:
    """Write the deck of the executed notebook ``executed`` to ``out_dir/<stem>.html``
    (the assets are :func:`copy_assets`' job, once per folder)."""
    import nbformat

    executed, out_dir = Path(executed), Path(out_dir)
    deck = slides_of(nbformat.read(executed, as_version=4))
    out = out_dir / f"{executed.stem}.html"
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(render(deck, assets))
    return out


def build(
    out: Path | str = "build/slides",
    fast: bool = False,
    directory: Path | str | None = None,
    executed_dir: Path | str | None = None,
) -> Path:
    """A deck per notebook of the series in ``out`` (``NN_name.html``), the assets once in
    ``out/_deck``, and ``out/index.html`` linking the decks; the notebooks are executed
    first (fast or full mode) unless ``executed_dir`` holds executed copies. Returns
    ``out/index.html``."""
    out = Path(out)
    if executed_dir is None:
        executed = book.execute_series(
            out / f"executed-{'fast' if fast else 'full'}", fast, directory
        )
    else:
        executed = book.collect_executed(executed_dir, fast, directory)
    copy_assets(out / "_deck")
    links = []
    for path in executed:
        page = write_deck(path, out)
        links.append(f'<li><a href="{page.name}">{escape(path.stem)}</a></li>')
    index = out / "index.html"
    index.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Slides</title></head>"
        f"<body><h1>Lecture slides</h1><ul>{''.join(links)}</ul></body></html>\n"
    )
    print(f"{len(links)} decks ({'fast' if fast else 'full'} mode) -> {index}")
    return index
