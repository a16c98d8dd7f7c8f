"""Training regularisers: SpecAugment, speed perturbation, weight noise, dropout.

Each one must act in the training loss only, be a pure function of the step's key (so a
resumed run is exact), and leave a run that does not ask for it bit-identical.
"""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_model import TINY, TINY_CFG

from usmlite_edu.speech import augment, batching, configs, model, presets, runs
from usmlite_edu.speech.corpora import CorpusSplit, load_corpus
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training import step, train

pytestmark = pytest.mark.xdist_group("train")  # share the compile cache on one worker


# --------------------------------------------------------------------------- SpecAugment
def _feats(b=6, t=120, f=40, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([t, t - 7, 90, 64, 33, 20][:b])
    mask = np.arange(t)[None, :] < lengths[:, None]
    # |x| >= 0.5 on valid frames: a 0 can only come from a mask
    x = (rng.uniform(0.5, 2.0, (b, t, f)) * rng.choice([-1, 1], (b, t, f))).astype(np.float32)
    return jnp.asarray(np.where(mask[..., None], x, 0.0)), jnp.asarray(mask), lengths


# jitted once per config: eager, each call would dispatch every op on its own
_spec_augment = jax.jit(augment.spec_augment, static_argnums=3)


def _masked(out):
    """Per utterance: masked bins (zero on every frame) and masked frames (zero on every bin)."""
    z = np.asarray(out) == 0
    return z.all(axis=1), z.all(axis=2)


def _runs(flags):
    """Lengths of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[0], flags.astype(int), [0]])
    d = np.diff(padded)
    return np.flatnonzero(d == -1) - np.flatnonzero(d == 1)


def test_spec_augment_without_masks_is_the_identity():
    feats, mask, _ = _feats()
    assert (
        augment.spec_augment(feats, mask, jax.random.key(0), augment.SpecAugmentConfig()) is feats
    )


def test_spec_augment_masks_lie_within_the_stated_widths():
    feats, mask, lengths = _feats()
    cfg = augment.SpecAugmentConfig(freq_masks=1, freq_width=7, time_masks=1, time_max_frac=0.1)
    widths_f, widths_t = [], []
    for k in range(40):
        out = np.asarray(_spec_augment(feats, mask, jax.random.key(k), cfg))
        bins, frames = _masked(out)
        for b, n in enumerate(lengths):
            # one mask: one band, no wider than the bound, inside the valid frames
            fr, tr = _runs(bins[b]), _runs(frames[b, :n])
            assert len(fr) <= 1 and len(tr) <= 1
            widths_f.append(int(fr.sum()))
            widths_t.append(int(tr.sum()))
            assert widths_t[-1] <= int(0.1 * n)
        # every value outside the masks is untouched, padded frames stay 0
        keep = ~(bins[:, None, :] | frames[:, :, None])
        np.testing.assert_array_equal(out[keep], np.asarray(feats)[keep])
        assert not out[~np.asarray(mask)].any()
    # widths are uniform on 0..F: both ends are reached (an off-by-one would miss one)
    assert min(widths_f) == 0 and max(widths_f) == 7
    assert min(widths_t) == 0 and max(widths_t) == int(0.1 * lengths[0])

    many = augment.SpecAugmentConfig(freq_masks=2, freq_width=7, time_masks=5, time_max_frac=0.1)
    for k in range(10):
        bins, frames = _masked(_spec_augment(feats, mask, jax.random.key(k), many))
        assert (bins.sum(1) <= 2 * 7).all()
        assert ((frames & np.asarray(mask)).sum(1) <= 5 * np.floor(0.1 * lengths)).all()


def test_spec_augment_is_a_function_of_its_key():
    feats, mask, _ = _feats()
    cfg = augment.SpecAugmentConfig(freq_masks=2, freq_width=10, time_masks=3, time_max_frac=0.2)
    a = augment.spec_augment(feats, mask, jax.random.key(1), cfg)
    np.testing.assert_array_equal(a, augment.spec_augment(feats, mask, jax.random.key(1), cfg))
    b = augment.spec_augment(feats, mask, jax.random.key(2), cfg)
    assert not np.array_equal(a, b)
    # per utterance: two rows with the same features get different masks
    same = jnp.broadcast_to(feats[:1], feats.shape)
    out = np.asarray(
        augment.spec_augment(same, jnp.broadcast_to(mask[:1], mask.shape), jax.random.key(1), cfg)
    )
    assert not all(np.array_equal(out[0], out[i]) for i in range(1, len(out)))


# --------------------------------------------------------------------------- speed
def test_speed_perturb_scales_length_and_pitch():
    sr = 8000
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)).astype(np.float32)
    for factor, up, down in ((0.9, 10, 9), (1.1, 10, 11)):
        y = augment.speed_perturb(x, factor)
        assert y.dtype == np.float32 and len(y) == -(-len(x) * up // down)
        np.testing.assert_array_equal(y, augment.speed_perturb(x, factor))
        spec = np.abs(np.fft.rfft(y[1000:-1000] * np.hanning(len(y) - 2000)))
        peak = np.argmax(spec) * sr / (len(y) - 2000)
        assert abs(peak - 440 * factor) < 3, (factor, peak)  # faster = higher pitch
    np.testing.assert_array_equal(augment.speed_perturb(x, 1.0), x)
    for bad in (0, -0.9, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            augment.speed_perturb(x, bad)


def test_prepare_keeps_one_copy_per_speed_factor():
    split = load_corpus("data_small", None, "train", sample_rate=16000)
    split = CorpusSplit("few", split.utterances[:6], [], 16000)
    tok = Tokenizer.train([u.text for u in split.utterances], 24, None, seed=0)
    cfg = configs.CI.replace(vocab_size=tok.vocab_size)
    plain = batching.prepare(split, tok, cfg, (1.5, 2.0, 4.5))
    sp = batching.prepare(split, tok, cfg, (1.5, 2.0, 4.5), speed_factors=(0.9, 1.0, 1.1))
    assert len(sp.examples) == 3 * len(plain.examples)
    for i, e in enumerate(plain.examples):
        slow, same, fast = sp.examples[3 * i : 3 * i + 3]
        assert (slow.uid, same.uid, fast.uid) == (f"{e.uid}_sp0.9", e.uid, f"{e.uid}_sp1.1")
        np.testing.assert_array_equal(same.audio, e.audio)
        assert same.bucket == e.bucket
        assert len(fast.audio) < len(e.audio) < len(slow.audio)
        for c in (slow, fast):  # each copy is bucketed by its own length
            assert c.bucket == next(j for j, n in enumerate(sp.bucket_samples) if c.audio.size <= n)
            assert c.text == e.text and np.array_equal(c.tokens, e.tokens)
    again = batching.prepare(split, tok, cfg, (1.5, 2.0, 4.5), speed_factors=(0.9, 1.0, 1.1))
    for a, b in zip(sp.examples, again.examples):
        np.testing.assert_array_equal(a.audio, b.audio)


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "field, value, match",
    [
        ("specaug_freq_masks", -1, "specaug_freq_masks"),
        ("specaug_time_masks", -2, "specaug_time_masks"),
        ("specaug_freq_width", -1, "specaug_freq_width"),
        ("specaug_time_max_frac", 1.0, "specaug_time_max_frac"),
        ("specaug_time_max_frac", -0.1, "specaug_time_max_frac"),
        ("speed_perturb", (0.9, 0.0), "speed_perturb"),
        ("speed_perturb", (1.0, 1.0), "speed_perturb"),
        ("weight_noise_std", -0.01, "weight_noise_std"),
        ("weight_noise_start", -1, "weight_noise_start"),
    ],
)
def test_invalid_regulariser_settings_are_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        configs.TrainConfig(**{field: value})
    with pytest.raises(ValueError, match=match):
        presets.get_preset("ci").override([f"train.{field}={value}"])


def test_regularisers_are_settable_from_the_command_line():
    p = presets.get_preset("ci")
    assert p.train.speed_perturb == () and p.train.weight_noise_std == 0
    t = p.override(
        [
            "train.specaug_freq_masks=2",
            "train.specaug_time_masks=10",
            "train.specaug_time_max_frac=0.05",
            "train.speed_perturb=0.9,1.0,1.1",
            "train.weight_noise_std=0.01",
            "train.weight_noise_start=100",
        ]
    ).train
    assert (t.specaug_freq_masks, t.specaug_time_masks, t.specaug_time_max_frac) == (2, 10, 0.05)
    assert t.speed_perturb == (0.9, 1.0, 1.1)
    assert (t.weight_noise_std, t.weight_noise_start) == (0.01, 100)
    with pytest.raises(ValueError, match="specaug_freq_width"):  # masks of width 0: a no-op
        p.override(["train.specaug_freq_masks=2", "train.specaug_freq_width=0"])


def test_a_run_written_before_the_regularisers_existed_still_resumes(tmp_path):
    """Its config.json lacks the new fields: they count as their defaults (what it ran with)."""
    p = presets.get_preset("ci")
    meta = {
        "preset": "ci",
        "spec": "float",
        "corpus": "data_small",
        "seed": 0,
        "heldout_speaker": None,
        "init": None,
        "model_config": p.model,
        "train_config": p.train,
    }
    old = json.loads(json.dumps(meta, default=runs.json_default))
    for f in [f for f in old["train_config"] if f.startswith(("specaug_", "speed_", "weight_"))]:
        del old["train_config"][f]
    (tmp_path / "config.json").write_text(json.dumps(old))
    train._check_same_run(tmp_path / "config.json", meta)
    with pytest.raises(ValueError, match="weight_noise_std"):
        new = {**meta, "train_config": p.train.replace(weight_noise_std=0.01)}
        train._check_same_run(tmp_path / "config.json", new)


# --------------------------------------------------------------------------- in the loss
SPEC = "int8+2:4"  # noise must come before prune-then-quantize: test with both on


@pytest.fixture(scope="module")
def loss_setup():
    split = load_corpus("data_small", None, "train", sample_rate=16000)
    split = CorpusSplit("four", split.utterances[:4], [], 16000)
    tok = Tokenizer.train([u.text for u in split.utterances], 24, None, seed=0)
    cfg = configs.CI.replace(vocab_size=tok.vocab_size, **TINY_CFG)
    ds = batching.prepare(split, tok, cfg, (2.5,))
    batch, _ = next(batching.eval_batches(ds, 4))
    batch = batching.Batch(*(jnp.asarray(x) for x in batch))
    base = _trainer(cfg)
    params = base.init_params(0)
    masks = model.one_shot_masks(params, SPEC, cfg)
    k = jax.random.key(5)
    return cfg, batch, base, params, masks, k, base.jloss(params, masks, batch, k)


def _trainer(cfg, **tcfg):
    t = train.Trainer(cfg, SPEC, configs.TrainConfig(bucket_seconds=(2.5,), **tcfg))
    t.jloss = jax.jit(t.loss, static_argnames="deterministic")
    return t


def test_without_regularisers_the_loss_is_the_plain_ctc_loss(loss_setup):
    """Bit-exact the loss as it was computed before the regularisers existed."""
    cfg, batch, base, params, masks, k, clean = loss_setup

    @jax.jit
    def plain(params, masks, batch):
        feats, mask = base.features(batch.waveforms, batch.lengths)
        p = model.apply_masks(params, masks)
        logits, omask = model.forward(base.graphdef, p, feats, mask, deterministic=False)
        pad = jnp.arange(batch.labels.shape[1])[None] >= batch.label_lengths[:, None]
        per = optax.ctc_loss(
            logits.astype(jnp.float32),
            (~omask).astype(jnp.float32),
            batch.labels,
            pad.astype(jnp.float32),
        )
        return jnp.sum(per * batch.weights) / jnp.sum(batch.label_lengths * batch.weights)

    assert clean == plain(params, masks, batch)
    assert augment.weight_noise(params, k, 0.0, base.noise_targets) is params


def test_dropout_changes_the_training_loss(loss_setup):
    cfg, batch, _, params, masks, k, clean = loss_setup
    drop = _trainer(cfg.replace(dropout=0.3))
    a = drop.jloss(params, masks, batch, k)
    assert a != clean and a == drop.jloss(params, masks, batch, k)
    assert a != drop.jloss(params, masks, batch, jax.random.key(6))


def test_spec_augment_changes_the_training_loss(loss_setup):
    cfg, batch, _, params, masks, k, clean = loss_setup
    spec = _trainer(cfg, specaug_freq_masks=2, specaug_freq_width=8, specaug_time_masks=2)
    a = spec.jloss(params, masks, batch, k)
    assert a != clean and a == spec.jloss(params, masks, batch, k)
    assert a != spec.jloss(params, masks, batch, jax.random.key(6))


def test_weight_noise_comes_before_prune_then_quantize_and_none_acts_at_eval(loss_setup):
    """One trainer with all three on: weight noise from step 3, before the masks and the
    quantizer, its gradient to the clean weights; none of them in the evaluation loss."""
    cfg, batch, _, params, masks, k, clean = loss_setup
    reg = _trainer(
        cfg.replace(dropout=0.3),
        specaug_freq_masks=2,
        specaug_freq_width=8,
        specaug_time_masks=2,
        weight_noise_std=0.05,
        weight_noise_start=3,
    )
    assert reg.jloss(params, masks, batch, k, deterministic=True) == clean
    before, on = (reg.jloss(params, masks, batch, k, step=jnp.int32(s)) for s in (2, 3))
    assert on != before
    # the step-3 loss is the step-2 loss (same dropout and SpecAugment) at the noisy
    # weights: noise first, then W * M and the quantizer
    w = augment.weight_noise(
        params, jax.random.fold_in(k, step._NOISE_STREAM), 0.05, reg.noise_targets
    )
    assert on == reg.jloss(w, masks, batch, k, step=jnp.int32(2))
    # ... and the gradient at the noisy point goes to the clean weights
    grad = jax.jit(jax.grad(reg.loss), static_argnames="deterministic")
    g_on = grad(params, masks, batch, k, step=jnp.int32(3))
    g_ref = grad(w, masks, batch, k, step=jnp.int32(2))
    # same maths, another fusion of the backward pass: equal to float32 rounding
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_ref))
    for a, b in zip(jax.tree.leaves(g_on), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale)
    # only kernels get noise, of the stated size
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(w)):
        name = "/".join(str(getattr(p, "key", p)) for p in path)
        d = np.asarray(b) - np.asarray(a)
        if name.endswith("/kernel"):
            assert d.any(), name
            if d.size >= 2000:
                assert abs(d.std() - 0.05) < 0.005, name
        else:
            assert not d.any(), name


# --------------------------------------------------------------------------- end to end
def test_every_regulariser_on_resumes_to_identical_parameters(tmp_path, capsys):
    kw = dict(
        steps=8,
        spec="int8+2:4/fs6",
        eval_splits=(),
        overrides={
            **TINY,
            "model.dropout": 0.1,
            "train.checkpoint_every": 4,
            "train.log_every": 2,
            "train.batch_size": 8,
            "train.bucket_seconds": (4.5,),  # one bucket: one compile
            "train.specaug_freq_masks": 2,
            "train.specaug_freq_width": 8,
            "train.specaug_time_masks": 4,
            "train.specaug_time_max_frac": 0.05,
            "train.speed_perturb": (0.9, 1.0, 1.1),
            "train.weight_noise_std": 0.02,
            "train.weight_noise_start": 3,
        },
    )
    train.train("ci", "data_small", None, tmp_path / "full", **kw)
    n_plain = len(load_corpus("data_small", None, "train", sample_rate=16000).utterances)
    m = re.search(r"train: (\d+) utterances", capsys.readouterr().out)
    assert m and int(m.group(1)) == 3 * n_plain  # one copy per speed, none too long
    # "killed" after 6 steps: resumes from step 4, redoes 5-6 with the same keys and masks
    train.train("ci", "data_small", None, tmp_path / "cut", stop_after=6, **kw)
    train.train("ci", "data_small", None, tmp_path / "cut", **kw)
    for a, b in zip(
        jax.tree.leaves(runs.load_params(Path(tmp_path / "full") / "params")),
        jax.tree.leaves(runs.load_params(Path(tmp_path / "cut") / "params")),
    ):
        np.testing.assert_array_equal(a, b)
