"""The quantization-error explorer's library (usmlite_edu.course.explorer), without a browser:
its numbers against the quantizers, masks and size accounting it is built on, and the
properties a learner is meant to discover with it."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usmlite_edu.core import compress, quant, sizes, sparsity
from usmlite_edu.core.sizes import ParamInfo
from usmlite_edu.course import explorer as E
from usmlite_edu.speech.runs import read_config

ROOT = Path(__file__).resolve().parents[1]

SMALL = (96, 24)


def _toy(**kw):
    return E.ToyWeights(**{"shape": SMALL, **kw})


# --------------------------------------------------------------------------- properties
@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    symmetric=st.booleans(),
    dist=st.sampled_from(["gaussian", "student_t"]),
    df=st.floats(2.5, 30),
)
def test_error_shrinks_as_bits_grow(seed, symmetric, dist, df):
    src = _toy(seed=seed, dist=dist, df=df)
    errs = [E.explore(E.Setting(bits=b, symmetric=symmetric), src).rel_error for b in range(2, 9)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), bits=st.integers(2, 8), shift=st.floats(1.0, 4.0))
def test_asymmetric_never_worse_than_symmetric_on_skewed_weights(seed, bits, shift):
    # mostly positive weights: the symmetric grid spends its negative half on nothing
    w = 0.02 * (np.random.default_rng(seed).standard_normal(SMALL) + shift)
    sym = E.explore(E.Setting(bits=bits, symmetric=True), w)
    asym = E.explore(E.Setting(bits=bits, symmetric=False), w)
    assert asym.rel_error <= sym.rel_error, (asym.rel_error, sym.rel_error)


@pytest.mark.parametrize("bits", [4, 5, 6, 7, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_rounding_error_matches_the_step_size_prediction_on_a_gaussian(bits, symmetric):
    """Many levels, no clipping: the error is uniform on [-D/2, D/2], mean D^2/12."""
    r = E.explore(E.Setting(bits=bits, symmetric=symmetric), E.ToyWeights(shape=(512, 64)))
    assert r.clipped_fraction == 0.0 if symmetric else r.clipped_fraction < 1e-3
    assert abs(r.prediction_ratio - 1) < 0.05, r.prediction_ratio
    # channel by channel too (512 weights each: a few per cent of sampling noise)
    per_channel = r.mse_round / r.predicted_round
    assert np.all(np.abs(per_channel - 1) < 0.25), per_channel


def test_the_prediction_fails_with_three_levels():
    """Symmetric int2 has the levels -s, 0, s: a Gaussian's weights pile up near 0, where
    the error is far from uniform over the step: the prediction overestimates it."""
    r = E.explore(E.Setting(bits=2), E.ToyWeights(shape=(512, 64)))
    assert r.prediction_ratio < 0.9


def test_error_decomposes_into_pruning_clipping_rounding():
    w = _toy(dist="student_t", df=3.0, outliers=2).sample()
    r = E.explore(E.Setting(bits=4, groups=4, clip=0.7, nm="2:4"), w)
    np.testing.assert_allclose(r.mse, r.mse_prune + r.mse_clip + r.mse_round, rtol=1e-9)
    # pruning: exactly the pruned weights' squares (mask from the library, Eq. 3)
    mask = np.asarray(sparsity.nm_mask(w, 2, 4))
    np.testing.assert_array_equal(r.mask, mask)
    np.testing.assert_allclose(
        r.mse_prune, np.sum(np.where(mask, 0, w.astype(np.float64) ** 2), axis=0) / w.shape[0]
    )
    assert r.pruned_fraction == 0.5 and np.all(r.w_hat[~mask] == 0)
    # w_hat is Algorithm 1's output
    _, q = compress.prune_then_quantize(w, "int4/g4/clip0.7+2:4")
    np.testing.assert_array_equal(r.w_hat, np.asarray(quant.dequantize(q)))
    # clipping at 0.7 leaves some weights beyond half a step; no clipping leaves none
    assert r.clipped_fraction > 0 and np.all(r.mse_clip >= 0)
    assert E.explore(E.Setting(bits=4, groups=4), w).clipped_fraction == 0.0
    # every rounded weight is within half its step
    step = np.repeat(r.scale, w.shape[0] // 4, axis=0)
    rounded = r.mask & ~r.clipped
    assert np.all(np.abs(w - r.w_hat)[rounded] <= 0.5 * step[rounded] * (1 + 1e-5))


def test_output_outliers_leave_per_channel_error_unchanged_input_outliers_do_not():
    base = E.explore(E.Setting(bits=4), _toy())
    out = E.explore(E.Setting(bits=4), _toy(outliers=3, outlier_scale=50, outlier_axis="output"))
    np.testing.assert_allclose(out.channel_rel_error, base.channel_rel_error, rtol=1e-3)
    inp = E.explore(E.Setting(bits=4), _toy(outliers=1, outlier_scale=20))
    rows = _toy(outliers=1).outlier_index()
    others = np.ones(SMALL[0], bool)
    others[rows] = False
    # every channel's step is now set by the outlier row: the other weights lose
    err_others = lambda r: np.sum((r.w - r.w_hat)[others] ** 2) / np.sum(r.w[others] ** 2)
    assert err_others(inp) > 10 * err_others(base)
    # groups confine the damage to the outlier's group
    grouped = E.explore(E.Setting(bits=4, groups=8), _toy(outliers=1, outlier_scale=20))
    assert err_others(grouped) < err_others(inp) / 2


def test_clip_search_is_never_worse_than_no_clipping():
    src = _toy(dist="student_t", df=2.5)
    for bits in (2, 3, 4):
        searched = E.explore(E.Setting(bits=bits, symmetric=False, clip="search"), src)
        plain = E.explore(E.Setting(bits=bits, symmetric=False), src)
        assert searched.rel_error <= plain.rel_error * (1 + 1e-6)
        assert searched.clip_ratio.shape == (1, SMALL[1]) and np.all(searched.clip_ratio <= 1)


# --------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(
    "setting",
    [
        E.Setting(bits=8),
        E.Setting(bits=4),
        E.Setting(bits=2, symmetric=False),
        E.Setting(bits=2, symmetric=False, groups=4),
        E.Setting(bits=4, nm="2:4"),
        E.Setting(bits=3, groups=2, nm="1:4"),
    ],
    ids=str,
)
def test_size_ratios_are_those_of_sizes_py(setting):
    r = E.explore(setting, _toy())
    info = [ParamInfo("w", SMALL, "dense")]
    assert r.size_paper == sizes.size_ratio(str(setting.spec()), info, "paper")
    assert r.size_exact == sizes.model_size(str(setting.spec()), info).ratio
    i, j = SMALL
    spec = setting.spec()
    # the exact figure from first principles: kept values, scales, zero points, index bits
    bits = i * j * spec.density * spec.bits + 32 * spec.sub_channels * j
    bits += 0 if spec.symmetric else spec.bits * spec.sub_channels * j
    bits += (i * j / spec.m) * spec.n * np.ceil(np.log2(spec.m)) if spec.sparse else 0
    assert r.size_exact == pytest.approx(100 * bits / (32 * i * j))


def test_paper_convention_examples():
    assert E.explore(E.Setting(bits=4), _toy()).size_paper == 12.5
    assert E.explore(E.Setting(bits=4, nm="2:4"), _toy()).size_paper == pytest.approx(9.375)
    # 4 groups of a 96-wide input: one float32 scale per 24 weights
    r = E.explore(E.Setting(bits=2, symmetric=False, groups=4), _toy())
    assert r.size_paper == pytest.approx(100 * (2 / 32 + 1 / 24))


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "setting, message",
    [
        (dict(groups=7), "7 sub-channels do not divide its input dimension 96"),
        (dict(nm="4:2"), "n=4 > m=2"),
        (dict(nm="2:5"), "m=5 does not divide"),
        (dict(bits=9), "bits=9 is outside 2..8"),
        (dict(bits=1), "bits=1 is outside 2..8"),
        (dict(clip=0.0), r"clip ratio\(s\) must lie in \(0, 1\]"),
        (dict(clip=1.2), r"clip ratio\(s\) must lie in \(0, 1\]"),
        (dict(groups=0), "sub_channels must be a positive integer"),
        (dict(nm="int4"), "nm must be an N:M pattern"),
    ],
)
def test_invalid_settings_are_refused_with_the_library_message(setting, message):
    with pytest.raises(ValueError, match=message):
        E.explore(E.Setting(**setting), _toy())


@pytest.mark.parametrize(
    "toy, message",
    [
        (dict(df=0), "df"),
        (dict(dist="cauchy"), "dist must be"),
        (dict(outliers=97), "outliers=97"),
        (dict(outliers=25, outlier_axis="output"), "outliers=25"),
        (dict(outlier_scale=-1), "outlier_scale"),
        (dict(outlier_axis="diagonal"), "outlier_axis"),
        (dict(shape=(0, 4)), "shape"),
    ],
)
def test_invalid_toys_are_refused(toy, message):
    with pytest.raises(ValueError, match=message):
        _toy(**toy)


def test_channel_and_group_out_of_range():
    with pytest.raises(ValueError, match="channel=24 is outside 0..23"):
        E.explore(E.Setting(), _toy(), channel=24)
    with pytest.raises(ValueError, match="group=2 is outside 0..1"):
        E.explore(E.Setting(groups=2), _toy(), group=2)


# --------------------------------------------------------------------------- the views
def test_histogram_and_grid():
    r = E.explore(E.Setting(bits=3, groups=2), _toy(), channel=5, group=1)
    assert r.hist_counts.sum() == SMALL[0] // 2  # the group's weights, all of them
    assert not r.hist_pruned.any()
    p = E.explore(E.Setting(bits=3, nm="1:4"), _toy(), channel=5)
    assert p.hist_counts.sum() == SMALL[0] // 4 and p.hist_pruned.sum() == 3 * SMALL[0] // 4
    assert len(r.grid_levels) == 7 and 0.0 in r.grid_levels  # [-3, 3]: zero exact
    np.testing.assert_allclose(np.diff(r.grid_levels), r.scale[1, 5])
    col = r.w[SMALL[0] // 2 :, 5]
    assert r.hist_edges[0] <= col.min() and r.hist_edges[-1] >= col.max()
    a = E.explore(E.Setting(bits=2, symmetric=False), _toy())
    assert len(a.grid_levels) == 4 and np.any(np.isclose(a.grid_levels, 0.0, atol=0))


def test_toys_are_deterministic_and_scaled():
    a, b = _toy(seed=3).sample(), _toy(seed=3).sample()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _toy(seed=4).sample())
    t = E.ToyWeights(shape=(2000, 100), dist="student_t", df=5).sample()
    assert abs(t.std() / 0.02 - 1) < 0.05  # unit variance before the 0.02
    g = E.ToyWeights(shape=(2000, 100)).sample()
    assert np.abs(t).max() > np.abs(g).max()  # heavier tails
    o = _toy(outliers=2, outlier_scale=10)
    np.testing.assert_allclose(
        o.sample()[o.outlier_index()], 10 * _toy().sample()[o.outlier_index()]
    )
    # the histogram's default channel holds the outlier row's largest entry
    r = E.explore(E.Setting(), o)
    assert np.abs(r.w[:, r.channel]).max() == np.abs(r.w).max()


def test_b0_layer_and_its_whole_model_spec():
    names = E.b0_layer_names()
    assert E.DEFAULT_LAYER in names and all(n.endswith("/kernel") for n in names)
    r = E.explore(E.Setting(bits=2, symmetric=False, groups=6), E.B0Layer())
    assert r.w.shape == (144, 576) and r.model_spec == "int2/gs24"
    cfg = read_config(ROOT / "results" / "cpu" / "b0")[0]  # B0's own (vocabulary 28)
    assert r.model_size_paper == sizes.size_ratio("int2/gs24", cfg, "paper")
    assert r.model_size_exact == sizes.size_ratio("int2/gs24", cfg, "exact")
    assert E.explore(E.Setting(bits=8), E.B0Layer()).model_spec == "int8"
    with pytest.raises(ValueError, match="no dense kernel"):
        E.B0Layer("encoder/blocks/0/conv/depthwise/kernel").sample()
    # a group size that some layer cannot take is refused before anything compiles
    with pytest.raises(ValueError, match="group size 7 does not divide"):
        E.ptq_wer("int2/gs7")
    with pytest.raises(ValueError, match="needs in_dim"):
        E.ptq_wer(E.Setting(bits=4))


def test_divisors():
    assert E.divisors(12) == [1, 2, 3, 4, 6, 12] and E.divisors(1) == [1]


def test_widgets_update_and_refuse(monkeypatch):
    pytest.importorskip("ipywidgets")
    import matplotlib

    matplotlib.use("Agg")
    ui = E.build_explorer(toy_shape=SMALL)
    first = ui.result.rel_error
    assert ui.updates == 1 and ui.summary.value.count("usmlite-explorer-error") == 1
    ui.controls["bits"].value = 2
    assert ui.updates == 2 and ui.result.spec == "int2/sym" and ui.result.rel_error > first
    # the figure draws the numbers of the result: per-channel total RMS error
    total = ui.figure.axes[1].lines[0].get_ydata()
    np.testing.assert_allclose(total, np.sqrt(ui.result.mse))
    # groups offered are the divisors of the input width
    assert list(ui.controls["groups"].options) == E.divisors(SMALL[0])
    ui.controls["nm"].value = "2:4"
    assert ui.result.pruned_fraction == 0.5
    # a setting the library refuses shows its message instead of a plot
    monkeypatch.setattr(ui, "setting", lambda: E.Setting(nm="8:4"))
    assert ui.update() is None and "n=8 &gt; m=4" in ui.summary.value and ui.result is None


def test_the_explorer_shows_its_values_and_a_picture_of_its_state():
    pytest.importorskip("ipywidgets")
    import base64

    import matplotlib

    matplotlib.use("Agg")
    ui = E.build_explorer(toy_shape=SMALL)
    c = ui.controls
    # dense N:M is a named option (a None value showed an empty box), and reads as dense
    assert c["nm"].value == "none" and c["nm"].label == "none" and ui.setting().nm is None
    c["nm"].value = "2:4"
    assert ui.setting().nm == "2:4"
    c["nm"].value = "none"
    assert ui.result.pruned_fraction == 0.0
    for k in ("df", "outliers", "outlier_scale", "bits", "clip", "channel"):
        assert c[k].readout and c[k].readout_format, k
    bundle = ui._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ui.widget.model_id
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{ui.result.spec}, relative error" in bundle["text/plain"]


@pytest.mark.slow
def test_ptq_wer_of_b0_on_a_few_utterances():
    import time

    from usmlite_edu.speech.decoding import wer_cer

    r = E.ptq_wer(E.Setting(bits=8), in_dim=144, utterances=8)
    assert r["spec"] == "int8" and r["utterances"] == 8 and r["words"] > 8
    refs, hyps = [t["ref"] for t in r["transcripts"]], [t["hyp"] for t in r["transcripts"]]
    assert r["wer"] == wer_cer(refs, hyps)[0]
    f = E.ptq_wer("float", utterances=8)
    assert f["wer"] == f["float_wer"] == r["float_wer"] and f["utterances"] == 8
    # int8 PTQ keeps the float WER (Table 1, E0); here within one word of these 8 utterances
    assert abs(r["errors"] - f["errors"]) <= 1
    t0 = time.time()
    assert E.ptq_wer("int8", utterances=8)["wer"] == r["wer"] and time.time() - t0 < 1  # cached
    assert E.ptq_wer("int8", utterances=8, reference=False)["float_wer"] is None
    with pytest.raises(ValueError, match="utterances=0"):
        E.ptq_wer("int8", utterances=0)


def test_the_ptq_utterances_spread_over_the_sample():
    from usmlite_edu.course.explorer import _sample

    sample = str(ROOT / "data_small" / "fsdd_sample")
    full = _sample(sample, 56, 8000).utterances
    four = _sample(sample, 4, 8000).utterances
    assert len({u.uid for u in full}) == 56 and four[0] == full[0] and four[-1] == full[-1]
    assert len({u.speaker for u in _sample(sample, 8, 8000).utterances}) == 5
