"""``usmlite-edu grade DIR``: a score table from executed student notebooks."""

from __future__ import annotations

import argparse
from pathlib import Path

from usmlite_edu.course import grading


def add_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "grade",
        help="score executed student notebooks (CSV and JSON, one row per exercise)",
        description="Read the executed notebooks under DIR (nbgrader's layout, "
        "DIR/<student>/.../NN_name.ipynb, or student_NN_name.ipynb files), take each "
        "exercise check's recorded outcome (correct, wrong, skipped, or not run after a "
        "strict-mode stop) and write OUT.csv and OUT.json: student, notebook, exercise, "
        "status, points, max_points. Notebooks are read, never executed.",
    )
    g.add_argument("dir", type=Path, metavar="DIR", help="folder of submitted notebooks")
    g.add_argument(
        "--out", type=Path, default=Path("scores"), metavar="OUT", help="default ./scores"
    )
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = grading.grade(args.dir)
    csv_path, json_path = grading.write_scores(rows, args.out)
    print(grading.summary(rows))
    print(f"wrote {csv_path} and {json_path} ({len(rows)} rows)")
    return 0
