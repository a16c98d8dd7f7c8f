"""Learned step size quantization (LSQ, Esser et al. 2019): the maths of usmlite_edu.core.quant,
the ``/lsq`` spec option, the model's step-size parameter, training, PTQ and checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_model import TINY, TINY_CFG

from usmlite_edu.core import compress, quant, sizes
from usmlite_edu.core.specs import CompressionSpec
from usmlite_edu.deploy import export
from usmlite_edu.speech import augment, batching, configs, model, runs
from usmlite_edu.speech.corpora import load_corpus
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training import train as train_lib

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def lsq_case(draw):
    """A weight ``(I, J)``, a group count, a bit width and positive step sizes ``(g, J)``
    spread around the min/max scale (some clip many weights, some none)."""
    g = draw(st.sampled_from([1, 2, 4]))
    i, j = g * draw(st.sampled_from([2, 6])), draw(st.sampled_from([1, 3]))
    bits = draw(st.sampled_from([2, 3, 4, 8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    w = rng.standard_t(3, size=(i, j)) * rng.uniform(0.01, 5)
    base = np.asarray(quant.lsq_init_step(jnp.asarray(w, jnp.float32), bits, sub_channels=g))
    step = base * rng.uniform(0.2, 3.0, size=base.shape)
    return jnp.asarray(w, jnp.float32), jnp.asarray(step, jnp.float32), bits, g


def _reference(w, step, bits, g):
    """The LSQ forward and Eq. (3), written out in float64 numpy, one element at a time."""
    w, step = np.asarray(w, np.float64), np.asarray(step, np.float64)
    qp = 2 ** (bits - 1) - 1
    i, j = w.shape
    w_hat, dstep, inside = np.zeros_like(w), np.zeros_like(w), np.zeros(w.shape, bool)
    for a in range(i):
        for b in range(j):
            s = step[a // (i // g), b]
            v = w[a, b] / s
            w_hat[a, b] = s * np.clip(np.round(v), -qp, qp)
            if -qp < v < qp:
                dstep[a, b], inside[a, b] = np.round(v) - v, True
            else:
                dstep[a, b] = -qp if v <= -qp else qp
    return w_hat, dstep, inside


# --------------------------------------------------------------------------- the maths
@SETTINGS
@given(lsq_case())
def test_lsq_forward_is_the_step_times_the_clipped_rounded_ratio(case):
    w, step, bits, g = case
    want, _, _ = _reference(w, step, bits, g)
    got = quant.lsq_fake_quant(w, step, bits, sub_channels=g)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    q = quant.lsq_quantize(w, step, bits, sub_channels=g)
    assert q.values.dtype == jnp.int8 and int(jnp.max(jnp.abs(q.values))) <= 2 ** (bits - 1) - 1
    np.testing.assert_array_equal(np.asarray(quant.dequantize(q)), np.asarray(got))


@SETTINGS
@given(lsq_case(), st.integers(0, 2**31 - 1))
def test_lsq_gradients_are_eq3_scaled_by_g(case, seed):
    """d/ds and d/dw of <u, w^> against the hand-written Eq. (3), with g = 1/sqrt(N_W Q_P)."""
    w, step, bits, g = case
    u = jnp.asarray(np.random.default_rng(seed).normal(size=w.shape), jnp.float32)
    dw, ds = jax.grad(
        lambda w, s: jnp.sum(u * quant.lsq_fake_quant(w, s, bits, sub_channels=g)), (0, 1)
    )(w, step)
    _, dstep, inside = _reference(w, step, bits, g)
    scale = 1.0 / np.sqrt((w.shape[0] // g) * (2 ** (bits - 1) - 1))
    want_ds = scale * (np.asarray(u) * dstep).reshape(g, -1, w.shape[1]).sum(axis=1)
    np.testing.assert_allclose(np.asarray(ds), want_ds, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(dw), np.where(inside, np.asarray(u), 0.0))
    np.testing.assert_allclose(
        np.asarray(quant.lsq_step_gradient(w, step, bits, sub_channels=g)), dstep, atol=1e-5
    )


def test_lsq_step_gradient_matches_a_finite_difference_of_the_ste_surrogate():
    """Eq. (3) is the derivative of ``s * (clip(v/s) + c)`` with the rounding residual
    ``c = round(v/s) - v/s`` frozen (the STE): check it by central differences."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 3))
    for bits in (2, 4, 8):
        qp = 2 ** (bits - 1) - 1
        # clips / about fits / wide (no weight exactly on a kink of the clip)
        s0 = np.abs(w).max(axis=0) / qp * np.array([0.4, 1.05, 1.7])
        v0 = np.clip(w / s0, -qp, qp)
        c0 = np.round(v0) - v0

        def surrogate(s, qp=qp, c0=c0):
            return np.sum(s * (np.clip(w / s, -qp, qp) + c0), axis=0)

        h = 1e-6 * s0
        fd = (surrogate(s0 + h) - surrogate(s0 - h)) / (2 * h)
        got = np.asarray(
            quant.lsq_step_gradient(jnp.asarray(w, jnp.float32), jnp.asarray(s0[None]), bits)
        ).sum(axis=0)
        np.testing.assert_allclose(got, fd, rtol=2e-3, atol=2e-3)


