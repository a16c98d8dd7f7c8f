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

from usmlite_edu.core import quant, sizes, sparsity, stats
from usmlite_edu.course.exercises import Outcome, check_answer, matches

__all__ = [
    "changed_channels",
    "check_changed_channels",
    "check_channel_factor",
    "check_choice_and_number",
    "check_copies",
    "check_encoder_frames",
    "check_entropies",
    "check_error_factor",
    "check_feature_shape",
    "check_fits_without_remat",
    "check_frontier_leavers",
    "check_frozen_mask_srste",
    "check_grid_choice",
    "check_group_clipping",
    "check_kept_fraction",
    "check_learned_step",
    "check_longer_phase_always_better",
    "check_lsq_init",
    "check_margin_changes",
    "check_max_repeats",
    "check_nested_masks",
    "check_nm_mask_answer",
    "check_pareto_frontier",
    "check_per_tensor_others",
    "check_shard_shape",
    "check_size_excess",
    "check_size_part_ratio",
    "check_size_ratio",
    "check_tail_gap_change",
    "check_three_levels",
    "check_train_state_gib",
    "check_w8a8_bound",
    "check_word_points",
    "differing_share",
    "encoder_frames",
    "entropies",
    "feature_shape",
    "frontier_leavers",
    "lsq_init_error",
    "margin_changes",
    "max_repeats",
    "median_step_ratio",
    "nm_nesting",
    "pareto_rows",
    "quantization_error",
    "reference_words",
    "rises",
    "size_excess",
    "straight_line_peak",
    "tail_ratio",
    "top_energy_share",
    "train_state_bytes",
    "w8a8_bound",
    "zero_share",
]


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


# --- notebooks 01, 03, 04 and 10: quantization grids ---------------------------------


