"""usmlite_edu.course.grading (``usmlite-edu grade``): scores read from executed student
notebooks, generated here as submissions with right, wrong and missing answers."""

from __future__ import annotations

import csv
import json
import os

import nbclient
import nbformat
import pytest

from usmlite_edu.course import grading

SETUP = "from usmlite_edu.course.exercises import check_answer\n"


def _submission(answers: tuple, strict: bool = False) -> nbformat.NotebookNode:
    """A notebook with three checks (expected 4, "grows", 2.5) answered with ``answers``,
    executed in a kernel as a student's would be."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP)]
    for i, (answer, expected) in enumerate(zip(answers, (4, "grows", 2.5)), 1):
        nb.cells.append(nbformat.v4.new_markdown_cell(f"**Exercise {i}.**"))
        nb.cells.append(
            nbformat.v4.new_code_cell(
                f"check_answer('Exercise {i}', {answer!r}, {expected!r}, hint='look again')"
            )
        )
    env = {**os.environ, "USMLITE_STRICT_CHECKS": "1" if strict else "0"}
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3")
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError:
        assert strict, "only strict mode stops at a wrong answer"
    return nb


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    root = tmp_path_factory.mktemp("submitted")
    cases = {
        "alice": ((4, "grows", 2.5), False),  # all right
        "bob": ((5, "grows", ...), False),  # one wrong, one not answered: the notebook went on
        "carol": ((5, "grows", 2.5), True),  # strict mode: stopped at the wrong answer
    }
    for student, (answers, strict) in cases.items():
        folder = root / student / "lab1"
        folder.mkdir(parents=True)
        nbformat.write(_submission(answers, strict), folder / "03_straight_through.ipynb")
    return root


def test_a_wrong_answer_runs_to_the_end_and_is_scored(submissions, tmp_path):
    rows = grading.grade(submissions)
    got = {(r["student"], r["exercise"]): r["status"] for r in rows}
    assert got == {
        ("alice", "Exercise 1"): "correct",
        ("alice", "Exercise 2"): "correct",
        ("alice", "Exercise 3"): "correct",
        ("bob", "Exercise 1"): "wrong",
        ("bob", "Exercise 2"): "correct",
        ("bob", "Exercise 3"): "skipped",
        ("carol", "Exercise 1"): "wrong",
        ("carol", "check 2 (never ran)"): "not run",
        ("carol", "check 3 (never ran)"): "not run",
    }
    assert {r["notebook"] for r in rows} == {"03_straight_through"}
    assert grading.summary(rows).splitlines() == [
        "alice: 3 / 3 (3 correct)",
        "bob: 1 / 3 (1 correct, 1 wrong, 1 skipped)",
        "carol: 0 / 3 (1 wrong, 2 not run)",
    ]
    csv_path, json_path = grading.write_scores(rows, tmp_path / "scores")
    with csv_path.open() as f:
        table = list(csv.DictReader(f))
    assert table[0].keys() == {"student", "notebook", "exercise", "status", "points", "max_points"}
    assert sum(int(r["points"]) for r in table) == 4 and len(table) == 9
    assert json.loads(json_path.read_text()) == rows


def test_the_record_holds_no_expected_value(submissions):
    nb = nbformat.read(submissions / "bob" / "lab1" / "03_straight_through.ipynb", 4)
    records = [
        o["data"][grading.RECORD_MIME]
        for c in nb.cells
        for o in c.get("outputs", [])
        if grading.RECORD_MIME in o.get("data", {})
    ]
    assert records[0] == {"label": "Exercise 1", "status": "wrong"}
    assert all(set(r) == {"label", "status"} for r in records)


def test_flat_folders_and_bad_input(tmp_path):
    nbformat.write(_submission((4, "shrinks", 2.5)), tmp_path / "dave_03_straight_through.ipynb")
    rows = grading.grade(tmp_path)
    assert {r["student"] for r in rows} == {"dave"}
    assert [r["status"] for r in rows] == ["correct", "wrong", "correct"]
    (tmp_path / "broken_03_x.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="broken_03_x.ipynb is not a readable notebook"):
        grading.grade(tmp_path)
    with pytest.raises(FileNotFoundError, match="no notebooks"):
        grading.grade(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else None)


def test_the_grade_command(submissions, tmp_path, capsys):
    from usmlite_edu import cli

    assert cli.main(["grade", str(submissions), "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "bob: 1 / 3 (1 correct, 1 wrong, 1 skipped)" in out and "(9 rows)" in out
    assert (tmp_path / "s.csv").is_file() and (tmp_path / "s.json").is_file()
    assert cli.main(["grade", str(tmp_path / "nothing")]) == cli.EXIT_REFUSED
    assert "is not a folder of submitted notebooks" in capsys.readouterr().err