def test_lsq_matmul_is_the_native_forward_with_the_fake_quant_gradients():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(5, 16)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(16, 6)), jnp.float32)
    for g, bits in ((1, 4), (4, 2), (2, 8)):
        s = quant.lsq_init_step(w, bits, sub_channels=g) * 0.8
        q = quant.lsq_quantize(w, s, bits, sub_channels=g)
        np.testing.assert_array_equal(
            np.asarray(quant.lsq_matmul(x, w, s, bits, sub_channels=g)),
            np.asarray(quant.native_matmul(x, q)),
        )

        def native(x, w, s, bits=bits, g=g):
            return jnp.sum(jnp.tanh(quant.lsq_matmul(x, w, s, bits, sub_channels=g)))

        def fake(x, w, s, bits=bits, g=g):
            return jnp.sum(jnp.tanh(x @ quant.lsq_fake_quant(w, s, bits, sub_channels=g)))

        for a, b in zip(jax.grad(native, (0, 1, 2))(x, w, s), jax.grad(fake, (0, 1, 2))(x, w, s)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_minmax_init_is_eq2_and_the_paper_init_is_lsqs():
    rng = np.random.default_rng(2)
    w = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
    for bits in (4, 8):
        s = quant.lsq_init_step(w, bits, sub_channels=2)
        np.testing.assert_array_equal(
            np.asarray(s), np.asarray(quant.quantize(w, bits, sub_channels=2).scale)
        )
        np.testing.assert_array_equal(
            np.asarray(quant.lsq_fake_quant(w, s, bits, sub_channels=2)),
            np.asarray(quant.dequantize(quant.quantize(w, bits, sub_channels=2))),
        )
        p = quant.lsq_init_step(w, bits, method="paper")
        want = 2 * np.abs(np.asarray(w)).mean(axis=0) / np.sqrt(2 ** (bits - 1) - 1)
        np.testing.assert_allclose(np.asarray(p)[0], want, rtol=1e-6)
    with pytest.raises(ValueError, match="minmax"):
        quant.lsq_init_step(w, 4, method="mse")
    with pytest.raises(ValueError, match="expected"):
        quant.lsq_fake_quant(w, jnp.ones((1, 3)), 4)


# --------------------------------------------------------------------------- the spec
@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([2, 3, 4, 8]),
    st.sampled_from(["", "/g4", "/gs8"]),
    st.sampled_from(["", "+2:4", "+1:4/fs10", "+2:4/srste"]),
)
def test_lsq_spec_round_trip(bits, groups, nm):
    sym = "/sym" if bits == 2 else ""
    text = f"int{bits}{sym}{groups}/lsq{nm}"
    spec = CompressionSpec.parse(text)
    assert spec.lsq and spec.symmetric and str(spec) == text
    assert CompressionSpec.parse(str(spec)) == spec
    # storage is that of the min/max spec: one float32 scale per (group, channel)
    plain = spec.replace(lsq=False)
    assert sizes.size_ratio(spec) == sizes.size_ratio(plain)
    assert sizes.size_ratio(spec, convention="exact") == sizes.size_ratio(plain, convention="exact")


