"""Exercises a learner can fail, and the notebooks' student and instructor editions.

The check helper (usmlite_edu.course.exercises): an unanswered exercise skips, a wrong answer
fails with its hint, a right one passes. The editions (usmlite_edu.course.editions): the student
edition holds no solution cell, no solution text and no filled answer slot; executed
untouched, every exercise check in it skips; with a wrong answer written in, the check
fails with its hint. (That the instructor edition executes with every check correct is
tests/test_notebooks.py's test_notebook_executes.)
"""

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient.exceptions import CellExecutionError

from usmlite_edu import cli
from usmlite_edu.course import editions, exercises, notebook_runner
from usmlite_edu.course.exercises import (
    ExerciseFailed,
    Outcome,
    check_answer,
    is_unanswered,
    matches,
)

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = notebook_runner.list_notebooks(NB_DIR)
# Every notebook's exercises use check_answer and answer slots.
ADOPTED = NOTEBOOKS


def _read(path):
    return nbformat.read(path, as_version=4)


# --------------------------------------------------------------------------- check_answer
def test_unanswered_skips_with_a_message(capsys):
    for answer in (..., (1, ...), [..., 2], {"a": ...}, {...}):
        assert is_unanswered(answer)
        out = check_answer("Exercise 9", answer, 3)
        assert isinstance(out, Outcome) and out.status == "skipped" and not out
        assert capsys.readouterr().out.startswith("[skipped] Exercise 9: no answer yet")
    for answer in (0, None, "", (), [1, 2], False):
        assert not is_unanswered(answer)


def test_right_answer_passes(capsys):
    out = check_answer("Ex", 127 / 7, 17.5, rel_tol=0.05, correct="measured 17.5")
    assert out and out.status == "correct"
    assert capsys.readouterr().out == "[correct] Ex: measured 17.5\n"


@pytest.fixture
def strict(monkeypatch):
    """Strict mode, as the project's notebook runner sets it for its kernels."""
    monkeypatch.setenv("USMLITE_STRICT_CHECKS", "1")


def test_wrong_answer_fails_with_the_hint(strict):
    with pytest.raises(ExerciseFailed, match=r"^\[wrong\] Ex 2: your answer 16 .*Hint: qmax"):
        check_answer("Ex 2", 16, 18.1, rel_tol=0.05, hint="qmax, not 2**b")
    assert issubclass(ExerciseFailed, AssertionError)  # a failing cell, like any check
    # an answer outside the choices says what the choices are
    with pytest.raises(ExerciseFailed, match="answer one of 'grows', 'shrinks'"):
        check_answer("Ex", "bigger", "grows", choices=("grows", "shrinks"))
    # strings are compared without case or surrounding spaces
    assert check_answer("Ex", " Shrinks ", "shrinks", choices=("grows", "shrinks"))


def test_a_wrong_answer_prints_and_the_notebook_goes_on(monkeypatch, capsys):
    """Outside strict mode (a learner's JupyterLab), a wrong answer is a printed line with
    the hint, and the tally counts every check by its latest outcome."""
    monkeypatch.delenv("USMLITE_STRICT_CHECKS", raising=False)
    exercises.reset_score()
    out = check_answer("Ex 2", 16, 18.1, rel_tol=0.05, hint="qmax, not 2**b")
    assert not out and out.status == "wrong"
    printed = capsys.readouterr().out
    assert (
        printed.startswith("[wrong] Ex 2: your answer 16 is not right.") and "Hint: qmax" in printed
    )
    check_answer("Ex 3", ..., 1.0)
    check_answer("Ex 4", 1.0, 1.0)
    assert exercises.score(show=False) == {"correct": 1, "wrong": 1, "skipped": 1}
    check_answer("Ex 2", 18.0, 18.1, rel_tol=0.05)  # tried again, now right: counted once
    assert exercises.score() == {"correct": 2, "wrong": 0, "skipped": 1}
    assert capsys.readouterr().out.endswith(
        "[score] 2 of 3 checks correct, 0 wrong, 1 not answered yet\n"
    )
    with pytest.raises(ExerciseFailed):  # strict on request, whatever the environment
        check_answer("Ex 5", 2, 1, strict=True)
    exercises.reset_score()


