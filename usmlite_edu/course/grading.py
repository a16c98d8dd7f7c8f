"""Scores from executed student notebooks: ``usmlite-edu grade DIR``.

Each exercise check (:func:`usmlite_edu.course.exercises.check_answer`) leaves a record in
its cell's output, MIME type :data:`~usmlite_edu.course.exercises.RECORD_MIME`, holding the
exercise's label and its outcome (``correct``, ``wrong`` or ``skipped``), never the
expected value. In strict mode a wrong answer stops the notebook with an
``ExerciseFailed`` error instead; that error names the exercise and is read the same way,
and the checks after it count as ``not run``.

The layout follows nbgrader's: ``DIR/<student>/.../NN_name.ipynb`` (the student is the
first folder under ``DIR``), or notebooks directly in ``DIR`` (the student is then the
file's name without the notebook part, e.g. ``alice_01_per_channel.ipynb`` -> ``alice``,
or the whole stem). The table has one row per student, notebook and exercise, with
``points`` 1 for a correct answer and 0 otherwise, out of ``max_points`` 1: the CSV
columns ``student, notebook, exercise, status, points, max_points`` are what nbgrader's
and most learning platforms' grade imports take (one row per student and item).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat

from usmlite_edu.course.editions import count_checks
from usmlite_edu.course.exercises import RECORD_MIME

__all__ = ["STATUSES", "RECORD_MIME", "notebook_outcomes", "grade", "write_scores", "summary"]

#: what a row's ``status`` can be
STATUSES = ("correct", "wrong", "skipped", "not run")
_WRONG = re.compile(r"\[wrong\] (?P<label>.+?): your answer")


def notebook_outcomes(nb) -> tuple[dict[str, str], int]:
    """``({exercise label: status}, checks in the notebook)`` of one executed notebook:
    each check's last recorded outcome; a strict-mode ``ExerciseFailed`` counts as
    ``wrong``."""
    outcomes: dict[str, str] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("data", {}).get(RECORD_MIME)
            if isinstance(record, dict) and record.get("status") in STATUSES:
                outcomes[str(record.get("label"))] = record["status"]
            elif out.get("output_type") == "error" and out.get("ename") == "ExerciseFailed":
                m = _WRONG.search(out.get("evalue", ""))
                if m:
                    outcomes[m.group("label")] = "wrong"
    return outcomes, count_checks(nb)


def _student_and_notebook(path: Path, root: Path) -> tuple[str, str]:
    rel = path.relative_to(root)
    stem = path.stem
    m = re.search(r"(\d\d_[A-Za-z0-9_]+)$", stem)
    notebook = m.group(1) if m else stem
    if len(rel.parts) > 1:
        return rel.parts[0], notebook
    student = stem[: m.start()].rstrip("_-") if m and m.start() > 0 else stem
    return student, notebook


def grade(root: str | Path) -> list[dict[str, Any]]:
    """One row per student, notebook and exercise of the executed notebooks under ``root``
    (see the module docstring); checks that never ran (the notebook stopped, or was not
    executed) get one row ``not run`` each, labelled by their position."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of submitted notebooks")
    paths = sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not paths:
        raise FileNotFoundError(f"no notebooks (*.ipynb) under {root}")
    rows = []
    for path in paths:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as e:  # a damaged submission is reported, not a crash
            raise ValueError(
                f"{path} is not a readable notebook ({type(e).__name__}: {e})"
            ) from None
        student, notebook = _student_and_notebook(path, root)
        outcomes, n = notebook_outcomes(nb)
        for label, status in outcomes.items():
            rows.append(_row(student, notebook, label, status))
        for i in range(len(outcomes), n):
            rows.append(_row(student, notebook, f"check {i + 1} (never ran)", "not run"))
    return rows


def _row(student: str, notebook: str, exercise: str, status: str) -> dict[str, Any]:
    return {
        "student": student,
        "notebook": notebook,
        "exercise": exercise,
        "status": status,
        "points": int(status == "correct"),
        "max_points": 1,
    }


def write_scores(rows: Iterable[dict[str, Any]], out: str | Path) -> tuple[Path, Path]:
    """Write ``out.csv`` and ``out.json`` (the same rows); returns both paths."""
    rows = list(rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out.with_suffix(".csv"), out.with_suffix(".json")
    fields = ["student", "notebook", "exercise", "status", "points", "max_points"]
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=1) + "\n")
    return csv_path, json_path


def summary(rows: Iterable[dict[str, Any]]) -> str:
    """One line per student: points out of the maximum, and the counts by status."""
    per: dict[str, dict[str, int]] = {}
    for r in rows:
        s = per.setdefault(r["student"], {"points": 0, "max": 0} | dict.fromkeys(STATUSES, 0))
        s["points"] += r["points"]
        s["max"] += r["max_points"]
        s[r["status"]] += 1
    return "\n".join(
        f"{student}: {s['points']} / {s['max']} ("
        + ", ".join(f"{s[k]} {k}" for k in STATUSES if s[k])
        + ")"
        for student, s in sorted(per.items())
    )
