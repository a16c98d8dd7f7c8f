"""Tests for usmlite_edu.core.weight_stats: channel statistics, quantization error, and the
function-preserving outlier injection of scripts/ptq_outliers.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from usmlite_edu.core import quant
from usmlite_edu.core import weight_stats as ws
from usmlite_edu.core.specs import as_spec
from usmlite_edu.speech import configs
from usmlite_edu.speech import model as M


def _gauss(i=576, j=256, seed=0):
    return np.random.default_rng(seed).normal(size=(i, j))


def test_gaussian_channels_have_small_max_over_std_and_zero_kurtosis():
    s = ws.layer_stats(_gauss())
    # E max|z| over 576 normals is about 3.2; 6 sigma has probability ~1e-6 per column
    assert 2.5 < s["max_over_std_median"] < 4.0 and s["max_over_std_max"] < 5.5
    assert abs(s["kurtosis_median"]) < 0.3 and s["kurtosis_max"] < 1.5
    assert s["frac_over"] == 0.0


def test_an_injected_outlier_raises_max_over_std_and_kurtosis():
    w = _gauss()
    w[17, :64] = 30.0  # one outlier weight in each of 64 channels
    st = ws.channel_stats(w)
    assert np.all(st["max_over_std"][:64] > 6) and np.all(st["max_over_std"][64:] < 5.5)
    assert np.all(st["kurtosis"][:64] > 50) and np.all(st["kurtosis"][64:] < 1.5)
    assert ws.layer_stats(w)["frac_over"] == pytest.approx(0.25)


def test_one_outlier_saturates_at_sqrt_of_the_channel_length():
    # one weight K among n - 1 of magnitude 1 (mean ~0): as K grows, max/std -> n/sqrt(n-1)
    # and the excess kurtosis -> (n^2 - 3n + 3) / (n - 1) - 3, about n - 5
    n = 100
    w = np.ones((n, 1))
    w[1::2] = -1.0
    w[0, 0] = 1e6
    st = ws.channel_stats(w)
    assert st["max_over_std"][0] == pytest.approx(n / np.sqrt(n - 1), rel=1e-4)
    assert st["kurtosis"][0] == pytest.approx((n * n - 3 * n + 3) / (n - 1) - 3, rel=1e-4)


def test_constant_channel_is_nan_not_an_error():
    st = ws.channel_stats(np.zeros((8, 2)))
    assert np.all(np.isnan(st["max_over_std"])) and np.all(np.isnan(st["kurtosis"]))


def test_quant_error_grows_with_fewer_bits_and_with_an_outlier():
    w = _gauss(144, 64)
    e = {s: ws.quant_error(w, s) for s in ("float", "int8", "int4", "int2")}
    assert e["float"] == 0.0 and e["int8"] < 1e-3 < e["int4"] < 0.05 < e["int2"] < 0.5
    w2 = w.copy()
    w2[3] *= 64.0  # an outlier input row: every channel's step stretched
    scale = np.where(np.arange(144) == 3, 64.0, 1.0)
    # in the original coordinates (the layer's function) the error grows many-fold ...
    assert ws.quant_error(w2, "int4", row_scale=scale) > 10 * e["int4"]
    # ... which the plain ratio hides, the outlier row dominating ||W||^2
    assert ws.quant_error(w2, "int4") < 3 * e["int4"]
    assert ws.quant_error(w, "int4", row_scale=np.ones(144)) == e["int4"]
    # sub-channel groups confine the stretched step to the outlier's group: compare the
    # error on the other rows (the outlier row dominates the weight's energy now)
    rest = np.arange(144) != 3

    def err_rest(spec):
        s = as_spec(spec).for_input_dim(144)
        q = quant.quantize(w2, s.bits, symmetric=s.symmetric, sub_channels=s.sub_channels)
        return float(np.sum((np.asarray(quant.dequantize(q)) - w2)[rest] ** 2))

    assert err_rest("int4/gs24") < 0.5 * err_rest("int4")


@pytest.mark.parametrize("k, exact", [(64.0, True), (10.0, False)])
def test_inject_outliers_keeps_the_float_function(k, exact):
    cfg = configs.CI
    params = M.init_params(cfg, "float", seed=1)
    # non-trivial LayerNorm parameters and biases, so the divisions matter
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape).astype(a.dtype), params)
    g = M.model_graph(cfg, "float")
    feats = jax.random.normal(jax.random.key(0), (2, 41, cfg.num_mels))
    mask = jnp.arange(41)[None] < jnp.array([41, 26])[:, None]
    a, _ = M.forward(g, params, feats, mask)
    snapshot = [np.array(x) for x in jax.tree.leaves(params)]
    new, touched = ws.inject_outliers(params, cfg, k, rows=2)
    b, _ = M.forward(g, new, feats, mask)
    if exact:  # scaling by a power of two is exact in float32: bit-identical logits
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    else:
        np.testing.assert_allclose(b, a, atol=1e-4 * float(jnp.max(jnp.abs(a))))
    # ... and the touched kernels now have outlier channels; the others are unchanged
    assert len(touched) == 1 + 7 * cfg.num_layers
    table = M.param_table(cfg)
    before, after = ws.model_stats(params, table), ws.model_stats(new, table)
    for name in after:
        if name in touched:
            assert after[name]["max_over_std_median"] > before[name]["max_over_std_median"] + 1
            assert after[name]["kurtosis_median"] > before[name]["kurtosis_median"] + 5
        else:
            assert after[name] == before[name]
    # ... and the input is not modified
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(snapshot)):
        np.testing.assert_array_equal(np.asarray(x), y)


def test_inject_outliers_k1_is_a_copy_and_bad_k_is_refused():
    cfg = configs.CI
    params = M.init_params(cfg, "float", seed=1)
    same, _ = ws.inject_outliers(params, cfg, 1.0)
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(same)):
        np.testing.assert_array_equal(np.asarray(x), y)
    with pytest.raises(ValueError, match="positive"):
        ws.inject_outliers(params, cfg, -2.0)
