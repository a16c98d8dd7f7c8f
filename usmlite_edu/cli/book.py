"""``usmlite-edu book``: the rendered book (static HTML) of the notebook series."""

from __future__ import annotations

import argparse
from pathlib import Path

from usmlite_edu.course import book


def add_parser(sub: argparse._SubParsersAction) -> None:
    bk = sub.add_parser(
        "book",
        help="build the rendered book (static HTML) of the notebook series",
        description="Execute every notebook (full mode unless --fast), render the series "
        "with the README as front page (Sphinx + MyST-NB, book/conf.py) into OUT/html, and "
        "check that every notebook has a page showing each of its figures.",
    )
    bk.add_argument("--fast", action="store_true", help="fast mode (USMLITE_FAST=1), as the tests")
    bk.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="default build/book (instructor) or build/book-student (--edition student)",
    )
    bk.add_argument("--dir", type=Path, metavar="DIR", help="folder holding NN_*.ipynb")
    bk.add_argument(
        "--executed",
        type=Path,
        metavar="DIR",
        help="render the executed copies in DIR (same file names, executed in the same "
        "mode) instead of executing the series",
    )
    bk.add_argument(
        "--edition",
        choices=("instructor", "student"),
        default="instructor",
        help="instructor (default): worked solutions behind 'show' toggles; student: no "
        "solutions, answer slots empty, exercise outputs cleared (a book to hand out)",
    )
    bk.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    book.build(
        out=args.out
        or Path("build/book" if args.edition == "instructor" else "build/book-student"),
        fast=args.fast,
        directory=args.dir,
        executed_dir=args.executed,
        edition=args.edition,
    )
    return 0
