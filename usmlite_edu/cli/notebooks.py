"""``usmlite-edu notebooks``: run the teaching notebooks headless, or write an edition."""

from __future__ import annotations

import argparse
from pathlib import Path

from usmlite_edu.course import editions, notebook_runner


def add_parser(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser(
        "notebooks",
        help="execute the teaching notebooks headless",
        description="Run notebooks top to bottom (their check cells assert); "
        "executed copies go to DIR/executed/. With --edition and --out, write the series "
        "as the student edition (no solution or discussion cells, every exercise's answer "
        "left as `...`, so its check skips) or the instructor edition (everything, as "
        "committed) instead of running it.",
    )
    n.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="substrings of notebook file names, e.g. 03 06 (default: all)",
    )
    n.add_argument(
        "--full",
        action="store_true",
        help="the sizes a learner runs in JupyterLab instead of the fast mode "
        "(USMLITE_FAST=1) the tests use",
    )
    n.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="folder holding NN_*.ipynb (default: ./notebooks, else the "
        "repository checkout this package runs from)",
    )
    n.add_argument(
        "--edition",
        choices=("student", "instructor"),
        help="write this edition of the selected notebooks to --out instead of running them",
    )
    n.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where --edition writes NN_*.ipynb (inside the clone, e.g. build/student, "
        "notebooks 06 and 07 find data_small/ and results/ when run from there)",
    )
    n.add_argument(
        "--run",
        action="store_true",
        help="also execute the written edition (executed copies in DIR/executed/)",
    )
    n.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.edition is None) != (args.out is None):
        raise ValueError("--edition and --out go together: --edition student|instructor --out DIR")
    if args.run and args.edition is None:
        raise ValueError("--run executes a written edition: add --edition and --out")
    if args.edition is None:
        return notebook_runner.run_all(args.names, fast=not args.full, directory=args.dir)
    written = editions.write_edition(args.edition, args.out, args.names, args.dir)
    for p in written:
        print(f"wrote {p} ({args.edition} edition)")
    if args.run:
        return notebook_runner.run_all(
            [p.stem for p in written], fast=not args.full, directory=args.out
        )
    return 0
