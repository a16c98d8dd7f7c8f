"""``usmlite-edu main``: the project's main job (what ``make run`` does)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "main",
        help="the project's main job (what `make run` does)",
        description="Size table; the committed B0 transcribing real FSDD "
        "test speech as float and under int8/int4/int2/int4+2:4 PTQ; the "
        "notebooks executed headless.",
    )
    m.add_argument("--full", action="store_true", help="notebooks at learner sizes")
    m.add_argument("--no-notebooks", action="store_true", help="skip executing the notebooks")
    m.add_argument(
        "--out",
        default="runs/main",
        metavar="DIR",
        help="where the WER table and plot go (default runs/main)",
    )
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The README's main job: everything a fresh, offline machine can show in minutes."""
    from usmlite_edu.course import main_job  # lazy: imports jax; keeps --help fast

    return main_job.run(out_dir=args.out, full=args.full, notebooks=not args.no_notebooks)