@pytest.mark.parametrize(
    "text, match",
    [
        ("int2/lsq", "symmetric grids only.*int2/sym/lsq"),
        ("int4/asym/lsq", "symmetric grids only"),
        ("int4/clip0.9/lsq", "clip"),
        ("int4/clipsearch/lsq", "clip"),
        ("2:4/lsq", "quantizer option.*int4/lsq\\+2:4"),
        ("float/lsq", "takes no options"),
    ],
)
def test_invalid_lsq_specs_are_refused(text, match):
    with pytest.raises(ValueError, match=match):
        CompressionSpec.parse(text)
    if text == "int2/lsq":
        with pytest.raises(ValueError, match="bit width"):
            CompressionSpec(lsq=True)


def test_compress_functions_default_to_the_minmax_step():
    w = jax.random.normal(jax.random.key(0), (16, 8))
    x = jax.random.normal(jax.random.key(1), (3, 16))
    for spec in ("int4/lsq+2:4", "int8/g2/lsq"):
        plain = CompressionSpec.parse(spec).replace(lsq=False)
        np.testing.assert_array_equal(
            np.asarray(compress.compress_weight(w, spec)),
            np.asarray(compress.compress_weight(w, plain)),
        )
        np.testing.assert_array_equal(
            np.asarray(compress.compressed_matmul(x, w, spec)),
            np.asarray(compress.compressed_matmul(x, w, plain)),
        )
        _, q = compress.prune_then_quantize(w, spec, step=None)
        _, q2 = compress.prune_then_quantize(w, plain)
        np.testing.assert_array_equal(np.asarray(q.values), np.asarray(q2.values))


# --------------------------------------------------------------------------- the model
def test_model_holds_one_log_step_per_compressible_dense_layer():
    cfg = configs.CI.replace(**TINY_CFG)
    params = model.init_params(cfg, "int4/g4/lsq+2:4")
    names = [
        n
        for n in model.param_shapes(model.build_model(cfg, "int4/g4/lsq+2:4"))
        if n.endswith("log_step")
    ]
    dense = [w for w in model.param_table(cfg) if w.role == "dense"]
    assert len(names) == len(dense)
    proj = params["frontend"]["proj"]
    assert proj["log_step"].shape == (4, cfg.model_dim)
    # the initial step is Eq. 2's scale of the pruned kernel
    mask = model.one_shot_masks(params, "2:4", cfg)["frontend"]["proj"]["kernel"]
    want = quant.lsq_init_step(jnp.where(mask, proj["kernel"], 0.0), 4, sub_channels=4)
    np.testing.assert_allclose(np.exp(np.asarray(proj["log_step"])), np.asarray(want), rtol=1e-6)
    # masks and weight noise leave the step sizes alone
    where = model.compressible_mask_tree(params, cfg)
    assert where["frontend"]["proj"]["log_step"] is False
    assert augment.noise_targets(params, cfg)["frontend"]["proj"]["log_step"] is False
    # without lsq the tree has no step sizes; conform_lsq adds and removes them
    plain = model.init_params(cfg, "int4/g4+2:4")
    assert "log_step" not in plain["frontend"]["proj"]
    added = model.conform_lsq(plain, cfg, "int4/g4/lsq")
    assert jax.tree.structure(added) == jax.tree.structure(params)
    assert jax.tree.structure(model.conform_lsq(params, cfg, "int4/g4")) == jax.tree.structure(
        plain
    )


def test_export_refuses_an_lsq_spec(tmp_path):
    cfg = configs.CI.replace(**TINY_CFG)
    params = model.init_params(cfg, "float")
    with pytest.raises(ValueError, match="LSQ.*int4"):
        export.write_packed(params, "int4/lsq", tmp_path / "m.safetensors", config=cfg)


@pytest.fixture(scope="module")
def tiny_data():
    split = load_corpus("data_small", None, "train", sample_rate=16000)
    tok = Tokenizer.train([u.text for u in split], 48, None, seed=0)
    cfg = configs.CI.replace(**TINY_CFG, vocab_size=tok.vocab_size)
    tcfg = configs.TrainConfig(
        batch_size=4, peak_lr=3e-3, encoder_warmup=5, softmax_warmup=5, bucket_seconds=(4.5,)
    )
    ds = batching.prepare(split, tok, cfg, (4.5,))
    batch, _ = next(batching.eval_batches(ds, 4))
    return cfg, tcfg, batch


