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

import jax.numpy as jnp
import numpy as np

from usmlite_edu.core import quant, sizes, sparsity
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


# --- notebook 02 --------------------------------------------------------------------


def check_nm_mask_answer(label: str, answer: Any, w: Any, n: int, m: int, *, axis: int = 1,
                         hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 02's Exercise 1: ``answer`` must be the 0/1 N:M mask of ``w``
    (:func:`usmlite_edu.core.sparsity.nm_mask`, groups of ``m`` along ``axis``)."""
    mask = np.asarray(sparsity.nm_mask(jnp.asarray(w), n, m, axis=axis)).astype(int)
    return check_answer(label, answer, mask, hint=hint, correct=f"nm_mask gives {mask.tolist()}")


def top_energy_share(w: Any, fraction: float = 0.05) -> float:
    """The share of ``w``'s energy (sum of squares) held by its largest ``fraction`` of
    weights by magnitude (``int(size * fraction)`` of them)."""
    e = np.sort(np.asarray(w, np.float64).ravel() ** 2)[::-1]
    return float(e[: int(e.size * fraction)].sum() / e.sum())


def check_tail_gap_change(label: str, answer: Any, w: Any, gap: float, gap_gaussian: float, *,
                          hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 02's Exercise 2: the pair ``("grows" | "shrinks", share)``: whether the
    2:4 energy gap ``gap`` of the heavy-tailed ``w`` is above the Gaussian's
    ``gap_gaussian``, and :func:`top_energy_share` of ``w`` (within 0.04)."""
    return check_choice_and_number(
        label,
        answer,
        "grows" if gap > gap_gaussian else "shrinks",
        top_energy_share(w, 0.05),
        abs_tol=0.04,
        rel_tol=0.0,
        choices=("grows", "shrinks"),
        hint=hint,
        correct=f"gap {gap:.3f} against {gap_gaussian:.3f} for the Gaussian",
    )


def rises(values: Any) -> int:
    """How many times ``values`` goes up from one item to the next."""
    return int(np.sum(np.diff(np.asarray(values, np.float64)) > 0))


def check_longer_phase_always_better(label: str, answer: Any, phases: Any, final_loss: Any,
                                     steps: int, *, hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 02's Exercise 3: the pair ``("always" | "not always", best)``: "always"
    when the final training loss ``final_loss`` never :func:`rises` from one few-shot
    length of ``phases`` to the next longer one, and ``best``, the length with the lowest
    final loss as a fraction of the run's ``steps`` (within 2%; below 1, the longest
    phase is not the best, so a longer phase is not always better)."""
    order = np.argsort(np.asarray(phases))
    loss = np.asarray(final_loss, np.float64)[order]
    best = float(np.asarray(phases)[order][int(np.argmin(loss))]) / steps
    n = rises(loss)
    return check_choice_and_number(
        label,
        answer,
        "always" if n == 0 else "not always",
        best,
        rel_tol=0.02,
        choices=("always", "not always"),
        hint=hint,
        correct=f"lowest final loss at T_p = {best:.3f} x {steps}; it rises {n} time(s) "
        f"over the {len(order)} lengths",
    )


# --- model sizes (notebooks 04, 05, 07, 09, 10, 12) ----------------------------------


def _spec_name(spec: Any) -> str:
    return spec if isinstance(spec, str) else "the spec"


def check_size_ratio(label: str, answer: Any, spec: Any, model: Any = "usm_2b",
                     convention: sizes.Convention = "paper", *, relative_to: str | None = None,
                     abs_tol: float = 0.0, rel_tol: float = 1e-9,
                     hint: str = "") -> Outcome:  # fmt: skip
    """A size exercise: ``answer`` must be :func:`usmlite_edu.core.sizes.size_ratio` of
    ``spec`` on ``model`` in ``convention`` (percent of float32), or with ``relative_to``
    its excess over that spec's size in points (notebook 04's Exercise 1, the price of
    the scales). Used by notebooks 04, 05, 07, 10 and 12's size exercises."""
    value = sizes.size_ratio(spec, model, convention)
    other = "exact" if convention == "paper" else "paper"
    if relative_to is not None:
        base = sizes.size_ratio(relative_to, model, convention)
        value -= base
        correct = f"{value:.2f} points over {relative_to} ({base:.2f}%)"
    else:
        correct = (
            f"{_spec_name(spec)}: {value:.3f}% in the {convention} convention "
            f"({other}: {sizes.size_ratio(spec, model, other):.3f}%)"
        )
    return check_answer(
        label, answer, value, abs_tol=abs_tol, rel_tol=rel_tol, hint=hint, correct=correct
    )


def frontier_leavers(points: Any, new_points: Any) -> set[str]:
    """The specs on the Pareto frontier of ``points`` that are not on that of
    ``new_points`` (lists of dicts with ``"spec"`` and ``"frontier"``, notebook 05's
    ``pareto_points``)."""
    front = lambda pts: {p["spec"] for p in pts if p["frontier"]}  # noqa: E731
    return front(points) - front(new_points)


