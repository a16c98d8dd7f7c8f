"""``usmlite-edu slides``: a reveal.js deck per lecture (notebook), for offline use."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    sl = sub.add_parser(
        "slides",
        help="build a slide deck (reveal.js, offline) per notebook of the series",
        description="Execute every notebook (full mode unless --fast), then write one "
        "reveal.js deck per notebook into OUT: the title, each section's heading with its "
        "display equations, each figure (cells tagged 'slide' added whole, 'no-slide' "
        "left out). reveal.js and MathJax are copied beside the decks; no network needed.",
    )
    sl.add_argument("--fast", action="store_true", help="fast mode (USMLITE_FAST=1), as the tests")
    sl.add_argument(
        "--out", type=Path, default=Path("build/slides"), metavar="DIR", help="default build/slides"
    )
    sl.add_argument("--dir", type=Path, metavar="DIR", help="folder holding NN_*.ipynb")
    sl.add_argument(
        "--executed",
        type=Path,
        metavar="DIR",
        help="use the executed copies in DIR (e.g. the book's OUT/executed-full) instead of "
        "executing the series",
    )
    sl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usmlite_edu.course import slides  # lazy: nbconvert; keeps --help fast

    slides.build(out=args.out, fast=args.fast, directory=args.dir, executed_dir=args.executed)
    return 0
