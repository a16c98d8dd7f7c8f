"""Golden and property tests for the Conformer-CTC (model.py, Flax NNX)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from usmlite_edu.core import sparsity
from usmlite_edu.core.specs import as_spec
from usmlite_edu.speech import configs
from usmlite_edu.speech import model as M

PRESETS = {"ci": configs.CI, "cpu": configs.CPU, "usm_2b": configs.USM_2B}


def _batch(cfg, lengths=(41, 26), seed=0):
    t = max(lengths)
    feats = jax.random.normal(jax.random.key(seed), (len(lengths), t, cfg.num_mels))
    mask = jnp.arange(t)[None] < jnp.asarray(lengths)[:, None]
    return feats, mask


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
    ref = M.relative_logits_reference(
        np.asarray(q[0]), np.asarray(k[0]), np.asarray(p), np.asarray(u), np.asarray(v)
    )
    np.testing.assert_allclose(M.relative_logits(q, k, p, u, v)[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["ci", "cpu", "usm_2b"])
def test_param_tree_equals_the_size_accounting_weight_list(name):
    cfg = PRESETS[name]
    shapes = M.param_shapes(cfg)  # nnx.eval_shape: the 2B model is never allocated
    assert shapes == {w.name: w.shape for w in M.param_table(cfg)}
    if name == "usm_2b":
        assert 1.6e9 <= sum(int(np.prod(s)) for s in shapes.values()) <= 2.1e9


def test_cpu_preset_is_about_two_million_parameters():
    assert 1.5e6 <= M.num_params(configs.CPU) <= 3e6


def test_weights_are_attributes_and_initialised_as_documented():
    cfg = configs.CI
    model = M.build_model(cfg, seed=3)
    block = model.encoder.blocks[0]
    assert block.mhsa.query.kernel.shape == (cfg.model_dim, cfg.model_dim)
    assert block.mhsa.u_bias.shape == (cfg.num_heads, cfg.head_dim)
    assert len(model.encoder.blocks) == cfg.num_layers
    assert block.ffn1.norm.epsilon == 1e-6  # flax.linen.LayerNorm's default
    np.testing.assert_array_equal(block.ffn1.norm.scale[...], 1.0)
    np.testing.assert_array_equal(block.ffn1.dense1.bias[...], 0.0)
    k = np.asarray(block.ffn1.dense1.kernel[...])
    assert abs(k.std() * np.sqrt(cfg.model_dim) - 1.0) < 0.1  # LeCun normal: var 1 / fan_in
    # the parameter dict and the module attributes are the same arrays
    _, params = M.split_model(model)
    assert params["encoder"]["blocks"][0]["mhsa"]["query"]["kernel"] is block.mhsa.query.kernel[...]


@pytest.mark.parametrize("spec", ["float", "int4+2:4", "int2/g4"])
def test_padding_invariance(spec):
    cfg = configs.CI
    model = M.build_model(cfg, spec, seed=1)
    feats, mask = _batch(cfg)
    lengths = mask.sum(-1)
    out, omask = model(feats, mask)
    assert out.shape == (2, 11, cfg.vocab_size)
    np.testing.assert_array_equal(omask.sum(-1), M.subsampled_lengths(lengths))
    alone, _ = model(feats[1:, :26], mask[1:, :26])
    np.testing.assert_allclose(alone[0], out[1, : alone.shape[1]], atol=2e-5)


def test_subsampled_lengths_match_the_conv_stack():
    for t in range(1, 20):
        assert int(M.subsampled_lengths(jnp.array(t))) == math.ceil(math.ceil(t / 2) / 2)


def test_int4_forward_rounds_kernels_through_int8_runs_float_dots_and_differs_from_float():
    cfg = configs.CI
    feats, mask = _batch(cfg, (16,))
    params = M.init_params(cfg, "float", seed=1)
    dense, q = M.model_graph(cfg, "float"), M.model_graph(cfg, "int4")
    f = lambda p: M.forward(q, p, feats, mask)  # noqa: E731
    jaxpr = str(jax.make_jaxpr(f)(params))
    assert "i8[64,256]" in jaxpr  # the traced program rounds the FFN kernel to an int8 array
    if jax.default_backend() == "cpu":
        from usmlite_edu.core import quant

        # XLA:CPU: that int8 array is a convert inside a fusion that writes float again
        # (quant.py's module docstring), and every dot of the model is a float32 dot.
        ops = quant.compiled_ops(f, params)
        assert any(
            o.opcode == "convert" and o.dtype == "s8" and o.shape[-2:] == (64, 256) for o in ops
        )
        assert not any(o.opcode == "fusion" and o.dtype == "s8" for o in ops)
        dots = [o for o in ops if o.opcode == "dot"]
        assert dots and all(o.dtype == "f32" and set(o.operand_dtypes) == {"f32"} for o in dots)
    a, _ = M.forward(dense, params, feats, mask)
    b, _ = M.forward(q, params, feats, mask)
    assert 0 < float(jnp.max(jnp.abs(a - b))) < 1.0


@pytest.mark.parametrize("spec", ["float", "int4"])
def test_jitted_forward_equals_the_eager_module_call(spec):
    cfg = configs.CI
    model = M.build_model(cfg, spec, seed=2)
    feats, mask = _batch(cfg)
    eager, emask = model(feats, mask)
    graphdef, params = M.split_model(model)
    jitted, jmask = jax.jit(M.forward)(graphdef, params, feats, mask)
    np.testing.assert_array_equal(jmask, emask)
    np.testing.assert_allclose(jitted, eager, atol=1e-4 * float(jnp.max(jnp.abs(eager))))
    # the graphdef is hashable, so it may also be a static argument
    static, _ = jax.jit(M.forward, static_argnums=0)(graphdef, params, feats, mask)
    np.testing.assert_allclose(static, jitted, atol=1e-6)


def test_functional_api_pieces_agree():
    cfg = configs.CI
    graphdef, params = M.split_model(M.build_model(cfg, "int4", seed=5))
    fresh = M.init_params(cfg, "int4", seed=5)
    assert jax.tree.structure(fresh) == jax.tree.structure(params)
    assert all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(params))
    )
    assert M.model_graph(cfg, "int4") == graphdef
    assert isinstance(params, dict) and list(params["encoder"]["blocks"]) == [0, 1]
    # a plain pytree: optax and jax.tree.map take it as it is
    tx = optax.adam(1e-3)
    feats, mask = _batch(cfg)
    loss = lambda p: jnp.mean(M.forward(graphdef, p, feats, mask)[0] ** 2)
    grads = jax.jit(jax.grad(loss))(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert jax.tree.structure(optax.apply_updates(params, updates)) == jax.tree.structure(params)


def test_sown_attention_rows_sum_to_one_and_ignore_padding():
    cfg = configs.CI
    model = M.build_model(cfg, seed=4)
    feats, mask = _batch(cfg)
    (logits, omask), inter = nnx.capture(model, nnx.Intermediate)(feats, mask)
    attn = inter["encoder"]["blocks"][0]["mhsa"]["attention"].get_value()[0]
    assert attn.shape == (2, cfg.num_heads, 11, 11)
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(attn[1, :, :, int(omask[1].sum()) :], 0.0)  # padded keys
    # the helper gives the same maps, and a plain call stores nothing on the module
    _, _, maps = M.attention_maps(model, feats, mask)
    assert len(maps) == cfg.num_layers
    np.testing.assert_array_equal(maps[0], attn)
    model(feats, mask)
    assert not jax.tree.leaves(nnx.state(model, nnx.Intermediate))


def test_dropout_uses_the_call_rngs():
    cfg = configs.CI.replace(dropout=0.2)
    model = M.build_model(cfg, seed=0)
    feats, mask = _batch(cfg)
    det, _ = model(feats, mask)
    det2, _ = model(feats, mask, deterministic=True, rngs=nnx.Rngs(dropout=1))
    np.testing.assert_array_equal(det, det2)
    with pytest.raises(ValueError, match="needs rngs"):
        model(feats, mask, deterministic=False)
    a, _ = model(feats, mask, deterministic=False, rngs=nnx.Rngs(dropout=1))
    assert float(jnp.max(jnp.abs(a - det))) > 1e-3
    graphdef, params = M.split_model(model)
    f = jax.jit(
        lambda p, k: M.forward(graphdef, p, feats, mask, deterministic=False, dropout_key=k)[0]
    )
    b1, b2 = f(params, jax.random.key(7)), f(params, jax.random.key(7))
    np.testing.assert_array_equal(b1, b2)  # same key, same masks
    assert float(jnp.max(jnp.abs(b1 - f(params, jax.random.key(8))))) > 1e-3
    # dropout 0 (the presets) needs no key even when training
    plain = M.build_model(configs.CI, seed=0)
    np.testing.assert_array_equal(plain(feats, mask, deterministic=False)[0], plain(feats, mask)[0])


def test_masks_follow_the_role_table():
    cfg = configs.CI
    params = M.init_params(cfg, "2:4")
    roles = {w.name: w.role for w in M.param_table(cfg)}
    for compress_softmax in (False, True):
        opts = M.ModelOptions(compress_softmax=compress_softmax)
        where = M.compressible_mask_tree(params, cfg, opts)
        picked = {
            "/".join(str(getattr(k, "key", k)) for k in p): v
            for p, v in jax.tree_util.tree_flatten_with_path(where)[0]
        }
        assert set(picked) == set(roles)
        for name, role in roles.items():
            want = role == "dense" or (role == "softmax" and compress_softmax)
            assert picked[name] == want, name
    n_dense = sum(1 for r in roles.values() if r == "dense")
    assert n_dense == 1 + 11 * cfg.num_layers
    # a subtree, keys as Orbax restores them (digit strings), works too
    conv = {"depthwise": {"kernel": 0}, "pointwise1": {"kernel": 0}}
    sub = {
        "encoder": {"blocks": {"1": {"conv": conv}}},
        "frontend": {"conv1": {"kernel": 0}, "proj": {"kernel": 0, "bias": 0}},
    }
    assert M.compressible_mask_tree(sub, cfg) == {
        "encoder": {
            "blocks": {
                "1": {"conv": {"depthwise": {"kernel": False}, "pointwise1": {"kernel": True}}}
            }
        },
        "frontend": {"conv1": {"kernel": False}, "proj": {"kernel": True, "bias": False}},
    }
    with pytest.raises(ValueError, match="'frontend/conv3/kernel' is not a parameter"):
        M.compressible_mask_tree({"frontend": {"conv3": {"kernel": 0}}}, cfg)


def test_apply_masks_with_the_optimizer_masks():
    cfg = configs.CI
    params = M.init_params(cfg, "2:4", seed=1)
    where = M.compressible_mask_tree(params, cfg)
    tx = sparsity.nm_masked(optax.sgd(0.1), 2, 4, where=where)
    masks = sparsity.masks_from_state(tx.init(params))
    pruned = M.apply_masks(params, masks)
    k = pruned["encoder"]["blocks"][0]["ffn1"]["dense1"]["kernel"]
    assert sparsity.sparsity_of(k) == 0.5
    np.testing.assert_array_equal(pruned["softmax"]["kernel"], params["softmax"]["kernel"])
    np.testing.assert_array_equal(
        pruned["frontend"]["conv1"]["kernel"], params["frontend"]["conv1"]["kernel"]
    )
    assert M.apply_masks(params, None) is params
    # SR-STE: same forward values, dense gradient through the mask
    st = M.apply_masks(params, masks, straight_through=True)
    np.testing.assert_array_equal(st["encoder"]["blocks"][0]["ffn1"]["dense1"]["kernel"], k)


def test_normalize_param_keys_lets_a_targetless_orbax_restore_merge(tmp_path):
    import orbax.checkpoint as ocp

    cfg = configs.CI
    graphdef, params = M.split_model(M.build_model(cfg, seed=6))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save((tmp_path / "p").absolute(), params)
    with ocp.StandardCheckpointer() as ckptr:
        restored = ckptr.restore((tmp_path / "p").absolute())
    assert set(restored["encoder"]["blocks"]) == {"0", "1"}  # what Orbax gives back
    feats, mask = _batch(cfg)
    with pytest.raises(ValueError, match="normalize_param_keys"):
        M.forward(graphdef, restored, feats, mask)  # nnx.merge alone would not notice
    fixed = M.normalize_param_keys(restored)
    assert jax.tree.structure(fixed) == jax.tree.structure(params)
    np.testing.assert_array_equal(
        M.forward(graphdef, fixed, feats, mask)[0], M.forward(graphdef, params, feats, mask)[0]
    )
    assert M.normalize_param_keys({"a": {"10": 1, "x1": 2}}) == {"a": {10: 1, "x1": 2}}


def test_invalid_spec_refused_before_work():
    with pytest.raises(ValueError, match="frontend/proj/kernel: 7 sub-channels do not divide"):
        M.build_model(configs.CI, "int2/g7")
    with pytest.raises(ValueError, match="sub-channels do not divide"):
        M.ConformerCTC(configs.CI, M.ModelOptions(spec=as_spec("int2/g7")), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="sub-channels do not divide"):
        M.abstract_model(configs.USM_2B, "int2/g7")


@settings(max_examples=25, deadline=None)
@given(
    t=st.integers(1, 13),
    f=st.integers(1, 11),
    c=st.integers(1, 5),
    o=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_subsampler_conv_gradients_are_xlas(t, f, c, o, seed):
    """conv3x3_stride2 (what QConv runs for the subsampler) has XLA's forward and the same
    input and kernel gradients as XLA's stride-2 convolution, on odd and even lengths."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((2, t, f, c)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, c, o)), jnp.float32)
    y0, vjp0 = jax.vjp(M.conv_s2, x, k)
    y, vjp = jax.vjp(M.conv3x3_stride2, x, k)
    np.testing.assert_array_equal(y, y0)
    assert y.shape == (2, (t + 1) // 2, (f + 1) // 2, o)
    ct = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for got, want in zip(vjp(ct), vjp0(ct)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_subsampler_runs_conv3x3_stride2(monkeypatch):
    """Both subsampler convolutions go through conv3x3_stride2 (the depthwise one does not)."""
    calls = []
    real = M.conv3x3_stride2
    monkeypatch.setattr(M, "conv3x3_stride2", lambda x, k: calls.append(x.shape) or real(x, k))
    cfg = configs.CI
    params = M.init_params(cfg)
    graphdef = M.model_graph(cfg)
    feats = jnp.ones((1, 16, cfg.num_mels))
    M.forward(graphdef, params, feats, jnp.ones((1, 16), bool))
    assert [s[-1] for s in calls] == [1, cfg.subsample_channels[0]]
