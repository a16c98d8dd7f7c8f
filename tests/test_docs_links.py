"""The README, docs/ and the results' READMEs link to files that exist, and to headings that
exist: every relative Markdown link (and image) resolves from the page that holds it. And
the README stays a front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "results").glob("*/README.md")),
]
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def links(text: str) -> list[str]:
    """Targets of the Markdown links and images of ``text``, outside fenced code."""
    return _LINK.findall(_FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """GitHub's (and MyST's) anchors of the headings of ``text``."""
    out = set()
    for title in _HEADING.findall(_FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").strip().lower())
        out.add(slug.replace(" ", "-"))
    return out


def test_the_reader_finds_links_and_anchors():
    text = "# A `b`: c\n\n[x](docs/a.md#a-b-c) ![p](p.png)\n```\n[no](skip.md)\n```\n"
    assert links(text) == ["docs/a.md#a-b-c", "p.png"]
    assert anchors(text) == {"a-b-c"}


def test_the_pages_exist():
    assert (ROOT / "docs" / "architecture.md").is_file() and len(PAGES) > 10


def test_the_readme_fits():
    """The front page says what the project is, its two commands, what the main job prints,
    the notebooks' map and where the rest lives (issue 24); everything else is in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move a section to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text()
    bad = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif not dest.is_relative_to(ROOT):
            bad.append(f"{target}: outside the repository")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            bad.append(f"{target}: no heading '#{anchor}' in {dest.relative_to(ROOT)}")
    assert not bad, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(bad)
