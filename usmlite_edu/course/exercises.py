"""Checking a learner's answer to a notebook exercise.

An exercise gives the learner one or more *answer slots*, variables that the student
edition of the notebooks ships holding ``...`` (Python's ``Ellipsis``)::

    my_factor = ...  # ANSWER: how many times larger is the int4 error than the int8 one?

and a check cell that compares the answer with what the code measures::

    check_answer("Exercise 1 (four bits fewer)", my_factor, measured, rel_tol=0.05,
                 hint="the step is max|w| / qmax; compare qmax for int4 and int8")

A check has three outcomes:

* **skipped**: the slot still holds ``...`` (or a tuple, list, set or dict holding one).
  The check prints a line starting ``[skipped]`` and returns, so "Run all" carries on past
  exercises nobody has answered yet;
* **wrong**: prints a line starting ``[wrong]`` with the hint and returns, so the learner
  sees the rest of the notebook; in *strict* mode it raises :class:`ExerciseFailed` (an
  ``AssertionError`` with the same message) instead, and the cell fails like any check
  cell's ``assert``. Strict mode is ``USMLITE_STRICT_CHECKS=1``, which the project's
  notebook runner sets for its kernels (the tests, the main job, the book): there a wrong
  answer in the instructor edition is a bug and must stop the run;
* **correct**: prints a line starting ``[correct]``.

Every outcome is recorded in the kernel; :func:`score` prints and returns the tally (a
notebook's last cell calls it), so a learner, or an instructor collecting notebooks, sees
how many checks passed. In a Jupyter kernel each check also leaves a machine-readable
record in its cell's output (MIME type :data:`RECORD_MIME`: the label and the outcome,
never the expected value), which ``usmlite-edu grade`` reads from executed notebooks
(:mod:`usmlite_edu.course.grading`).

The printed prefixes are stable: ``tests/test_editions.py`` counts them in executed
notebooks (every check skips in the untouched student edition and passes in the
instructor edition). The editions themselves are written by :mod:`usmlite_edu.course.editions`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np

__all__ = [
    "ExerciseFailed",
    "Outcome",
    "check_answer",
    "is_unanswered",
    "matches",
    "score",
    "reset_score",
    "strict_mode",
]

#: What an answer slot holds until the learner fills it in (the student edition's value).
UNANSWERED = ...

_MISSING = object()


class ExerciseFailed(AssertionError):
    """A wrong answer: the message says what was answered and gives the hint."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a check reports (``wrong`` only outside strict mode, where it raises)."""

    label: str
    status: Literal["skipped", "correct", "wrong"]
    message: str

    def __bool__(self) -> bool:  # ``if check_answer(...):`` reads as "if answered correctly"
        return self.status == "correct"

    def _ipython_display_(self) -> None:
        """Show nothing as a cell's result: :func:`check_answer` has printed the outcome."""


#: the MIME type of a check's record in an executed notebook (label and outcome only)
RECORD_MIME = "application/vnd.usmlite.check+json"

#: the last outcome of each check run in this kernel, by label (:func:`score`)
_SCORES: dict[str, str] = {}


def _record(label: str, status: str) -> None:
    """Remember the outcome, and in a Jupyter kernel leave it in the cell's output for the
    grader (an empty text/plain part keeps it invisible to the learner)."""
    _SCORES[label] = status
    try:
        from IPython import get_ipython  # optional: only inside a kernel
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is not None and hasattr(get_ipython(), "kernel"):
        display({RECORD_MIME: {"label": label, "status": status}, "text/plain": ""}, raw=True)


def strict_mode() -> bool:
    """Whether a wrong answer raises (``USMLITE_STRICT_CHECKS=1``) instead of printing."""
    return os.environ.get("USMLITE_STRICT_CHECKS", "0") == "1"


def reset_score() -> None:
    """Forget the outcomes recorded so far (a new attempt at the notebook)."""
    _SCORES.clear()


def score(show: bool = True) -> dict[str, int]:
    """The tally of this kernel's checks, by their last outcome: ``{"correct": .., "wrong":
    .., "skipped": ..}``; printed as one line (``[score] ...``) with ``show``. A check run
    again counts once, with its latest answer."""
    counts = {"correct": 0, "wrong": 0, "skipped": 0}
    for status in _SCORES.values():
        counts[status] += 1
    if show:
        total = sum(counts.values())
        print(
            f"[score] {counts['correct']} of {total} checks correct, {counts['wrong']} wrong, "
            f"{counts['skipped']} not answered yet"
            + (
                ": " + ", ".join(k for k, v in _SCORES.items() if v == "wrong")
                if counts["wrong"]
                else ""
            )
        )
    return counts


def is_unanswered(answer: Any) -> bool:
    """``answer`` is ``...``, or a tuple, list, set or dict with ``...`` among its items
    (a partly filled answer such as ``(1, ..., 80)`` counts as not answered yet)."""
    if answer is UNANSWERED:
        return True
    if isinstance(answer, dict):
        return any(v is UNANSWERED for v in answer.values())
    if isinstance(answer, tuple | list | set | frozenset):
        return any(a is UNANSWERED for a in answer)
    return False


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(
        x, bool | np.bool_
    )