def check_error_factor(label: str, answer: Any, errors: Any, low: int, high: int, *,
                       rel_tol: float = 0.05, hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 01's Exercise 1: ``answer`` must be the relative error at ``low`` bits over
    that at ``high`` bits, read from ``errors`` (a mapping from bits to the measured
    error), within ``rel_tol``."""
    factor = float(errors[low]) / float(errors[high])
    return check_answer(label, answer, factor, rel_tol=rel_tol, hint=hint,
                        correct=f"measured factor {factor:.2f}")  # fmt: skip


def _rms_by_channel(w: np.ndarray, w_hat: Any) -> np.ndarray:
    return np.sqrt(np.mean((w - np.asarray(w_hat)) ** 2, axis=0))


def changed_channels(w: Any, w_new: Any, bits: int) -> list[int]:
    """The output channels (columns) of ``w_new`` whose per-channel RMS quantization error
    at ``bits`` (:func:`usmlite_edu.core.quant.quantize`, symmetric) differs from ``w``'s
    (relative tolerance 1e-6)."""

    def rms(x):
        x = jnp.asarray(x, jnp.float32)
        return _rms_by_channel(np.asarray(x), quant.dequantize(quant.quantize(x, bits)))

    return np.flatnonzero(~np.isclose(rms(w_new), rms(w), rtol=1e-6, atol=0)).tolist()


def check_changed_channels(label: str, answer: Any, w: Any, w_new: Any, bits: int = 4, *,
                           hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 01's Exercise 2a: ``answer`` must be the number of
    :func:`changed_channels`."""
    changed = changed_channels(w, w_new, bits)
    return check_answer(label, answer, len(changed), hint=hint,
                        correct=f"channels whose error changed: {changed}")  # fmt: skip


def check_per_tensor_others(label: str, answer: Any, w: Any, w_new: Any, others: Any,
                            bits: int = 4, *, rel_tol: float = 0.01,
                            hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 01's Exercise 2b: the pair ``("up" | "down" | "unchanged", ratio)``: how
    the mean per-channel RMS error of the columns ``others`` moves from ``w`` to ``w_new``
    under per-tensor quantization at ``bits`` (one symmetric scale for the whole matrix;
    "unchanged" within 1e-6), and the new per-tensor scale over the old."""

    def per_tensor(x):
        x = jnp.asarray(x, jnp.float32)
        q = quant.quantize(x.reshape(-1, 1), bits)
        rms = _rms_by_channel(np.asarray(x), quant.dequantize(q).reshape(x.shape))
        return float(rms[np.asarray(others)].mean()), float(q.scale.ravel()[0])

    (before, s0), (after, s1) = per_tensor(w), per_tensor(w_new)
    unchanged = np.isclose(after, before, rtol=1e-6)
    return check_choice_and_number(
        label,
        answer,
        "unchanged" if unchanged else ("up" if after > before else "down"),
        s1 / s0,
        rel_tol=rel_tol,
        choices=("up", "down", "unchanged"),
        hint=hint,
        correct=f"mean RMS error of the other channels {before:.2e} -> {after:.2e}",
    )


def quantization_error(w: Any, grid: Grid) -> float:
    """The relative (Frobenius) error of quantizing and dequantizing ``w`` on ``grid``."""
    w = jnp.asarray(w, jnp.float32)
    bits, symmetric, groups = grid
    w_hat = quant.dequantize(quant.quantize(w, bits, symmetric=symmetric, sub_channels=groups))
    return float(jnp.linalg.norm(w - w_hat) / jnp.linalg.norm(w))


def check_grid_choice(label: str, answer: Any, w: Any, grids: dict[str, Grid],
                      errors: dict[str, float] | None = None, *, rel_tol: float = 0.02,
                      hint: str = "", measure: str = "relative error") -> Outcome:  # fmt: skip
    """Notebook 03's Exercise 2 and 04's Exercise 2, "which of two grids is more
    accurate?": the pair ``(name, ratio)``, ``name`` the one of the two ``grids`` with the
    smaller measured ``errors[name]`` (by default :func:`quantization_error` of ``w``),
    and ``ratio`` the :func:`median_step_ratio` of ``w`` on the first grid over the
    second (within ``rel_tol``)."""
    (a, grid_a), (b, grid_b) = grids.items()
    if errors is None:
        errors = {a: quantization_error(w, grid_a), b: quantization_error(w, grid_b)}
    return check_choice_and_number(
        label,
        answer,
        a if errors[a] < errors[b] else b,
        median_step_ratio(w, grid_a, grid_b),
        rel_tol=rel_tol,
        choices=(a, b),
        hint=hint,
        correct=f"{measure}: {a} {errors[a]:.3g}, {b} {errors[b]:.3g}",
    )


def tail_ratio(w: Any, groups: int) -> float:
    """The median, over the ``groups`` sub-channels (runs of consecutive rows) of each
    column of the ``(in, out)`` matrix ``w``, of the group's max|w| over its RMS."""
    w = np.asarray(w, np.float64)
    g = w.reshape(groups, w.shape[0] // groups, w.shape[1])
    return float(np.median(np.abs(g).max(axis=1) / np.sqrt((g**2).mean(axis=1))))


def check_group_clipping(label: str, answer: Any, w: Any, clip_grid: Any, groups: int = 64, *,
                         bits: int = 2, hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 04's Exercise 3: the pair ``("larger" | "smaller", ratio)``: whether the
    median clip ratio :func:`usmlite_edu.core.quant.search_clip` picks (asymmetric,
    ``bits``, over ``clip_grid``) is larger with ``groups`` sub-channels than per channel,
    and :func:`tail_ratio` of ``w`` with ``groups`` (within 5%)."""

    def median_clip(g):
        clip = quant.search_clip(jnp.asarray(w), bits, symmetric=False, sub_channels=g,
                                 grid=clip_grid)  # fmt: skip
        return float(jnp.median(clip))

    one, many = median_clip(1), median_clip(groups)
    return check_choice_and_number(
        label,
        answer,
        "larger" if many > one else "smaller",
        tail_ratio(w, groups),
        rel_tol=0.05,
        choices=("larger", "smaller"),
        hint=hint,
        correct=f"median ratio: g=1 {one:.2f}, g={groups} {many:.2f}",
    )


def zero_share(w: Any) -> float:
    """The share of the ``(in, out)`` matrix ``w``'s weights below half their column's
    max|w| in magnitude: those that round to 0 on the three-level int2 grid."""
    w = np.abs(np.asarray(w, np.float64))
    return float((w < w.max(axis=0) / 2).mean())


def check_three_levels(label: str, answer: Any, prediction_ratio: float, w: Any, *,
                       hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 10's Exercise 1: the pair ``("larger" | "smaller" | "about equal",
    share)``: how the measured int2 error compares with the uniform-rounding prediction
    (``prediction_ratio`` = measured / predicted; "about equal" within 5%), and
    :func:`zero_share` of the sample ``w`` (within 0.03)."""
    close = abs(prediction_ratio - 1) < 0.05
    return check_choice_and_number(
        label,
        answer,
        "about equal" if close else ("larger" if prediction_ratio > 1 else "smaller"),
        zero_share(w),
        choices=("larger", "smaller", "about equal"),
        abs_tol=0.03,
        rel_tol=0.0,
        hint=hint,
        correct=f"measured / predicted = {prediction_ratio:.3f}",
    )


def check_channel_factor(label: str, answer: Any, errors: Any, reference: Any, channels: Any, *,
                         rel_tol: float = 0.01, hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 10's Exercise 2: ``answer`` must be the mean over ``channels`` of the
    per-channel relative error ``errors`` over ``reference`` (within ``rel_tol``)."""
    idx = np.asarray(channels)
    factor = float(np.mean(np.asarray(errors)[idx] / np.asarray(reference)[idx]))
    return check_answer(label, answer, factor, rel_tol=rel_tol, hint=hint,
                        correct=f"measured factor {factor:.4f} on channels {idx.tolist()}")  # fmt: skip


# --- notebook 06: features, frames and CTC ------------------------------------------


def feature_shape(cfg: Any, num_mels: int, duration_s: float) -> tuple[int, ...]:
    """The shape of :func:`usmlite_edu.speech.frontend.log_mel`'s features of one
    waveform of ``duration_s`` seconds at ``cfg``'s sample rate, with ``num_mels`` bins."""
    from usmlite_edu.speech import frontend  # the speech wing: only notebook 06 needs it

    mel = frontend.LogMelConfig.from_model(cfg.replace(num_mels=num_mels))
    n = int(round(duration_s * cfg.sample_rate))
    feats, _ = frontend.log_mel(np.zeros((1, n), np.float32), np.array([n]), mel)
    return tuple(int(d) for d in feats.shape)


def check_feature_shape(label: str, answer: Any, cfg: Any, num_mels: int, duration_s: float, *,
                        hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 06's Exercise 1: ``answer`` must be :func:`feature_shape`."""
    shape = feature_shape(cfg, num_mels, duration_s)
    return check_answer(label, answer, shape, hint=hint,
                        correct=f"{duration_s} s with {num_mels} mels -> {shape}")  # fmt: skip


def encoder_frames(duration_s: float, cfg: Any) -> int:
    """The encoder frames of ``cfg``'s model for ``duration_s`` seconds of audio: the
    log-mel frames after the convolutional subsampling."""
    from usmlite_edu.speech import frontend, model  # the speech wing: only notebook 06

    n = int(round(duration_s * cfg.sample_rate))
    return int(model.subsampled_lengths(frontend.num_frames(n, cfg)))


def max_repeats(pieces: list[int], frames: int, limit: int = 400) -> int:
    """The most repetitions ``k < limit`` of the token ids ``pieces`` whose CTC alignment
    (:func:`usmlite_edu.speech.batching.ctc_min_frames`) fits in ``frames``; 0 if none."""
    from usmlite_edu.speech import batching  # the speech wing: only notebook 06 needs it

    fits = [k for k in range(1, limit) if batching.ctc_min_frames(pieces * k) <= frames]
    return max(fits) if fits else 0


def check_encoder_frames(label: str, answer: Any, duration_s: float, cfg: Any, *,
                         hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 06's Exercise 2a: ``answer`` must be :func:`encoder_frames`."""
    frames = encoder_frames(duration_s, cfg)
    return check_answer(label, answer, frames, hint=hint, correct=f"{frames} encoder frames")


def check_max_repeats(label: str, answer: Any, pieces: list[int], duration_s: float, cfg: Any,
                      *, hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 06's Exercise 2b: ``answer`` must be :func:`max_repeats` of ``pieces`` in
    the :func:`encoder_frames` of ``duration_s`` seconds."""
    frames = encoder_frames(duration_s, cfg)
    k = max_repeats(pieces, frames)
    return check_answer(label, answer, k, hint=hint,
                        correct=f"up to {k} repetitions fit in {frames} frames")  # fmt: skip


# --- notebook 08: sharding and memory -----------------------------------------------


def check_shard_shape(label: str, answer: Any, layout: dict, *, hint: str = "") -> Outcome:
    """Notebook 08's Exercises 1a and 1c: ``answer`` must be the shape of the piece of an
    array that one device holds (``layout["shard_shape"]``, from the mesh tour)."""
    return check_answer(label, answer, tuple(layout["shard_shape"]), hint=hint)


def check_copies(label: str, answer: Any, layout: dict, devices: int, *,
                 hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 08's Exercise 1b: ``answer`` must be how many of the ``devices`` hold
    each piece of the array laid out as ``layout``: the devices over the pieces."""
    pieces = int(np.prod(layout["shape"]) // np.prod(layout["shard_shape"]))
    return check_answer(label, answer, devices // pieces, hint=hint)


def train_state_bytes(spec: str = "int4+2:4", preset: Any = "usm_2b") -> float:
    """Bytes of the train state of ``preset`` with an N:M ``spec``: float32 weights and two
    float32 Adam moments (12 bytes per parameter) and a one-byte mask per compressible
    weight (the size accounting's index bits at 1 bit per weight)."""
    sb = sizes.model_size(spec, preset)
    return 12 * sb.float_total / 32 + sb.index


def check_train_state_gib(label: str, answer: Any, shards: int = 1, *, spec: str = "int4+2:4",
                          preset: Any = "usm_2b", rel_tol: float = 0.05,
                          hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 08's Exercise 2: ``answer`` must be :func:`train_state_bytes` over
    ``shards`` devices, in GiB (within ``rel_tol``)."""
    gib = train_state_bytes(spec, preset) / shards / 2**30
    return check_answer(label, answer, gib, rel_tol=rel_tol, hint=hint,
                        correct=f"train state {gib:.2f} GiB per core")  # fmt: skip


def straight_line_peak(plans: dict, blocks: int, remat: str) -> float:
    """Notebook 08's estimate of the peak bytes per core of a ``blocks``-block model, from
    the compiled plans ``plans[(layers, remat)]`` of 2 and 4 blocks: the 2-block
    remat=block plan's arguments and temporaries, plus per extra block the slope of
    arguments and temporaries from 2 to 4 blocks with remat, and, with ``remat="none"``,
    also what one block saves by remat (half the 2-block difference of temporaries)."""
    nr, rb, rb4 = plans[(2, "none")], plans[(2, "block")], plans[(4, "block")]
    per_block = (rb4["temp_bytes"] - rb["temp_bytes"]) / 2
    if remat == "none":
        per_block += (nr["temp_bytes"] - rb["temp_bytes"]) / 2
    arg_slope = (rb4["argument_bytes"] - rb["argument_bytes"]) / 2
    extra = blocks - 2
    return rb["argument_bytes"] + extra * arg_slope + rb["temp_bytes"] + extra * per_block


def check_fits_without_remat(label: str, answer: Any, plans: dict, blocks: int = 32, *,
                             rel_tol: float = 0.1, hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 08's Exercise 3: the pair ``("fits" | "does not fit", GiB)``, the
    :func:`straight_line_peak` of ``blocks`` blocks without remat against a core's
    memory (the 2-block plan's ``device_memory_bytes``), in GiB (within ``rel_tol``)."""
    peak, memory = (
        straight_line_peak(plans, blocks, "none"),
        plans[(2, "block")]["device_memory_bytes"],
    )
    return check_choice_and_number(
        label,
        answer,
        "fits" if peak <= memory else "does not fit",
        peak / 2**30,
        rel_tol=rel_tol,
        choices=("fits", "does not fit"),
        hint=hint,
        correct=f"estimate {peak / 2**30:.1f} GiB per core against {memory / 2**30:.0f} GiB",
    )


# --- notebook 11: SR-STE and LSQ ----------------------------------------------------


def differing_share(a: Any, b: Any) -> float:
    """The share of the entries of ``a`` and ``b`` that differ by more than float32
    rounding (``np.isclose`` with ``rtol=1e-3, atol=1e-6``)."""
    return float(np.mean(~np.isclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)))


def check_frozen_mask_srste(label: str, answer: Any, base: dict, srste: dict, *,
                            hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 11's Exercise 1: the pair ``("lower" | "higher" | "equal", share)``: how
    the SR-STE run ``srste``'s final loss compares with the one-shot run ``base``'s
    ("equal" within 1e-4 of it; runs are dicts with ``"losses"`` and ``"w"``), and
    :func:`differing_share` of their final weights (within 0.02)."""
    end, gap = base["losses"][-1], srste["losses"][-1] - base["losses"][-1]
    return check_choice_and_number(
        label,
        answer,
        "equal" if abs(gap) <= 1e-4 * end else ("lower" if gap < 0 else "higher"),
        differing_share(base["w"], srste["w"]),
        rel_tol=0.0,
        abs_tol=0.02,
        choices=("lower", "higher", "equal"),
        hint=hint,
        correct=f"final losses {end:.6g} and {srste['losses'][-1]:.6g}",
    )


def check_learned_step(label: str, answer: Any, w: Any, log_s0: Any, log_s1: Any, *,
                       hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 11's Exercise 2: the pair ``("larger" | "smaller", share)``: whether LSQ's
    learned step ``exp(log_s1)`` is larger than its min/max start ``exp(log_s0)``
    (geometric mean over the channels), and the share of ``w``'s weights that round to 0
    at the start, ``|w| / s0 < 1/2`` (within 1%)."""
    ratio = float(np.exp(np.mean(np.asarray(log_s1) - np.asarray(log_s0))))
    zeros = float(np.mean(np.abs(np.asarray(w) / np.exp(np.asarray(log_s0))) < 0.5))
    return check_choice_and_number(
        label,
        answer,
        "larger" if ratio > 1 else "smaller",
        zeros,
        rel_tol=0.01,
        choices=("larger", "smaller"),
        hint=hint,
        correct=f"learned / min-max step, geometric mean over channels: {ratio:.3f}",
    )


def lsq_init_error(w: Any, bits: int, method: str) -> float:
    """The relative squared error of LSQ's fake quantization of ``w`` at ``bits`` with the
    step :func:`usmlite_edu.core.quant.lsq_init_step` starts from (``method``)."""
    w = jnp.asarray(w, jnp.float32)
    step = quant.lsq_init_step(w, bits, method=method)
    return float(jnp.sum((quant.lsq_fake_quant(w, step, bits) - w) ** 2) / jnp.sum(w**2))


def check_lsq_init(label: str, answer: Any, w: Any, bits: int = 8, *,
                   hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 11's Exercise 3: the pair ``("minmax" | "paper", reach)``: the start with
    the larger :func:`lsq_init_error` at ``bits``, and the largest value the paper's grid
    reaches, ``Q_P * s``, over each channel's mean ``|w|``, averaged over the channels
    (within 1%)."""
    w = jnp.asarray(w, jnp.float32)
    e_mm, e_pp = lsq_init_error(w, bits, "minmax"), lsq_init_error(w, bits, "paper")
    qp = quant.int_range(bits, True)[1]
    reach = qp * quant.lsq_init_step(w, bits, method="paper") / jnp.mean(jnp.abs(w), axis=0)
    return check_choice_and_number(
        label,
        answer,
        "paper" if e_pp > e_mm else "minmax",
        float(jnp.mean(reach)),
        rel_tol=0.01,
        choices=("minmax", "paper"),
        hint=hint,
        correct=f"int{bits} relative error: min/max {e_mm:.2e}, paper {e_pp:.2e}",
    )


# --- notebook 12: the search's result -----------------------------------------------


def entropies(probs: Any) -> np.ndarray:
    """The entropy, in nats, of each row of ``probs`` (a layer's candidate probabilities;
    a zero probability contributes 0)."""
    p = np.asarray(probs, np.float64)
    return -np.sum(p * np.log(np.clip(p, 1e-30, None)), axis=1)


def check_entropies(label: str, answer: Any, probs: Any, layers: list[str], *,
                    hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 12's Exercise 3: ``answer`` must be the pair (:func:`entropies` of
    ``probs``, the name in ``layers`` of the row with the smallest), within 1e-4."""
    h = entropies(probs)
    return check_answer(
        label,
        answer,
        (h, layers[int(np.argmin(h))]),
        rel_tol=1e-4,
        hint=hint,
        correct=f"entropies from {h.min():.3f} to {h.max():.3f} nats (uniform: ln "
        f"{np.shape(probs)[1]} = {np.log(np.shape(probs)[1]):.3f})",
    )


# --- notebook 13: reading the reproduction ------------------------------------------


def pareto_rows(summary: dict) -> set[str]:
    """The rows of notebook 13's ``SUMMARY`` on the Pareto frontier of (paper-convention
    size, test WER), the pre-trained starts ``W*`` left out: a row is on it when no row
    is at most as large and at most as inaccurate and better in one of them."""
    from usmlite_edu.training import reproduce  # the frontier rule of the reproduction's plot

    points = [(r["size_paper"], r["wer_test"], e) for e, r in summary.items() if e[0] != "W"]
    return {e for _, _, e in reproduce._pareto(points)}


def check_pareto_frontier(label: str, answer: Any, summary: dict, *, hint: str = "") -> Outcome:
    """Notebook 13's Exercise 1: ``answer`` (a set, list or tuple of row names) must be
    :func:`pareto_rows` of ``summary``."""
    front = pareto_rows(summary)
    return check_answer(
        label,
        set(answer) if isinstance(answer, list | tuple) else answer,
        front,
        hint=hint,
        correct="our frontier: " + ", ".join(sorted(front, key=lambda e: summary[e]["size_paper"])),
    )


def reference_words(utterances: list[dict]) -> int:
    """The reference words of ``utterances`` (dicts with ``"ref"``); an empty reference
    counts as the one word ``<empty>``, as the WER does."""
    return sum(max(1, len(u["ref"].split())) for u in utterances)


def check_word_points(label: str, answer: Any, utterances: list[dict], *,
                      rel_tol: float = 0.02, hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 13's Exercise 2: ``answer`` must be the WER points one word error adds on
    ``utterances``: 100 over :func:`reference_words` (within ``rel_tol``)."""
    n = reference_words(utterances)
    return check_answer(
        label,
        answer,
        100.0 / n,
        rel_tol=rel_tol,
        hint=hint,
        correct=f"{len(utterances)} utterances, {n} reference words: one word error is "
        f"{100 / n:.2f} WER points",
    )


def margin_changes(claims: dict, margin: float) -> tuple[list[tuple[str, str]], int]:
    """The (claim, split) verdicts of ``claims`` (notebook 13's ``CLAIMS``) that
    :func:`usmlite_edu.core.stats.verdict` changes when judged with ``margin``, and how
    many were judged by the interval (those decided by a recorded reason are not)."""
    judged, changed = 0, []
    for k, c in claims.items():
        for s, v in c["verdicts"].items():
            if s in c["reasons"]:
                continue  # decided by the working-recognizer rule, not by the interval
            d = c["differences"][s]
            judged += 1
            if stats.verdict(d["lo"], d["hi"], c["kind"], margin) != v:
                changed.append((k, s))
    return changed, judged


def check_margin_changes(label: str, answer: Any, claims: dict, margin: float, *,
                         hint: str = "") -> Outcome:  # fmt: skip
    """Notebook 13's Exercise 3: ``answer`` must be how many of :func:`margin_changes`'
    verdicts change with ``margin``."""
    changed, judged = margin_changes(claims, margin)
    return check_answer(
        label,
        answer,
        len(changed),
        hint=hint,
        correct=f"{len(changed)} of {judged} verdicts change with m = {margin:g}: "
        + ", ".join(f"{k} on {s}" for k, s in changed),
    )