def test_accept_for_answers_with_many_right_values(strict):
    def fits(n):
        assert n <= 10, f"{n} is too large"
        return n >= 5

    assert check_answer("Ex", 7, accept=fits)
    with pytest.raises(ExerciseFailed, match="12 is too large"):
        check_answer("Ex", 12, accept=fits)
    with pytest.raises(ExerciseFailed, match="your answer 3 is not right"):
        check_answer("Ex", 3, accept=fits)
    # the learner's own code failing is a wrong answer, not a crash of the check
    with pytest.raises(ExerciseFailed, match="TypeError"):
        check_answer("Ex", "x", accept=lambda a: a + 1 > 0)
    with pytest.raises(TypeError, match="expected"):
        check_answer("Ex", 1)


def test_matches():
    assert matches(True, True) and not matches(1, True) and not matches(True, 1)
    assert matches(np.bool_(False), False) and matches(np.int64(3), 3)
    assert matches(0.1 + 0.2, 0.3) and not matches(0.31, 0.3)
    assert matches(0.31, 0.3, abs_tol=0.02) and matches(1.04, 1.0, rel_tol=0.05)
    assert matches({"b", "a"}, {"a", "b"}) and matches(["a", "b"], {"a", "b"})
    assert matches(set(), set()) and matches({}, set()) and not matches("ab", {"a", "b"})
    assert matches([[0, 1], [1, 0]], np.array([[0, 1], [1, 0]]))
    assert matches([[False, True]], np.array([[0, 1]])) and not matches([0, 1], np.array([[0, 1]]))
    assert matches((1, [2, "x"]), [1, (2, "X")]) and not matches((1, 2), (1, 2, 3))
    assert matches({"a": 1.0}, {"a": 1}) and not matches({"a": 1}, {"b": 1})


# --------------------------------------------------------------------------- editions
def test_answer_slots_lose_their_values():
    src = (
        "my_bits = 4  # ANSWER: a width\n"
        "total: float = 1 / 3  # ANSWER\n"
        "def f(x):\n"
        "    return x + 1  # ANSWER: your expression\n"
        "keep = 5  # EXERCISE: an input, not an answer\n"
        "same = my_bits == 4"
    )
    assert editions.student_source(src) == (
        "my_bits = ...  # ANSWER: a width\n"
        "total: float = ...  # ANSWER\n"
        "def f(x):\n"
        "    return ...  # ANSWER: your expression\n"
        "keep = 5  # EXERCISE: an input, not an answer\n"
        "same = my_bits == 4"
    )
    for bad in ("a, b = 1, 2  # ANSWER", "x == 4  # ANSWER", "print(4)  # ANSWER", "}  # ANSWER"):
        with pytest.raises(ValueError, match="must be `NAME = VALUE"):
            editions.student_source(bad)


def test_make_edition_drops_solutions_and_outputs():
    nb = nbformat.v4.new_notebook()
    solution = {"tags": ["solution"], "jupyter": {"source_hidden": True}}
    nb.cells = [
        nbformat.v4.new_markdown_cell("**Exercise.** Predict."),
        nbformat.v4.new_code_cell("x = 42  # ANSWER"),
        nbformat.v4.new_code_cell("check_answer('Ex', x, 42)"),
        nbformat.v4.new_code_cell("print('worked solution')", metadata=solution),
        nbformat.v4.new_markdown_cell("**Discussion.** Because.", metadata=solution),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="[correct] Ex\n")]
    student = editions.make_edition(nb, "student")
    assert [c.source for c in student.cells] == [
        "**Exercise.** Predict.",
        "x = ...  # ANSWER",
        "check_answer('Ex', x, 42)",
    ]
    assert (
        student.cells[2].outputs == [] and student.metadata["usmlite_edu"]["edition"] == "student"
    )
    instructor = editions.make_edition(nb, "instructor")
    assert [c.source for c in instructor.cells] == [c.source for c in nb.cells]
    assert len(nb.cells) == 5 and nb.cells[1].source == "x = 42  # ANSWER"  # not modified
    with pytest.raises(ValueError, match="choose one of student, instructor"):
        editions.make_edition(nb, "teacher")


def test_write_edition_refuses_the_source_folder(tmp_path):
    with pytest.raises(ValueError, match="own folder"):
        editions.write_edition("student", NB_DIR, directory=NB_DIR)
    written = editions.write_edition("instructor", tmp_path, ["01"], NB_DIR)
    assert [p.name for p in written] == [NOTEBOOKS[0].name]
    assert [c.source for c in _read(written[0]).cells] == [
        c.source for c in _read(NOTEBOOKS[0]).cells
    ]


