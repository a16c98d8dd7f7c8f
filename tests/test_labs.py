"""Implement-it labs (usmlite_edu.course.labs): each passes with a correct implementation
written from the paper's formulas, fails with a plausible wrong one, and skips while the
student edition's ``...`` is in place."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from usmlite_edu.course import labs


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    monkeypatch.delenv("USMLITE_STRICT_CHECKS", raising=False)


# ------------------------------------------------------------------ right implementations
def quantizer(w, bits):
    qmax = 2 ** (bits - 1) - 1
    amax = jnp.max(jnp.abs(w), axis=0)
    scale = jnp.where(amax > 0, amax / qmax, 1.0)
    return jnp.clip(jnp.round(w / scale), -qmax, qmax), scale


def nm_mask(w, n, m):
    g = jnp.abs(w).reshape(-1, m, w.shape[1])
    rank = jnp.argsort(jnp.argsort(-g, axis=1, stable=True), axis=1, stable=True)
    return (rank < n).reshape(w.shape)


def ste(w, bits, clip=1.0):
    qmax = 2 ** (bits - 1) - 1
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=0) * clip / qmax)
    bound = (qmax + 0.5) * scale
    w_in = jnp.clip(w, -bound, bound)
    w_hat = jnp.clip(jnp.round(w / scale), -qmax, qmax) * scale
    return w_in + jax.lax.stop_gradient(w_hat - w_in)


def asym(w, bits, clip):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo = jnp.minimum(w.min(0), 0.0) * clip
    hi = jnp.maximum(w.max(0), 0.0) * clip
    s = (hi - lo) / (qmax - qmin)
    s = jnp.where(s > 0, s, 1.0)
    z = jnp.clip(jnp.round(qmin - lo / s), qmin, qmax)
    q = jnp.clip(jnp.round(w / s) + z, qmin, qmax)
    return s * (q - z)


def collapse(path, blank):
    out, prev = [], None
    for t in path:
        if t != prev and t != blank:
            out.append(int(t))
        prev = t
    return out


RIGHT = {
    "check_quantizer": quantizer,
    "check_nm_mask": nm_mask,
    "check_ste": ste,
    "check_asym_quantizer": asym,
    "check_ctc_collapse": collapse,
}


# ---------------------------------------------------------------- plausible wrong ones
def quantizer_per_tensor(w, bits):  # one scale for the whole matrix
    qmax = 2 ** (bits - 1) - 1
    scale = jnp.max(jnp.abs(w)) / qmax * jnp.ones(w.shape[1])
    return jnp.clip(jnp.round(w / scale), -qmax, qmax), scale


def nm_mask_along_outputs(w, n, m):  # groups along a row instead of down a column
    return nm_mask(w.T, n, m).T if w.shape[1] % m == 0 else nm_mask(w.T[:, :], n, 1).T


def ste_plain_round(w, bits, clip=1.0):  # no straight-through: round's gradient is 0
    qmax = 2 ** (bits - 1) - 1
    scale = jnp.max(jnp.abs(w), axis=0) * clip / qmax
    return jnp.clip(jnp.round(w / scale), -qmax, qmax) * scale


def asym_without_zero_in_range(w, bits, clip):  # min/max of w, not of (w, 0)
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo, hi = w.min(0) * clip, w.max(0) * clip
    s = jnp.where(hi > lo, (hi - lo) / (qmax - qmin), 1.0)
    z = jnp.clip(jnp.round(qmin - lo / s), qmin, qmax)
    return s * (jnp.clip(jnp.round(w / s) + z, qmin, qmax) - z)


def collapse_blanks_first(path, blank):  # drops blanks, then merges: a _ a -> a
    return collapse([t for t in path if t != blank], blank)


WRONG = {
    "check_quantizer": quantizer_per_tensor,
    "check_nm_mask": nm_mask_along_outputs,
    "check_ste": ste_plain_round,
    "check_asym_quantizer": asym_without_zero_in_range,
    "check_ctc_collapse": collapse_blanks_first,
}


@pytest.mark.parametrize("lab", sorted(RIGHT))
@pytest.mark.parametrize("level", labs.LEVELS)
def test_a_right_implementation_passes(lab, level, capsys):
    out = getattr(labs, lab)(RIGHT[lab], level)
    assert out.status == "correct", capsys.readouterr().out


@pytest.mark.parametrize("lab", sorted(WRONG))
def test_a_plausible_wrong_implementation_fails_with_the_hint(lab, capsys):
    out = getattr(labs, lab)(WRONG[lab])
    printed = capsys.readouterr().out
    assert out.status == "wrong" and printed.startswith("[wrong] Lab ") and "Hint:" in printed


def test_the_stretch_level_finds_the_edge_cases():
    def no_zero_guard(w, bits):  # divides by a zero scale on an all-zero channel
        qmax = 2 ** (bits - 1) - 1
        scale = jnp.max(jnp.abs(w), axis=0) / qmax
        return jnp.clip(jnp.round(w / scale), -qmax, qmax), scale

    assert labs.check_quantizer(no_zero_guard, "core").status == "correct"
    assert labs.check_quantizer(no_zero_guard, "stretch").status == "wrong"

    # without clipping the STE bound, clipped weights get a gradient
    def ste_unclipped(w, bits, clip=1.0):
        qmax = 2 ** (bits - 1) - 1
        scale = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=0) * clip / qmax)
        w_hat = jnp.clip(jnp.round(w / scale), -qmax, qmax) * scale
        return w + jax.lax.stop_gradient(w_hat - w)

    assert labs.check_ste(ste_unclipped, "core").status == "correct"
    assert labs.check_ste(ste_unclipped, "stretch").status == "wrong"


def test_the_student_editions_slots_skip(capsys):
    def unanswered(w, bits):
        qmax = ...  # ANSWER
        scale = ...  # ANSWER
        return jnp.round(w / scale) * qmax, scale

    assert labs.check_quantizer(unanswered).status == "skipped"
    assert labs.check_ctc_collapse(...).status == "skipped"
    assert labs.check_ste(lambda w, bits: ...).status == "skipped"
    assert capsys.readouterr().out.count("[skipped]") == 3
    with pytest.raises(ValueError, match="level"):
        labs.check_nm_mask(nm_mask, "hard")


def test_the_cases_are_the_same_every_run():
    seen = []
    labs.check_nm_mask(lambda w, n, m: seen.append(np.asarray(w).sum()) or nm_mask(w, n, m))
    again = []
    labs.check_nm_mask(lambda w, n, m: again.append(np.asarray(w).sum()) or nm_mask(w, n, m))
    assert seen == again and len(seen) == 12