def _train(cfg, tcfg, batch, spec, steps=6):
    tr = train_lib.Trainer(cfg, spec, tcfg)
    params = tr.init_params(0)
    state = tr.setup_optimizer(params)
    start = jax.tree.map(np.asarray, params)
    for step in range(steps):
        params, state, loss, finite = tr.step(params, state, batch, jax.random.key(0), step)
        assert bool(finite) and np.isfinite(float(loss))
    return tr, start, params, state


@pytest.mark.slow
def test_training_moves_the_step_sizes_deterministically(tiny_data):
    cfg, tcfg, batch = tiny_data
    tr, start, params, _ = _train(cfg, tcfg, batch, "int4/lsq")
    before = start["encoder"]["blocks"][0]["ffn1"]["dense1"]["log_step"]
    after = np.asarray(params["encoder"]["blocks"][0]["ffn1"]["dense1"]["log_step"])
    assert np.abs(after - before).max() > 1e-3  # Adam moves log s by about lr per step
    _, _, again, _ = _train(cfg, tcfg, batch, "int4/lsq")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # PTQ of the trained weights under min/max scales: the step sizes are dropped
    plain = train_lib.Trainer(cfg, "int4", tcfg)
    logits, _ = plain.logits(params, None, batch.waveforms, batch.lengths)
    want, _ = plain.logits(
        model.conform_lsq(params, cfg, "int4"), None, batch.waveforms, batch.lengths
    )
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(want))


def test_lsq_ptq_of_a_float_model_is_minmax_ptq(tiny_data):
    """A float model evaluated under int4/lsq gets the initial steps (Eq. 2's scale): its
    logits are those of int4 PTQ, up to the float32 rounding of exp(log(s))."""
    cfg, tcfg, batch = tiny_data
    params = model.init_params(cfg, "float")
    lsq = train_lib.Trainer(cfg, "int4/lsq+2:4", tcfg)
    plain = train_lib.Trainer(cfg, "int4+2:4", tcfg)
    masks = model.one_shot_masks(params, "2:4", cfg)
    a, _ = lsq.logits(params, masks, batch.waveforms, batch.lengths)
    b, _ = plain.logits(params, masks, batch.waveforms, batch.lengths)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_lsq_run_checkpoints_resume_and_restore(tmp_path):
    kw = dict(
        steps=4,
        spec="int4/lsq+2:4",
        eval_splits=(),
        overrides={
            **TINY,
            "train.checkpoint_every": 2,
            "train.batch_size": 4,
            "train.bucket_seconds": (4.5,),
        },
    )
    train_lib.train("ci", "data_small", None, tmp_path / "full", **kw)
    train_lib.train("ci", "data_small", None, tmp_path / "cut", stop_after=3, **kw)
    train_lib.train("ci", "data_small", None, tmp_path / "cut", **kw)
    full, cut = runs.load_run(tmp_path / "full"), runs.load_run(tmp_path / "cut")
    assert "log_step" in full.params["frontend"]["proj"]
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(cut.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_fine_tuning_a_float_run_under_lsq_starts_from_its_minmax_scales(tmp_path):
    tr = {"train.batch_size": 4, "train.bucket_seconds": (4.5,)}
    kw = dict(eval_splits=(), overrides=tr)  # the init run fixes the model
    train_lib.train(
        "ci",
        "data_small",
        None,
        tmp_path / "float",
        steps=2,
        eval_splits=(),
        overrides={**TINY, **tr},
    )
    train_lib.train(
        "ci",
        "data_small",
        None,
        tmp_path / "lsq",
        spec="int4/lsq",
        init=tmp_path / "float",
        steps=1,
        **kw,
    )
    base, tuned = runs.load_run(tmp_path / "float"), runs.load_run(tmp_path / "lsq")
    assert "log_step" not in base.params["frontend"]["proj"]
    start = quant.lsq_init_step(base.params["frontend"]["proj"]["kernel"], 4)
    got = np.exp(np.asarray(tuned.params["frontend"]["proj"]["log_step"]))
    # one Adam step moves log s by at most about the learning rate (with the re-warm ramp)
    np.testing.assert_allclose(got, np.asarray(start), rtol=0.02)
    assert not np.array_equal(got, np.asarray(start))
