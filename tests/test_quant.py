"""Property tests for usmlite_edu.core.quant (Eqs. 1-2, sub-channels, clipping, STE)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usmlite_edu.core import quant

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def weights(draw, max_groups=4):
    """A random (I, J) weight with I divisible by a random group count, sometimes
    heavy-tailed, sometimes with an all-zero channel."""
    # A few fixed shapes: every new shape is a recompile for JAX.
    g = draw(st.sampled_from([1, 2, 4][:max_groups]))
    i = g * draw(st.sampled_from([1, 3, 8]))
    j = draw(st.sampled_from([1, 5]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "student", "uniform", "zero_col"]))
    if kind == "student":
        w = rng.standard_t(2, size=(i, j))
    elif kind == "uniform":
        w = rng.uniform(-3, 1, size=(i, j))
    else:
        w = rng.normal(size=(i, j)) * rng.uniform(0.01, 10)
    if kind == "zero_col":
        w[:, 0] = 0.0
    return jnp.asarray(w, jnp.float32), g


GRIDS = st.sampled_from(
    [(8, True), (4, True), (3, True), (2, True), (8, False), (4, False), (2, False)]
)


@SETTINGS
@given(weights(), GRIDS)
def test_values_are_int8_inside_the_grid(wg, grid):
    w, g = wg
    bits, sym = grid
    q = quant.quantize(w, bits, symmetric=sym, sub_channels=g)
    qmin, qmax = quant.int_range(bits, sym)
    assert q.values.dtype == jnp.int8
    assert q.values.shape == w.shape
    assert q.scale.shape == (g, w.shape[1])
    assert int(q.values.min()) >= qmin and int(q.values.max()) <= qmax
    if sym:
        assert q.zero_point is None
    else:
        assert q.zero_point.dtype == jnp.int8
        assert int(q.zero_point.min()) >= qmin and int(q.zero_point.max()) <= qmax


@SETTINGS
@given(weights(), GRIDS)
def test_error_at_most_half_a_step(wg, grid):
    w, g = wg
    bits, sym = grid
    q = quant.quantize(w, bits, symmetric=sym, sub_channels=g)
    err = jnp.abs(w - quant.dequantize(q)).reshape(g, -1, w.shape[1])
    half_step = 0.5 * q.scale[:, None, :]
    assert bool(jnp.all(err <= half_step * (1 + 1e-5) + 1e-7))


@SETTINGS
@given(weights(), GRIDS)
def test_zero_is_exact(wg, grid):
    w, g = wg
    bits, sym = grid
    w = w.at[::2].set(0.0)  # plant exact zeros
    w_hat = quant.dequantize(quant.quantize(w, bits, symmetric=sym, sub_channels=g))
    assert bool(jnp.all(w_hat[::2] == 0.0))


def test_paper_grids():
    w = jnp.array([[1.0, -2.0], [-0.5, 1.0], [0.25, 0.5]])
    q8 = quant.quantize(w, 8)
    np.testing.assert_allclose(q8.scale[0], [1 / 127, 2 / 127], rtol=1e-6)
    assert q8.values[0, 0] == 127 and q8.values[0, 1] == -127
    q4 = quant.quantize(w, 4)
    assert int(jnp.abs(q4.values).max()) == 7
    assert quant.int_range(8, True) == (-127, 127)
    assert quant.int_range(4, True) == (-7, 7)
    assert quant.int_range(2, False) == (-2, 1)


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from([1, 8]))
def test_int2_asymmetric_uses_four_levels_symmetric_three(seed, j):
    # A linear ramp over a channel's range hits every level of the grid.
    rng = np.random.default_rng(seed)
    lo, hi = -rng.uniform(0.1, 2), rng.uniform(0.1, 2)
    w = jnp.asarray(
        np.linspace(lo, hi, 64)[:, None] * rng.uniform(0.5, 2, size=(1, j)), jnp.float32
    )
    asym = quant.quantize(w, 2, symmetric=False)
    sym = quant.quantize(w, 2, symmetric=True)
    for c in range(j):
        assert len(np.unique(np.asarray(asym.values[:, c]))) == 4
        assert len(np.unique(np.asarray(sym.values[:, c]))) <= 3
    # ... and the four levels are worth it: lower error than the symmetric grid.
    e_asym = float(jnp.sum((w - quant.dequantize(asym)) ** 2))
    e_sym = float(jnp.sum((w - quant.dequantize(sym)) ** 2))
    assert e_asym < e_sym


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from([(2, False), (4, True), (8, True), (2, True)]))
def test_more_sub_channels_never_raise_a_channels_error_bound(seed, grid):
    """Splitting a group can only shrink its range, hence its step: every element's
    guaranteed error (half its group's step) never grows, and the realised error of a
    channel stays inside the coarser grouping's bound.

    (The realised squared error of one channel is *not* monotone: round-to-nearest on a
    shifted grid can be unlucky for a few values. It falls on average; see below.)
    """
    bits, sym = grid
    w = jnp.asarray(np.random.default_rng(seed).standard_t(3, size=(64, 5)), jnp.float32)
    prev_step = None
    for g in (1, 2, 4, 8, 16):  # each grouping refines the previous one
        q = quant.quantize(w, bits, symmetric=sym, sub_channels=g)
        step = jnp.repeat(q.scale, 64 // g, axis=0)  # (I, J) step per element
        err = jnp.abs(w - quant.dequantize(q))
        if prev_step is not None:
            assert bool(jnp.all(step <= prev_step * (1 + 1e-6)))
            assert bool(jnp.all(jnp.max(err, 0) <= 0.5 * jnp.max(prev_step, 0) * (1 + 1e-5)))
        prev_step = step


@pytest.mark.parametrize("bits, sym", [(2, False), (4, True)])
def test_more_sub_channels_lower_the_error_on_average(bits, sym):
    w = jnp.asarray(np.random.default_rng(1).standard_t(3, size=(1536, 64)), jnp.float32)
    errs = [
        float(
            jnp.mean(
                (w - quant.dequantize(quant.quantize(w, bits, symmetric=sym, sub_channels=g))) ** 2
            )
        )
        for g in (1, 16, 32, 64)
    ]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.8 * errs[0], errs


@SETTINGS
@given(weights(), GRIDS)
def test_clip_search_never_worse_than_no_clipping(wg, grid):
    w, g = wg
    bits, sym = grid
    err = lambda q: jnp.sum((w - quant.dequantize(q)) ** 2, axis=0)
    e_search = err(quant.quantize(w, bits, symmetric=sym, sub_channels=g, clip="search"))
    e_plain = err(quant.quantize(w, bits, symmetric=sym, sub_channels=g, clip=1.0))
    assert bool(jnp.all(e_search <= e_plain * (1 + 1e-6) + 1e-9))


def test_clip_search_helps_with_an_outlier():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(256, 4)).astype(np.float32)
    w[0, :] = 12.0
    w = jnp.asarray(w)
    err = lambda q: float(jnp.sum((w - quant.dequantize(q)) ** 2))
    assert err(quant.quantize(w, 2, symmetric=False, clip="search")) < 0.9 * err(
        quant.quantize(w, 2, symmetric=False)
    )


@SETTINGS
@given(weights(), GRIDS)
def test_ste_gradient_is_identity_inside_the_range(wg, grid):
    w, g = wg
    bits, sym = grid
    ct = jax.random.normal(jax.random.key(0), w.shape)
    grad = jax.grad(
        lambda v: jnp.sum(quant.fake_quant(v, bits, symmetric=sym, sub_channels=g) * ct)
    )(w)
    np.testing.assert_allclose(grad, ct, rtol=1e-6, atol=1e-6)


def test_ste_gradient_is_zero_where_clipped():
    w = jnp.array([[0.1], [0.2], [-0.3], [5.0]])
    grad = jax.grad(lambda v: jnp.sum(quant.fake_quant(v, 4, clip=0.5)))(w)
    np.testing.assert_array_equal(grad[:, 0], [1.0, 1.0, 1.0, 0.0])


def test_round_alone_has_no_useful_gradient():
    assert float(jax.grad(lambda v: jnp.sum(jnp.round(v * 3.0)))(jnp.array(0.37))) == 0.0


@SETTINGS
@given(weights(), GRIDS, st.sampled_from([1, 4]))
def test_native_and_fake_paths_agree(wg, grid, batch):
    w, g = wg
    bits, sym = grid
    x = jax.random.normal(jax.random.key(batch), (batch, 3, w.shape[0]))
    q = quant.quantize(w, bits, symmetric=sym, sub_channels=g)
    fake = x @ quant.fake_quant(w, bits, symmetric=sym, sub_channels=g)
    tol = 1e-5 * (1 + float(jnp.max(jnp.abs(fake))))
    np.testing.assert_allclose(quant.native_matmul(x, q), fake, atol=tol, rtol=1e-5)
    native = quant.qat_matmul(x, w, bits, symmetric=sym, sub_channels=g)
    np.testing.assert_allclose(native, fake, atol=tol, rtol=1e-5)
    # ... and so do their gradients (the native path's custom VJP is the STE).
    ct = jax.random.normal(jax.random.key(7), fake.shape)
    gn = jax.grad(
        lambda x_, w_: jnp.sum(quant.qat_matmul(x_, w_, bits, symmetric=sym, sub_channels=g) * ct),
        argnums=(0, 1),
    )(x, w)
    gf = jax.grad(
        lambda x_, w_: jnp.sum(
            (x_ @ quant.fake_quant(w_, bits, symmetric=sym, sub_channels=g)) * ct
        ),
        argnums=(0, 1),
    )(x, w)
    for a, b in zip(gn, gf):
        np.testing.assert_allclose(a, b, atol=1e-4 * (1 + float(jnp.max(jnp.abs(b)))), rtol=1e-4)


# What XLA:CPU compiles the matmuls to (the module docstring of quant.py states it; these
# tests fail if the compiled arithmetic changes, e.g. if a jax upgrade fused the convert
# into an integer-weight dot).
XLA_CPU_ONLY = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="asserts what XLA:CPU compiles"
)


def _dots(ops):
    return [o for o in ops if o.opcode == "dot"]


@XLA_CPU_ONLY
@pytest.mark.parametrize(
    "bits, sym, g, compute_dtype, dt",
    [
        (4, True, 1, None, "f32"),
        (2, False, 1, None, "f32"),
        (4, True, 4, None, "f32"),
        (2, False, 4, None, "f32"),
        (4, True, 1, jnp.bfloat16, "bf16"),
    ],
)
def test_native_matmul_stores_int8_converts_it_and_runs_a_float_dot(
    bits, sym, g, compute_dtype, dt
):
    x = jax.random.normal(jax.random.key(0), (8, 64))
    q = quant.quantize(
        jax.random.normal(jax.random.key(1), (64, 32)), bits, symmetric=sym, sub_channels=g
    )
    assert q.values.dtype == jnp.int8  # stored as int8 ...
    ops = quant.compiled_ops(
        lambda x, q: quant.native_matmul(x, q, compute_dtype=compute_dtype), x, q
    )
    # ... converted, the whole weight at once, to the compute dtype ...
    assert any(
        o.opcode == "convert"
        and o.operand_dtypes == ("s8",)
        and o.dtype == dt
        and int(np.prod(o.shape)) == 64 * 32
        for o in ops
    )
    # ... and multiplied by a float dot accumulating in float32; no integer dot anywhere.
    dots = _dots(ops)
    assert dots and all(o.dtype == "f32" and set(o.operand_dtypes) == {dt} for o in dots)


@XLA_CPU_ONLY
@pytest.mark.parametrize("sym", [True, False])
def test_sub_channel_forward_in_float32_is_one_plain_dot_of_the_scaled_weight(sym):
    # Eq. (1) regrouped (native_matmul's docstring): no dot batched over the groups, no
    # (..., g, J) partial products; the one dot writes the layer's output.
    x = jax.random.normal(jax.random.key(0), (8, 64))
    q = quant.quantize(
        jax.random.normal(jax.random.key(1), (64, 32)), 2, symmetric=sym, sub_channels=8
    )
    ops = quant.compiled_ops(lambda x, q: quant.native_matmul(x, q), x, q)
    dots = _dots(ops)
    assert len(dots) == 1 and tuple(dots[0].shape) == (8, 32), dots
    # and the QAT forward + STE backward: no batched (3-D) dot either
    grad_ops = quant.compiled_ops(
        jax.grad(
            lambda x, w: jnp.sum(quant.qat_matmul(x, w, 2, symmetric=sym, sub_channels=8)),
            argnums=(0, 1),
        ),
        x,
        jax.random.normal(jax.random.key(1), (64, 32)),
    )
    assert all(len(o.shape) <= 2 for o in _dots(grad_ops)), _dots(grad_ops)


@XLA_CPU_ONLY
def test_qat_forward_rounds_through_int8_inside_one_float_fusion():
    w = jax.random.normal(jax.random.key(0), (16, 4))
    x = jnp.ones((2, 16))
    f = lambda x, w: quant.qat_matmul(x, w, 4)  # noqa: E731
    jaxpr = str(jax.make_jaxpr(f)(x, w))
    assert "i8[16,4]" in jaxpr or "i8[1,16,4]" in jaxpr  # the traced program has the int8 array
    ops = quant.compiled_ops(f, x, w)
    to_s8 = [o for o in ops if o.opcode == "convert" and o.dtype == "s8"]
    back = [o for o in ops if o.opcode == "convert" and o.operand_dtypes == ("s8",)]
    assert len(to_s8) == 1 and len(back) == 1 and back[0].dtype == "f32"
    # compiled, the round trip f32 -> s8 -> f32 is inside one fusion: no s8 buffer
    assert to_s8[0].computation == back[0].computation
    assert not to_s8[0].computation.startswith("main")  # a fused computation, not the entry
    assert not any(o.opcode == "fusion" and o.dtype == "s8" for o in ops)
    dots = _dots(ops)
    assert dots and all(o.dtype == "f32" and o.operand_dtypes == ("f32", "f32") for o in dots)


@XLA_CPU_ONLY
def test_int8_matmul_compiles_to_an_s8_dot_with_s32_result():
    x = jax.random.normal(jax.random.key(0), (8, 64))
    q = quant.quantize(jax.random.normal(jax.random.key(1), (64, 32)), 8)
    dots = _dots(quant.compiled_ops(quant.int8_matmul, x, q))
    assert [(o.dtype, o.operand_dtypes) for o in dots] == [("s32", ("s8", "s8"))]


def test_compiled_ops_reads_types_of_operands_and_results():
    ops = quant.compiled_ops(lambda a: (a.astype(jnp.int32) * 3).sum(), jnp.ones(5, jnp.int8))
    assert any(
        o.opcode == "convert" and o.operand_dtypes == ("s8",) and o.dtype == "s32" for o in ops
    )
    assert quant.compiled_ops(lambda a: a * 2.0, jnp.ones(3), opcode="dot") == []


@SETTINGS
@given(
    st.integers(0, 10_000),
    st.sampled_from([1, 7]),
    st.sampled_from([4, 24]),
    st.sampled_from([1, 16]),
)
def test_int32_path_equals_dequantized_product(seed, rows, i, j):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(rows, i)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(i, j)), jnp.float32)
    q = quant.quantize(w, 8)
    xq, xs = quant.quantize_activations(x)
    assert xq.dtype == jnp.int8
    ref = (xq.astype(jnp.float32) * xs) @ quant.dequantize(q)
    out = quant.int8_matmul(x, q)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(ref)) + 1))
    # the accumulation itself is exact integer arithmetic
    acc = jax.lax.dot_general(
        xq, q.values, (((1,), (0,)), ((), ())), preferred_element_type=jnp.int32
    )
    assert acc.dtype == jnp.int32
    np.testing.assert_array_equal(
        np.asarray(acc), np.asarray(xq, np.int64) @ np.asarray(q.values, np.int64)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(bits=1), "outside 2..8"),
        (dict(bits=9), "outside 2..8"),
        (dict(bits=4, sub_channels=3), "does not divide"),
        (dict(bits=4, clip=0.0), r"\(0, 1\]"),
        (dict(bits=4, clip="auto"), "search"),
        (dict(bits=4, sub_channels=0), "positive"),
    ],
)
def test_invalid_settings_are_refused(kwargs, match):
    w = jnp.ones((8, 2))
    with pytest.raises(ValueError, match=match):
        quant.quantize(w, **kwargs)


def test_deterministic():
    w = jax.random.normal(jax.random.key(3), (32, 8))
    a = quant.quantize(w, 2, symmetric=False, sub_channels=4, clip="search")
    b = quant.quantize(w, 2, symmetric=False, sub_channels=4, clip="search")
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.scale, b.scale)


def test_quantized_array_is_a_pytree_and_jits():
    w = jax.random.normal(jax.random.key(0), (8, 3))
    q = jax.jit(lambda w: quant.quantize(w, 2, symmetric=False, sub_channels=2))(w)
    assert isinstance(q, quant.QuantizedArray) and q.bits == 2 and not q.symmetric
    np.testing.assert_array_equal(
        q.values, quant.quantize(w, 2, symmetric=False, sub_channels=2).values
    )
