"""Exercise checks whose expected value the learner does not see.

A check cell that writes its expected value in visible code (``a <= 2.54 / 254``) gives
the answer away to anyone who reads it before answering. The checks here take the
exercise's *inputs* (the tensors the notebook measured, the table it printed) and
compute the expected value inside the library, then hand the comparison to
:func:`usmlite_edu.course.exercises.check_answer` (same ``[skipped]`` / ``[correct]`` /
``[wrong]`` outcomes, same strict mode, same score).

Choice questions ask for a number as well (:func:`check_choice_and_number`): the answer
slot is a pair ``(choice, number)``, and a guessed choice without the number that
justifies it is wrong.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from usmlite_edu.core import quant
from usmlite_edu.course.exercises import Outcome, check_answer, matches

__all__ = ["check_choice_and_number", "check_w8a8_bound", "median_step_ratio", "w8a8_bound"]


#: a quantization grid as ``(bits, symmetric, sub_channels)``, the arguments of
#: :func:`usmlite_edu.core.quant.quantize`
Grid = tuple[int, bool, int]


def median_step_ratio(w: Any, a: Grid, b: Grid) -> float:
    """The median, over the weights of the ``(in, out)`` matrix ``w``, of the step of the
    grid ``a`` that a weight is quantized on divided by the step of grid ``b``.

    Each grid's step is :func:`usmlite_edu.core.quant.quantize`'s scale of the weight's
    (sub-channel group, output channel), the min/max step of Eq. (2); above 1, ``b``'s grid
    is the finer one for most weights.
    """
    w = np.asarray(w, np.float32)

    def step(grid: Grid) -> np.ndarray:
        bits, symmetric, groups = grid
        scale = np.asarray(quant.quantize(w, bits, symmetric=symmetric, sub_channels=groups).scale)
        return np.repeat(scale, w.shape[0] // groups, axis=0)

    return float(np.median(step(a) / step(b)))


def w8a8_bound(x: Any, bits: int = 8) -> float:
    """The largest change symmetric per-token quantization can make to one of the token
    ``x``'s values: half a step, the step being ``max|x|`` over the largest level."""
    qmax = 2 ** (bits - 1) - 1
    return float(np.max(np.abs(np.asarray(x, np.float64)))) / qmax / 2


def check_w8a8_bound(label: str, answer: Any, x: Any, measured: float, *, hint: str = "",
                     rel_tol: float = 1e-3) -> Outcome:  # fmt: skip
    """Notebook 09's Exercise 2: ``answer`` must bound the ``measured`` change and be the
    tight bound :func:`w8a8_bound` of the token ``x`` (within ``rel_tol``, either side)."""
    bound = w8a8_bound(x)

    def accept(a):
        assert float(a) >= measured - 1e-7, "smaller than a change the check measured"
        assert float(a) <= bound * (1 + rel_tol), "a bound, but not the tightest one"
        assert float(a) >= bound * (1 - rel_tol), "rounding can move some value by more"
        return True

    return check_answer(
        label,
        answer,
        accept=accept,
        hint=hint,
        correct=f"largest change measured on {np.size(x)} values: {measured:.5f}",
    )


def check_choice_and_number(
    label: str,
    answer: Any,
    choice: str,
    number: float,
    *,
    choices: tuple[str, ...],
    rel_tol: float = 0.1,
    abs_tol: float = 0.0,
    hint: str = "",
    correct: str = "",
) -> Outcome:
    """A two- or three-way question answered as ``(choice, number)``: right only when the
    choice is ``choice`` *and* the number (the reason: the quantity the choice follows
    from) is ``number`` within the tolerances. The expected pair is never printed."""

    def accept(a):
        assert isinstance(a, tuple | list) and len(a) == 2, (
            "answer with a pair (choice, number), e.g. "
            f"({choices[0]!r}, 1.5): the choice and the number it follows from"
        )
        c, x = a
        assert any(matches(c, k) for k in choices), f"choose one of {', '.join(map(repr, choices))}"
        assert isinstance(x, int | float | np.integer | np.floating), "the second item is a number"
        ok_number = math.isclose(float(x), float(number), rel_tol=rel_tol, abs_tol=abs_tol)
        assert ok_number, "the number is off; work it out again from what the notebook printed"
        assert matches(c, choice), "the number is right, but the choice does not follow from it"
        return True

    return check_answer(label, answer, accept=accept, hint=hint, correct=correct)