def matches(answer: Any, expected: Any, *, abs_tol: float = 0.0, rel_tol: float = 1e-9) -> bool:
    """Whether ``answer`` equals ``expected`` the way a person means it.

    Numbers within ``abs_tol`` or ``rel_tol``; strings case- and space-insensitive;
    booleans exactly (``1`` is not ``True``); sets as sets; tuples and lists item by item
    (either kind); dicts key by key; arrays element by element within the tolerances.
    """
    if isinstance(expected, bool | np.bool_):
        return isinstance(answer, bool | np.bool_) and bool(answer) == bool(expected)
    if _is_number(expected):
        return _is_number(answer) and math.isclose(
            float(answer), float(expected), rel_tol=rel_tol, abs_tol=abs_tol
        )
    if isinstance(expected, str):
        return isinstance(answer, str) and answer.strip().lower() == expected.strip().lower()
    if isinstance(expected, set | frozenset):
        return (
            isinstance(answer, Iterable)
            and not isinstance(answer, str)
            and (set(answer) == set(expected))
        )
    if isinstance(expected, dict):
        return (
            isinstance(answer, dict)
            and set(answer) == set(expected)
            and all(
                matches(answer[k], v, abs_tol=abs_tol, rel_tol=rel_tol) for k, v in expected.items()
            )
        )
    if isinstance(expected, tuple | list):
        return (
            isinstance(answer, tuple | list)
            and len(answer) == len(expected)
            and all(
                matches(a, e, abs_tol=abs_tol, rel_tol=rel_tol) for a, e in zip(answer, expected)
            )
        )
    if isinstance(expected, np.ndarray) or hasattr(expected, "__array__"):
        a, e = np.asarray(answer), np.asarray(expected)
        if a.shape != e.shape:
            return False
        if e.dtype.kind in "fc":
            return bool(np.allclose(a, e, rtol=rel_tol, atol=abs_tol))
        return bool(np.array_equal(a, e))
    return answer == expected


def check_answer(
    label: str,
    answer: Any,
    expected: Any = _MISSING,
    *,
    accept: Callable[[Any], bool | None] | None = None,
    choices: Iterable[Any] | None = None,
    abs_tol: float = 0.0,
    rel_tol: float = 1e-9,
    hint: str = "",
    correct: str = "",
    strict: bool | None = None,
) -> Outcome:
    """Check one exercise's answer; see the module docstring for the three outcomes.

    Args:
      label: names the exercise in every message, e.g. ``"Exercise 2 (heavier tails)"``.
      answer: the learner's answer slot (a tuple of them for a several-part answer).
      expected: what the code measured; compared with :func:`matches`.
      accept: instead of (or as well as) ``expected``, a test of the answer for exercises
        with many right answers (e.g. a function the learner wrote): it returns ``False``
        or raises to reject. Its ``AssertionError`` message, or any other exception it
        raises (the learner's code failing), is shown with the hint.
      choices: the allowed answers, e.g. ``("grows", "shrinks")``; anything else is wrong
        and the message lists them.
      abs_tol, rel_tol: tolerances for numeric answers.
      hint: shown with a wrong answer. Say where to look, not what to write.
      correct: shown after ``[correct]`` (e.g. the measured value, for the record).
      strict: raise on a wrong answer instead of printing it; ``None`` reads
        ``USMLITE_STRICT_CHECKS`` (:func:`strict_mode`).

    Returns:
      An :class:`Outcome` (``skipped``, ``correct`` or ``wrong``); in strict mode a wrong
      answer raises :class:`ExerciseFailed` instead.
    """
    if expected is _MISSING and accept is None:
        raise TypeError("check_answer needs `expected` or `accept`")
    if is_unanswered(answer):
        message = (
            "no answer yet: replace the `...` in the exercise cell with your answer, run it, "
            "then run this cell again"
        )
        print(f"[skipped] {label}: {message}")
        _record(label, "skipped")
        return Outcome(label, "skipped", message)

    why = ""
    ok = True
    if choices is not None:
        choices = tuple(choices)
        if not any(matches(answer, c) for c in choices):
            ok, why = False, f"answer one of {', '.join(repr(c) for c in choices)}"
    if ok and expected is not _MISSING:
        ok = matches(answer, expected, abs_tol=abs_tol, rel_tol=rel_tol)
    if ok and accept is not None:
        try:
            verdict = accept(answer)
        except AssertionError as e:
            ok, why = False, str(e)
        except Exception as e:  # the learner's own code failed: report it as the answer
            ok, why = False, f"{type(e).__name__}: {e}"
        else:
            ok = verdict is None or bool(verdict)
    if not ok:
        shown = repr(answer)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        parts = [f"[wrong] {label}: your answer {shown} is not right"]
        if why:
            parts.append(f"({why})")
        message = " ".join(parts) + "."
        if hint:
            message += f" Hint: {hint}"
        _record(label, "wrong")
        if strict_mode() if strict is None else strict:
            raise ExerciseFailed(message)
        print(message)
        return Outcome(label, "wrong", message)
    print(f"[correct] {label}" + (f": {correct}" if correct else ""))
    _record(label, "correct")
    return Outcome(label, "correct", correct)
