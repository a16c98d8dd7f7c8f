"""Tests for CompressionSpec and joint prune-then-quantize (Algorithm 1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usmlite_edu.core import compress, quant, sparsity
from usmlite_edu.core.specs import CompressionSpec

PAPER_NAMES = [
    "float",
    "int8",
    "int4",
    "int2",
    "int2/g16",
    "int2/g32",
    "int2/g64",
    "2:4",
    "2:4/fs1000",
    "1:4",
    "1:4/fs1000",
    "int4+2:4",
    "int4+2:4/fs1000",
]


@pytest.mark.parametrize(
    "name",
    PAPER_NAMES
    + [
        "int2/gs24",
        "int2/clipsearch",
        "int3/asym",
        "int2/sym",
        "int4/clip0.9",
        "2:4/srste",
        "int8+1:4/fs20",
    ],
)
def test_parse_round_trip(name):
    spec = CompressionSpec.parse(name)
    assert str(spec) == name
    assert CompressionSpec.parse(str(spec)) == spec


def test_parse_fields():
    s = CompressionSpec.parse("int4+2:4/fs100")
    assert (s.bits, s.symmetric, s.n, s.m, s.mask_update_steps) == (4, True, 2, 4, 100)
    assert CompressionSpec.parse("int2").symmetric is False  # the paper's int2 is asymmetric
    assert CompressionSpec.parse("int2/g64").sub_channels == 64
    assert CompressionSpec.parse("float").is_float
    assert CompressionSpec.parse("2:4").density == 0.5


@st.composite
def specs(draw):
    bits = draw(st.one_of(st.none(), st.integers(2, 8)))
    kw = {}
    if bits is not None:
        kw = dict(
            bits=bits,
            symmetric=draw(st.booleans()),
            sub_channels=draw(st.sampled_from([1, 2, 16])),
            clip=draw(st.sampled_from([1.0, 0.8, "search"])),
        )
    if draw(st.booleans()):
        m = draw(st.sampled_from([2, 4, 8]))
        kw.update(
            n=draw(st.integers(1, m)),
            m=m,
            mask_update_steps=draw(st.sampled_from([1, 7])),
            sr_ste=draw(st.booleans()),
        )
    return CompressionSpec(**kw)


@settings(max_examples=60, deadline=None)
@given(specs())
def test_parse_str_is_identity(spec):
    assert CompressionSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text, match",
    [
        ("int9", "outside 2..8"),
        ("int1", "outside 2..8"),
        ("5:4", "n=5 > m=4"),
        ("int4/g3x", "unknown quantizer option"),
        ("2:4/fast", "unknown sparsity option"),
        ("int4+int8", "two bit widths"),
        ("fp16", "cannot read"),
        ("", "empty"),
        ("float/g4", "takes no options"),
        ("2:4/fs0", ">= 1"),
    ],
)
def test_invalid_specs_say_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        CompressionSpec.parse(text)


def test_group_size_resolves_per_layer():
    spec = CompressionSpec.parse("int2/gs24")
    assert spec.groups_for(144) == 6 and spec.groups_for(576) == 24
    w = jax.random.normal(jax.random.key(0), (144, 8))
    _, q = compress.prune_then_quantize(w, spec)
    assert q.scale.shape == (6, 8)
    with pytest.raises(ValueError, match="group size 24 does not divide its input dimension 100"):
        spec.check_shape((100, 8), "proj")
    with pytest.raises(ValueError, match="not both"):
        CompressionSpec.parse("int2/g4/gs24")


def test_groups_that_do_not_divide_are_refused_before_work():
    with pytest.raises(ValueError, match="proj.*64 sub-channels do not divide.*96"):
        CompressionSpec.parse("int2/g64").check_shape((96, 8), "proj")
    with pytest.raises(ValueError, match="m=4 does not divide"):
        compress.prune_then_quantize(jnp.ones((6, 2)), "2:4")


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from(["int4+2:4", "int8+1:4", "int2+2:4", "int2/g4+2:4", "int3/asym+2:4"]),
)
def test_pruned_zeros_stay_exactly_zero(seed, name):
    w = jnp.asarray(np.random.default_rng(seed).standard_t(3, size=(32, 6)), jnp.float32)
    spec = CompressionSpec.parse(name)
    mask, q = compress.prune_then_quantize(w, spec)
    w_hat = quant.dequantize(q)
    assert bool(jnp.all(w_hat[~mask] == 0.0))
    # mask first: the scale is that of the masked weight
    q_ref = quant.quantize(
        sparsity.apply_mask(w, mask),
        spec.bits,
        symmetric=spec.symmetric,
        sub_channels=spec.sub_channels,
    )
    np.testing.assert_array_equal(q.values, q_ref.values)
    np.testing.assert_array_equal(q.scale, q_ref.scale)
    # the fake and native layer paths see the same weight
    np.testing.assert_allclose(compress.compress_weight(w, spec, mask), w_hat, atol=1e-6)
    x = jax.random.normal(jax.random.key(seed % 1000), (3, 32))
    np.testing.assert_allclose(
        compress.compressed_matmul(x, w, spec, mask), x @ w_hat, atol=1e-4, rtol=1e-4
    )


def test_gradients_of_pruned_weights_are_zero_without_sr_ste():
    w = jax.random.normal(jax.random.key(0), (16, 4))
    x = jax.random.normal(jax.random.key(1), (5, 16))
    spec = CompressionSpec.parse("int4+2:4")
    mask = sparsity.nm_mask(w, 2, 4)
    g = jax.grad(lambda w: jnp.sum(compress.compressed_matmul(x, w, spec, mask) ** 2))(w)
    assert bool(jnp.all(g[~mask] == 0))
    g_st = jax.grad(
        lambda w: jnp.sum(compress.compressed_matmul(x, w, spec.replace(sr_ste=True), mask) ** 2)
    )(w)
    assert bool(jnp.any(g_st[~mask] != 0))


def test_float_spec_is_a_plain_matmul():
    w = jax.random.normal(jax.random.key(0), (8, 3))
    x = jax.random.normal(jax.random.key(1), (2, 8))
    np.testing.assert_allclose(compress.compressed_matmul(x, w, "float"), x @ w, rtol=1e-6)
    assert compress.prune_then_quantize(w, "float") == (None, None)