def check_frontier_leavers(label: str, answer: Any, points: Any, new_points: Any, *,
                           hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 05's Exercise 2: ``answer`` must be the set :func:`frontier_leavers`."""
    joined = frontier_leavers(new_points, points)
    return check_answer(
        label,
        set(answer) if isinstance(answer, list | tuple) else answer,
        frontier_leavers(points, new_points),
        hint=hint,
        correct=f"joining it instead: {sorted(joined)}",
    )


def size_excess(spec: str, model: Any) -> float:
    """The exact stored size of ``model`` compressed with ``spec`` minus the paper's
    estimate of it, in points of percent of float32 (notebook 05's Exercise 3)."""
    return sizes.model_size(spec, model).ratio - sizes.size_ratio(spec, model)


def check_size_excess(label: str, answer: Any, spec: str, model: Any, other: Any, *,
                      abs_tol: float = 0.05, hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 05's Exercise 3: the pair ``("larger" | "smaller", excess)``: whether
    :func:`size_excess` of ``model`` is larger than that of ``other``, and its value in
    points (within ``abs_tol``)."""
    mine, theirs = size_excess(spec, model), size_excess(spec, other)
    return check_choice_and_number(
        label,
        answer,
        "larger" if mine > theirs else "smaller",
        mine,
        abs_tol=abs_tol,
        rel_tol=0.0,
        choices=("larger", "smaller"),
        hint=hint,
        correct=f"excess: {model} {mine:.2f} points, {other} {theirs:.2f} points",
    )


def check_size_part_ratio(label: str, answer: Any, part: str, spec: str, reference: str,
                          model: Any, *, rel_tol: float = 1e-6,
                          hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 09's Exercise 1: ``answer`` must be the bits of the ``part``
    (``"values"``, ``"index"``, ``"scales"``, ...) of
    :func:`usmlite_edu.core.sizes.model_size` with ``spec`` over those with
    ``reference``."""
    a = getattr(sizes.model_size(spec, model), part)
    b = getattr(sizes.model_size(reference, model), part)
    return check_answer(label, answer, a / b, rel_tol=rel_tol, hint=hint,
                        correct=f"{part}: {spec} {a / 8e6:.3f} MB, {reference} {b / 8e6:.3f} MB")  # fmt: skip


# --- notebook 07 --------------------------------------------------------------------


def nm_nesting(weights: Any) -> tuple[float, float, float]:
    """For the ``(in, out)`` matrices ``weights`` pruned 2:4 and 1:4 along the inputs
    (:func:`usmlite_edu.core.sparsity.nm_mask`): the share of 1:4's kept weights that 2:4
    keeps too, the share of 2:4's kept weights that 1:4 keeps, and the mean over the
    matrices of the share of 2:4's kept squared magnitude in the weights 1:4 drops."""
    kept14 = kept24 = both = 0
    lost = []
    for w in weights:
        w = np.asarray(w)
        m24 = np.asarray(sparsity.nm_mask(jnp.asarray(w), 2, 4))
        m14 = np.asarray(sparsity.nm_mask(jnp.asarray(w), 1, 4))
        kept14, kept24, both = kept14 + m14.sum(), kept24 + m24.sum(), both + (m14 & m24).sum()
        lost.append(np.sum(w[m24 & ~m14] ** 2) / np.sum(w[m24] ** 2))
    return float(both / kept14), float(both / kept24), float(np.mean(lost))


def check_nested_masks(label: str, answer: Any, weights: Any, *, hint: str = "") -> Outcome:
    """Notebook 07's Exercise 2a: the pair ``("nested" | "not nested", share)``, ``share``
    being :func:`nm_nesting`'s share of 1:4's kept weights that 2:4 keeps too (1 exactly
    when every 1:4 mask lies inside its 2:4 mask)."""
    inside = nm_nesting(weights)[0]
    return check_choice_and_number(
        label,
        answer,
        "nested" if inside == 1.0 else "not nested",
        inside,
        rel_tol=0.0,
        abs_tol=1e-9,
        choices=("nested", "not nested"),
        hint=hint,
        correct=f"2:4 keeps {inside:.0%} of the weights 1:4 keeps",
    )


def check_kept_fraction(label: str, answer: Any, weights: Any, *, hint: str = "") -> Outcome:
    """Notebook 07's Exercise 2b: ``answer`` must be :func:`nm_nesting`'s share of 2:4's
    kept weights that 1:4 keeps."""
    _, kept, lost = nm_nesting(weights)
    return check_answer(
        label,
        answer,
        kept,
        abs_tol=1e-9,
        hint=hint,
        correct=f"1:4 keeps {kept:.2f} of 2:4's weights; the ones it drops hold "
        f"{100 * lost:.0f}% of their squared magnitude on average (per layer)",
    )
