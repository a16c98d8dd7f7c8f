"""Golden and property tests for the Conformer-CTC (model.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from usmlite_edu import configs
from usmlite_edu import model as M


def test_rel_shift_lingvo_golden():
    t = 3
    x = jnp.asarray(np.arange(t * (2 * t - 1)).reshape(2 * t - 1, t).T, jnp.float32)
    np.testing.assert_array_equal(M.rel_shift(x), [[6, 3, 0], [10, 7, 4], [14, 11, 8]])


@pytest.mark.parametrize("t", [1, 4, 7])
def test_relative_logits_equal_the_direct_definition(t):
    h, dh = 2, 3
    ks = jax.random.split(jax.random.key(t), 5)
    q = jax.random.normal(ks[0], (1, t, h, dh))
    k = jax.random.normal(ks[1], (1, t, h, dh))
    p = jax.random.normal(ks[2], (2 * t - 1, h, dh))
    u = jax.random.normal(ks[3], (h, dh))
    v = jax.random.normal(ks[4], (h, dh))
    ref = M.relative_logits_reference(np.asarray(q[0]), np.asarray(k[0]), np.asarray(p),
                                       np.asarray(u), np.asarray(v))
    np.testing.assert_allclose(M.relative_logits(q, k, p, u, v)[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ci", "cpu", "usm_2b"])
def test_param_tree_equals_the_size_accounting_weight_list(name):
    cfg = configs.get_config(name)
    shapes = M.param_shapes(M.build_model(cfg))
    assert shapes == {w.name: w.shape for w in configs.weight_shapes(cfg)}
    if name == "usm_2b":
        assert 1.6e9 <= sum(int(np.prod(s)) for s in shapes.values()) <= 2.1e9


def test_cpu_preset_is_about_two_million_parameters():
    assert 1.5e6 <= configs.num_params(configs.CPU) <= 3e6


@pytest.mark.parametrize("spec", ["float", "int4+2:4", "int2/g4"])
def test_padding_invariance(spec):
    cfg = configs.CI
    m = M.build_model(cfg, spec)
    feats = jax.random.normal(jax.random.key(0), (2, 41, cfg.num_mels))
    lengths = jnp.array([41, 26])
    mask = jnp.arange(41)[None] < lengths[:, None]
    params = m.init(jax.random.key(1), feats, mask)["params"]
    out, omask = m.apply({"params": params}, feats, mask)
    assert out.shape == (2, 11, cfg.vocab_size)
    np.testing.assert_array_equal(omask.sum(-1), M.subsampled_lengths(lengths))
    alone, _ = m.apply({"params": params}, feats[1:, :26], mask[1:, :26])
    np.testing.assert_allclose(alone[0], out[1, :alone.shape[1]], atol=2e-5)


def test_subsampled_lengths_match_the_conv_stack():
    for t in range(1, 20):
        assert int(M.subsampled_lengths(jnp.array(t))) == -(-(-(-t // 2)) // 2)


def test_compressed_forward_uses_int8_and_differs_from_float():
    cfg = configs.CI
    feats = jax.random.normal(jax.random.key(0), (1, 16, cfg.num_mels))
    mask = jnp.ones((1, 16), bool)
    dense = M.build_model(cfg, "float")
    params = dense.init(jax.random.key(1), feats, mask)["params"]
    q = M.build_model(cfg, "int4")
    jaxpr = str(jax.make_jaxpr(lambda p: q.apply({"params": p}, feats, mask))(params))
    assert "i8[64,256]" in jaxpr  # the FFN kernel as a real int8 array
    a, _ = dense.apply({"params": params}, feats, mask)
    b, _ = q.apply({"params": params}, feats, mask)
    assert 0 < float(jnp.max(jnp.abs(a - b))) < 1.0


def test_masks_cover_exactly_the_compressible_kernels():
    cfg = configs.CI
    m = M.build_model(cfg, "2:4")
    params = M.param_shapes(m)
    tree = jax.tree.map(lambda s: jnp.zeros(s), {"frontend": {"proj": {"kernel": (cfg.proj_in_dim, 64)},
                                                              "conv1": {"kernel": (3, 3, 1, 16)}},
                                                 "softmax": {"kernel": (64, 32)}},
                        is_leaf=lambda x: isinstance(x, tuple))
    where = M.compressible_mask_tree(tree, m.opts)
    assert where == {"frontend": {"proj": {"kernel": True}, "conv1": {"kernel": False}},
                     "softmax": {"kernel": False}}
    n_dense = sum(1 for w in configs.weight_shapes(cfg) if w.role == "dense")
    assert n_dense == 1 + 11 * cfg.num_layers and len(params) > n_dense


def test_invalid_spec_refused_before_work():
    with pytest.raises(ValueError, match="sub-channels do not divide"):
        M.build_model(configs.CI, "int2/g7")