def test_adopted_notebooks_use_the_mechanism():
    for path in ADOPTED:
        nb = _read(path)
        assert editions.count_checks(nb) >= 3, path.name
        slots = [line for c in nb.cells for line in editions.answer_lines(c.source)]
        assert len(slots) >= 3, path.name
        # every answer slot has a worked solution or discussion after its check
        assert sum(editions.is_solution(c) for c in nb.cells) >= editions.count_checks(nb) - 1


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    editions.write_edition("student", out, None, NB_DIR)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_edition_has_no_solution(path, student_dir):
    instructor, student = _read(path), _read(student_dir / path.name)
    assert not any(editions.is_solution(c) for c in student.cells)
    assert not any(c.get("outputs") for c in student.cells if c.cell_type == "code")
    text = "\n".join(c.source for c in student.cells)
    # no sentence of a solution survives: the discussion answers' lines and the worked
    # solutions' comments (their code may share lines with the check cells)
    for cell in filter(editions.is_solution, instructor.cells):
        for line in cell.source.splitlines():
            line = line.strip()
            if len(line) >= 30 and (cell.cell_type == "markdown" or line.startswith("#")):
                assert line not in text, (
                    f"{path.name}: solution text in the student edition: {line}"
                )
    # every answer slot holds `...`
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    for line in editions.answer_lines(code):
        assert re.match(r"^\s*(\w+(\s*:[^=]+)?\s*=|return)\s+\.\.\.\s+#\s*ANSWER", line), line
    # the rest is the instructor edition, cell for cell
    kept = [c for c in instructor.cells if not editions.is_solution(c)]
    assert len(kept) == len(student.cells)
    for a, b in zip(kept, student.cells):
        assert editions.student_source(a.source) == b.source if a.cell_type == "code" else a == b


# --------------------------------------------------------------------------- execution
@pytest.mark.slow
@pytest.mark.parametrize("path", ADOPTED, ids=lambda p: p.stem)
def test_untouched_student_edition_runs_and_every_check_skips(path, student_dir, tmp_path):
    out = notebook_runner.execute(student_dir / path.name, out_dir=tmp_path, fast=True)
    nb = _read(out)
    n = editions.count_checks(nb)
    assert editions.reported(nb) == {"skipped": n, "correct": 0, "wrong": 0}, path.name


@pytest.mark.slow
def test_a_wrong_answer_fails_its_check_with_the_hint(student_dir, tmp_path):
    """A learner answers exercise 3 of notebook 01 with a width that is safe but not the
    largest: the run stops at that check, with the check's message and hint."""
    path = student_dir / NOTEBOOKS[0].name
    nb = _read(path)
    (cell,) = [c for c in nb.cells if c.source.startswith("max_I = ...")]
    cell.source = cell.source.replace("max_I = ...", "max_I = 1536", 1)
    wrong = tmp_path / path.name
    nbformat.write(nb, wrong)
    with pytest.raises(CellExecutionError) as e:
        notebook_runner.execute(wrong, out_dir=tmp_path / "executed", fast=True)
    message = str(e.value)
    assert "ExerciseFailed" in message and "[wrong] Exercise 3 (int32 is wide enough)" in message
    assert "go higher" in message and "Hint: the largest int32 is 2**31 - 1" in message


def test_cli_writes_both_editions(tmp_path, capsys):
    student = tmp_path / "s" / NOTEBOOKS[1].name
    assert (
        cli.main(
            [
                "notebooks",
                "02",
                "--dir",
                str(NB_DIR),
                "--edition",
                "student",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    assert f"wrote {student} (student edition)" in capsys.readouterr().out
    assert not any(editions.is_solution(c) for c in _read(student).cells)
    assert (
        cli.main(
            [
                "notebooks",
                "--dir",
                str(NB_DIR),
                "--edition",
                "instructor",
                "--out",
                str(tmp_path / "i"),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "i").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    for args in (["--edition", "student"], ["--out", str(tmp_path)], ["--run"]):
        assert cli.main(["notebooks", "01", "--dir", str(NB_DIR), *args]) == 2, args
        assert "usmlite-edu: error: --" in capsys.readouterr().err
