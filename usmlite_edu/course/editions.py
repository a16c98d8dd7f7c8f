"""The notebooks' two editions, written from one source (``usmlite-edu notebooks --edition``).

The committed notebooks are the **instructor** edition: everything, solutions included.
The **student** edition is derived from them by two rules:

* every cell tagged ``solution`` (worked solutions in code cells, discussion answers in
  markdown cells; both open collapsed in JupyterLab) is removed;
* every *answer slot*, a code line ending in an ``# ANSWER`` comment, keeps its name and
  comment but loses its value: ``my_bits = 4  # ANSWER: ...`` becomes
  ``my_bits = ...  # ANSWER: ...`` and ``return jnp.round(x)  # ANSWER`` becomes
  ``return ...  # ANSWER``. The exercise's check (:func:`usmlite_edu.course.exercises.check_answer`)
  then skips until the learner writes an answer.

An answer slot is one line, ``NAME = VALUE`` (an optional annotation allowed) or
``return VALUE``; anything else carrying the marker is an error, so an answer can never
leak into the student edition through a line the rule does not understand. Outputs are
cleared in the student edition (a check cell's output would show the answer).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from usmlite_edu.course import notebook_runner

__all__ = [
    "ANSWER_MARK",
    "EDITIONS",
    "SOLUTION_TAG",
    "answer_lines",
    "count_checks",
    "has_check",
    "is_solution",
    "make_edition",
    "reported",
    "student_source",
    "write_edition",
]

EDITIONS = ("student", "instructor")
SOLUTION_TAG = "solution"
#: The comment that marks an answer slot (a line of the form ``NAME = VALUE  # ANSWER...``).
ANSWER_MARK = "# ANSWER"

_MARK = re.compile(r"#\s*ANSWER\b")
_ASSIGN = re.compile(r"^(?P<lhs>\s*[A-Za-z_]\w*\s*(?::[^=]+)?=)(?!=)\s*(?P<value>.+?)\s*$")
_RETURN = re.compile(r"^(?P<lhs>\s*return)\s+(?P<value>.+?)\s*$")


def is_solution(cell) -> bool:
    """A worked solution or a discussion answer: only the instructor edition has it."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def answer_lines(source: str) -> list[str]:
    """The lines of ``source`` that carry the answer mark."""
    return [line for line in source.splitlines() if _MARK.search(line)]


def _blank_answer(line: str) -> str:
    mark = _MARK.search(line)
    code, comment = line[: mark.start()], line[mark.start() :]
    for pattern in (_ASSIGN, _RETURN):
        m = pattern.match(code)
        if m:
            return f"{m['lhs']} ...  {comment}"
    raise ValueError(
        f"an {ANSWER_MARK} line must be `NAME = VALUE  {ANSWER_MARK}...` or "
        f"`return VALUE  {ANSWER_MARK}...` on one line, got: {line.strip()!r}"
    )


def student_source(source: str) -> str:
    """``source`` with every answer slot's value replaced by ``...``."""
    return "\n".join(
        _blank_answer(line) if _MARK.search(line) else line for line in source.split("\n")
    )


def make_edition(nb, edition: str):
    """A copy of the notebook ``nb`` (an ``nbformat`` node) as ``edition``."""
    if edition not in EDITIONS:
        raise ValueError(f"unknown edition {edition!r}; choose one of {', '.join(EDITIONS)}")
    nb = copy.deepcopy(nb)
    nb.metadata.setdefault("usmlite_edu", {})["edition"] = edition
    if edition == "instructor":
        return nb
    cells = []
    for cell in nb.cells:
        if is_solution(cell):
            continue
        if cell.cell_type == "code":
            cell.source = student_source(cell.source)
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    nb.cells = cells
    return nb


def write_edition(
    edition: str,
    out_dir: str | Path,
    names: list[str] | None = None,
    directory: str | Path | None = None,
) -> list[Path]:
    """Write ``edition`` of the selected notebooks (see :func:`notebook_runner.select`) to
    ``out_dir`` as ``NN_name.ipynb``; returns the paths written.

    ``out_dir`` must not be the source folder itself (the student edition would overwrite
    the only copy of the solutions).
    """
    import nbformat

    if edition not in EDITIONS:
        raise ValueError(f"unknown edition {edition!r}; choose one of {', '.join(EDITIONS)}")
    paths = notebook_runner.select(names, directory)
    out_dir = Path(out_dir)
    if out_dir.resolve() == paths[0].parent.resolve():
        raise ValueError(f"--out {out_dir} is the notebooks' own folder; choose another")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        nb = make_edition(nbformat.read(p, as_version=4), edition)
        out = out_dir / p.name
        nbformat.write(nb, out)
        written.append(out)
    return written


# an exercise's check, one that hides its expected value (usmlite_edu.course.answers.check_*),
# or an implement-it lab's (usmlite_edu.course.labs.check_*)
_CHECK_CALL = re.compile(r"\bcheck_answer\(|\b(?:labs|answers)\.check_\w+\(")


def has_check(source: str) -> bool:
    """Whether a code cell's ``source`` calls an exercise check (``check_answer``,
    ``answers.check_*`` or ``labs.check_*``)."""
    return bool(_CHECK_CALL.search(source))


def count_checks(nb) -> int:
    """How many exercise checks (calls of ``check_answer``, ``answers.check_*`` or
    ``labs.check_*``) the notebook's code cells make."""
    return sum(len(_CHECK_CALL.findall(c.source)) for c in nb.cells if c.cell_type == "code")


def reported(nb) -> dict[str, int]:
    """What an *executed* notebook's exercise checks reported: counts of ``skipped``,
    ``correct`` and ``wrong`` (their printed prefixes; in strict mode a wrong answer is a
    cell failing with ``ExerciseFailed``)."""
    counts = {"skipped": 0, "correct": 0, "wrong": 0}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                for line in out.get("text", "").splitlines():
                    for status in ("skipped", "correct", "wrong"):
                        counts[status] += line.startswith(f"[{status}] ")
            elif out.get("output_type") == "error" and out.get("ename") == "ExerciseFailed":
                counts["wrong"] += 1
    return counts
