"""Implement-it labs: the learner writes a function the library holds, and a check compares
it with the library's on random inputs.

Each lab is a check function, ``check_<lab>(fn, level="core")``, called from the notebook
after the learner's definition. It draws inputs from a fixed seed (the same cases every
run), calls the learner's ``fn`` and the library's reference on each, and reports through
:func:`usmlite_edu.course.exercises.check_answer` (``[correct]``, ``[wrong]`` with the first
input that disagrees and a hint, ``[skipped]`` while the function still holds the student
edition's ``...``). The reference is never shown: the notebook's instructor edition holds
a worked implementation in its answer slots, the student edition only ``...``.

Two levels: ``"core"`` (ordinary inputs) and ``"stretch"`` (the edge cases a library must
handle: an all-zero channel, values on the grid's end, odd shapes).

===============================  ==========  ==============================================
check                            notebook    the learner writes
===============================  ==========  ==============================================
:func:`check_quantizer`          01          per-channel symmetric quantizer (Eq. 2)
:func:`check_nm_mask`            02          N:M mask along the reduction axis (Eq. 3)
:func:`check_ste`                03          fake quantization with the straight-through
                                             gradient
:func:`check_asym_quantizer`     04          asymmetric quantizer with zero point and clip
:func:`check_ctc_collapse`       06          greedy CTC: merge repeats, drop blanks
===============================  ==========  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu.core import quant, sparsity
from usmlite_edu.course.exercises import Outcome, check_answer
from usmlite_edu.speech.decoding import greedy_decode

__all__ = [
    "LEVELS",
    "check_quantizer",
    "check_nm_mask",
    "check_ste",
    "check_asym_quantizer",
    "check_ctc_collapse",
]

LEVELS = ("core", "stretch")
_SEED = 20240
_TRIALS = 12


class _Unanswered(Exception):
    """The learner's function still computes with the student edition's ``...``."""


def _call(fn: Callable, *args) -> Any:
    try:
        out = fn(*args)
    except TypeError as e:
        if "ellipsis" in str(e):
            raise _Unanswered from None
        raise
    leaves = out if isinstance(out, tuple | list) else (out,)
    if out is Ellipsis or any(x is Ellipsis for x in leaves):
        raise _Unanswered
    return out


def _check(
    label: str,
    fn: Callable,
    cases: Iterator[tuple[str, tuple, Callable[[Any], str | None]]],
    hint: str,
    strict: bool | None,
) -> Outcome:
    """Run ``fn`` on every case; a case is ``(description, args, judge)`` where ``judge``
    returns why the output is wrong, or ``None``."""
    if fn is Ellipsis:
        return check_answer(label, ..., 0)
    problem = None
    try:
        for what, args, judge in cases:
            try:
                got = _call(fn, *args)
            except _Unanswered:
                raise
            except Exception as e:  # the learner's code failing is a wrong answer
                problem = f"on {what} it raised {type(e).__name__}: {e}"
                break
            why = judge(got)
            if why:
                problem = f"on {what}: {why}"
                break
    except _Unanswered:
        return check_answer(label, ..., 0)

    def accept(_fn):
        assert problem is None, problem
        return True

    return check_answer(
        label,
        fn,
        accept=accept,
        hint=hint,
        correct=f"agrees with the library on {_TRIALS} random inputs",
        strict=strict,
    )


def _close(got, want, what: str = "output", atol: float = 1e-6) -> str | None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"the {what} has shape {got.shape}, expected {want.shape}"
    if not np.all(np.isfinite(got)):
        return f"the {what} holds NaN or infinity"
    diff = np.abs(got - want)
    if not np.allclose(got, want, atol=atol, rtol=1e-5):
        i = np.unravel_index(int(np.argmax(diff)), diff.shape)
        return f"the {what} differs by up to {float(diff[i]):.3g} (at index {tuple(int(k) for k in i)})"
    return None


# few distinct shapes: each new shape compiles JAX's operations again (seconds on a CPU)
def _weights(rng: np.random.Generator, level: str, rows=(8, 16), cols=(4,)):
    for _ in range(_TRIALS):
        i, j = int(rng.choice(rows)), int(rng.choice(cols))
        w = (rng.standard_t(4, size=(i, j)) * 0.05).astype(np.float32)
        if level == "stretch":
            w[:, 0] = 0.0  # an all-zero channel: its scale must not divide by zero
            w[0, -1] = np.abs(w[:, -1]).max() * 1.0  # a weight exactly on the grid's end
        yield w


def _level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


# ----------------------------------------------------------------------------- the labs
def check_quantizer(fn: Callable, level: str = "core", strict: bool | None = None) -> Outcome:
    """Lab (notebook 01): ``fn(w, bits) -> (q, scale)``, Eq. 2 per output channel: ``scale``
    of shape ``(J,)`` is ``max_i |w_ij| / qmax`` with ``qmax = 2**(bits-1) - 1``, ``q`` the
    integers ``round(w / scale)`` in ``[-qmax, qmax]``. Compared through ``q * scale``
    with :func:`usmlite_edu.core.quant.dequantize` of :func:`~usmlite_edu.core.quant.quantize`
    (an all-zero channel, at ``stretch``, may have any positive scale)."""
    _level(level)
    rng = np.random.default_rng([_SEED, 1])

    def cases():
        for w in _weights(rng, level):
            bits = int(rng.choice([8, 4, 3]))
            ref = np.asarray(quant.dequantize(quant.quantize(jnp.asarray(w), bits)))
            qmax = 2 ** (bits - 1) - 1

            def judge(out, ref=ref, qmax=qmax):
                if not (isinstance(out, tuple | list) and len(out) == 2):
                    return "return the pair (q, scale)"
                q, scale = (np.asarray(x, dtype=np.float64) for x in out)
                if q.size and (np.abs(q).max() > qmax or not np.allclose(q, np.round(q))):
                    return f"q must hold integers in [-{qmax}, {qmax}]"
                return _close(q * scale, ref, "dequantized weight q * scale")

            yield f"a {w.shape} weight at {bits} bits", (jnp.asarray(w), bits), judge

    return _check(
        f"Lab 1 (a per-channel quantizer, {level})",
        fn,
        cases(),
        "one scale per output channel (a column of w): its largest |w| over qmax; then round "
        "and clip to the grid"
        + (
            "; and a column of zeros has no largest value to divide by"
            if level == "stretch"
            else ""
        ),
        strict,
    )


def check_nm_mask(fn: Callable, level: str = "core", strict: bool | None = None) -> Outcome:
    """Lab (notebook 02): ``fn(w, n, m) -> mask``, boolean ``(I, J)``: in each group of
    ``m`` consecutive *inputs* (rows, the reduction axis) of each column, the ``n``
    largest ``|w|`` are kept (Eq. 3), as :func:`usmlite_edu.core.sparsity.nm_mask` with
    ``axis=0``. ``stretch`` adds ties (equal magnitudes), which any consistent choice of
    ``n`` entries passes."""
    _level(level)
    rng = np.random.default_rng([_SEED, 2])

    def cases():
        for _ in range(_TRIALS):
            n, m = [(2, 4), (1, 4), (1, 2), (4, 8)][int(rng.integers(4))]
            i, j = int(rng.choice([8, 16])), 4
            w = rng.normal(size=(i, j)).astype(np.float32)
            if level == "stretch":
                w[:m, 0] = 0.5  # a group of equal magnitudes
            ref = np.asarray(sparsity.nm_mask(jnp.asarray(w), n, m, axis=0))

            def judge(mask, w=w, n=n, m=m, ref=ref):
                mask = np.asarray(mask)
                if mask.shape != w.shape:
                    return f"the mask has shape {mask.shape}, expected {w.shape}"
                kept = mask.astype(bool).reshape(-1, m, w.shape[1]).sum(1)
                if np.any(kept != n):
                    return f"some group of {m} inputs keeps {int(kept.min())}..{int(kept.max())}, not {n}"
                mags = np.abs(w).reshape(-1, m, w.shape[1])
                mk = mask.astype(bool).reshape(mags.shape)
                worst_kept = np.where(mk, mags, np.inf).min(1)
                best_dropped = np.where(mk, -np.inf, mags).max(1)
                if np.any(worst_kept < best_dropped):
                    return "a dropped weight is larger than a kept one in its group"
                return None if level == "stretch" else _close(mask, ref, "mask")

            yield f"a {w.shape} weight, {n}:{m}", (jnp.asarray(w), n, m), judge

    return _check(
        f"Lab 2 (an N:M mask along the inputs, {level})",
        fn,
        cases(),
        "reshape so that each group of m consecutive rows of a column sits on one axis, rank "
        "|w| within it, keep the n largest; the groups run down a column, not along a row",
        strict,
    )


def check_ste(fn: Callable, level: str = "core", strict: bool | None = None) -> Outcome:
    """Lab (notebook 03): ``fn(w, bits) -> w_hat``, fake quantization whose forward value is
    :func:`usmlite_edu.core.quant.fake_quant`'s and whose gradient is the straight-through
    estimator: ``d sum(w_hat) / d w`` is 1 where ``w`` rounds onto the grid and 0 where it is
    clipped. ``core`` checks the forward value and the gradient at ``clip=1`` (where every
    weight is inside); ``stretch`` calls ``fn(w, bits, clip)`` with ``clip < 1``, where the
    largest weights are clipped and must get no gradient."""
    _level(level)
    rng = np.random.default_rng([_SEED, 3])

    def cases():
        for w in _weights(rng, "core"):
            bits = int(rng.choice([8, 4]))
            clip = 1.0 if level == "core" else float(rng.uniform(0.5, 0.9))
            args = (jnp.asarray(w), bits) if level == "core" else (jnp.asarray(w), bits, clip)

            def ref_fn(x, bits=bits, clip=clip):
                return quant.fake_quant(x, bits, clip=clip)

            want = np.asarray(ref_fn(jnp.asarray(w)))
            want_grad = np.asarray(jax.grad(lambda x, f=ref_fn: jnp.sum(f(x)))(jnp.asarray(w)))

            def judge(out, args=args, want=want, want_grad=want_grad):
                why = _close(out, want, "forward value")
                if why:
                    return why
                try:
                    grad = jax.grad(lambda x: jnp.sum(fn(x, *args[1:])))(args[0])
                except Exception as e:
                    return f"its gradient could not be taken ({type(e).__name__}: {e})"
                return _close(grad, want_grad, "gradient of sum(w_hat)")

            yield f"a {w.shape} weight at {bits} bits, clip {clip:.2f}", args, judge

    return _check(
        f"Lab 3 (the straight-through estimator, {level})",
        fn,
        cases(),
        "round has a zero gradient almost everywhere; add to w a term whose value is "
        "w_hat - w and whose gradient is zero (jax.lax.stop_gradient)"
        + (
            "; and clip w to the grid's range before that, so clipped weights get none"
            if level == "stretch"
            else ""
        ),
        strict,
    )


def check_asym_quantizer(fn: Callable, level: str = "core", strict: bool | None = None) -> Outcome:
    """Lab (notebook 04): ``fn(w, bits, clip) -> w_hat``, the asymmetric grid of the 2-bit
    Conformer paper per output channel: ``s = (hi - lo) / (2**bits - 1)`` with ``lo =
    clip * min(w, 0)``, ``hi = clip * max(w, 0)``; zero point ``z = clip(round(q_min -
    lo / s), q_min, q_max)`` on the codes ``[-2**(bits-1), 2**(bits-1) - 1]``; ``q =
    clip(round(w / s) + z, q_min, q_max)``; ``w_hat = s * (q - z)``. Compared with
    :func:`usmlite_edu.core.quant.quantize` (``symmetric=False``) and ``dequantize``;
    Every case has a channel of one sign only; ``stretch`` adds an all-zero channel."""
    _level(level)
    rng = np.random.default_rng([_SEED, 4])

    def cases():
        for w in _weights(rng, level):
            w[:, 1] = np.abs(w[:, 1])  # a channel with no negative weight: 0 is still on the grid
            bits = int(rng.choice([2, 3, 4]))
            clip = float(rng.choice([1.0, 0.9, 0.75]))
            q = quant.quantize(jnp.asarray(w), bits, symmetric=False, clip=clip)
            ref = np.asarray(quant.dequantize(q))
            yield (
                f"a {w.shape} weight at {bits} bits, clip {clip}",
                (jnp.asarray(w), bits, clip),
                lambda out, ref=ref: _close(out, ref, "dequantized weight"),
            )

    return _check(
        f"Lab 4 (an asymmetric quantizer with zero point and clip, {level})",
        fn,
        cases(),
        "the range always includes 0 (min(w, 0) .. max(w, 0)), scaled by clip; the zero point "
        "is the code that 0 maps to, itself clipped to the codes"
        + ("; and a channel of zeros has a zero range" if level == "stretch" else ""),
        strict,
    )


def check_ctc_collapse(fn: Callable, level: str = "core", strict: bool | None = None) -> Outcome:
    """Lab (notebook 06): ``fn(path, blank) -> tokens``, the collapse of greedy CTC decoding:
    merge consecutive repeats, then drop blanks, so ``a a _ a`` gives ``a a`` and ``a a a``
    gives ``a`` (:func:`usmlite_edu.speech.decoding.greedy_decode` on one-hot logits).
    ``stretch`` adds empty paths, all-blank paths and a blank id other than 0."""
    _level(level)
    rng = np.random.default_rng([_SEED, 5])

    def cases():
        for k in range(_TRIALS):
            blank = 0 if level == "core" or k % 2 else int(rng.integers(1, 5))
            t = int(rng.integers(1, 30)) if level == "core" or k % 3 else int(rng.integers(0, 2))
            path = rng.integers(0, 5, size=t)
            path[rng.random(t) < 0.4] = blank
            if level == "stretch" and k % 4 == 0:
                path[:] = blank
            logits = np.eye(5, dtype=np.float32)[path][None] if t else np.zeros((1, 0, 5))
            ref = greedy_decode(logits, np.ones((1, t), bool), blank=blank)[0]

            def judge(out, ref=ref):
                got = [int(x) for x in np.asarray(out).ravel()]
                return None if got == ref else f"got {got}, expected {len(ref)} tokens"

            yield f"the path {path.tolist()} (blank {blank})", (path.copy(), blank), judge

    return _check(
        f"Lab 5 (greedy CTC collapse, {level})",
        fn,
        cases(),
        "merge repeats first, then drop blanks: a blank between two equal tokens keeps both",
        strict,
    )
