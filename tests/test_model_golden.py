"""Golden test of the NNX Conformer-CTC against the frozen Linen model it replaced.

The committed B0 checkpoint (``results/cpu/b0``, trained with the Linen model) is
converted with :func:`usmlite_edu.model.params_from_linen`; the NNX model must then give
the Linen model's logits (``tests/linen_reference.py``) on real speech, and the same
greedy transcripts. Random-initialised CI models check the compressed paths (int8
forward, sub-channels, N:M masks, compressed softmax and convolutions) the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import linen_reference as L
import numpy as np
import pytest
from fsdd_location import fsdd_dir

from usmlite_edu import configs, frontend, sparsity
from usmlite_edu import model as M
from usmlite_edu.compress import as_spec
from usmlite_edu.configs import ConformerConfig
from usmlite_edu.corpora import load_corpus
from usmlite_edu.tokenizer import Tokenizer

RUN = Path(__file__).resolve().parents[1] / "results" / "cpu" / "b0"
REL_TOL = 1e-4  # max |NNX - Linen| relative to the largest |logit|


@pytest.fixture(scope="module")
def b0():
    """``(config, config.json, Linen params, NNX params, tokenizer)`` of the B0 run."""
    import orbax.checkpoint as ocp

    if not (RUN / "params").is_dir():
        pytest.skip(f"no committed B0 checkpoint at {RUN}")
    meta = json.loads((RUN / "config.json").read_text())
    mc = dict(meta["model_config"])
    cfg = ConformerConfig(**{**mc, "subsample_channels": tuple(mc["subsample_channels"])})
    with ocp.StandardCheckpointer() as ckptr:
        linen = ckptr.restore((RUN / "params").absolute())
    return cfg, meta, linen, M.params_from_linen(linen, cfg), Tokenizer.load(RUN / "tokenizer")


def _features(cfg: ConformerConfig, waves: list[np.ndarray]):
    """Padded batch -> normalised log-mel and frame mask, as ``Trainer.features`` does."""
    wav = np.zeros((len(waves), max(len(w) for w in waves)), np.float32)
    for i, w in enumerate(waves):
        wav[i, : len(w)] = w
    lengths = jnp.asarray([len(w) for w in waves])
    feats, mask = frontend.log_mel(jnp.asarray(wav), lengths, frontend.LogMelConfig.from_model(cfg))
    return frontend.normalize(feats, mask), mask


def _greedy(logits, mask, tok: Tokenizer) -> list[str]:
    out = []
    for row, m in zip(np.asarray(logits).argmax(-1), np.asarray(mask)):
        row = row[m]
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append(tok.decode([int(t) for t in row[keep] if t != 0]))
    return out


def _check_against_linen(b0, waves, what: str) -> None:
    cfg, _, linen, params, tok = b0
    feats, mask = _features(cfg, waves)
    ref, ref_mask = L.ConformerCTC(cfg).apply({"params": linen}, feats, mask)
    graphdef = M.model_graph(cfg)
    scale = float(jnp.max(jnp.abs(ref)))
    for how, (out, out_mask) in {
        "eager": M.forward(graphdef, params, feats, mask),
        "jit": jax.jit(M.forward)(graphdef, params, feats, mask),
    }.items():
        diff = float(jnp.max(jnp.abs(out - ref)))
        print(
            f"{what} ({how}): {len(waves)} utterances, max |NNX - Linen| = {diff:.3g} "
            f"(max |logit| {scale:.3g})"
        )
        np.testing.assert_array_equal(out_mask, ref_mask)
        assert diff <= REL_TOL * scale, (what, how, diff, scale)
        assert _greedy(out, out_mask, tok) == _greedy(ref, ref_mask, tok)


def test_b0_checkpoint_on_data_small(b0):
    cfg = b0[0]
    split = load_corpus("data_small", None, "test", sample_rate=cfg.sample_rate)
    waves = [u.load(cfg.sample_rate) for u in split.utterances[:8]]
    _check_against_linen(b0, waves, "data_small test")


def test_b0_checkpoint_on_fsdd(b0):
    cfg, meta = b0[0], b0[1]
    where = fsdd_dir()
    if where is None:
        pytest.skip(
            "FSDD not found (set USMLITE_DATA or fetch it with "
            "`usmlite-edu data fetch fsdd`); the data_small golden test still ran"
        )
    split = load_corpus(
        "fsdd",
        where,
        "test",
        seed=int(meta["seed"]),
        sample_rate=cfg.sample_rate,
        heldout_speaker=meta.get("heldout_speaker"),
    )
    waves = [u.load(cfg.sample_rate) for u in split.utterances[:6]]
    _check_against_linen(b0, waves, "FSDD test")


def test_params_from_linen_gives_the_nnx_tree():
    cfg = configs.CI
    feats = jnp.zeros((1, 16, cfg.num_mels))
    linen = L.ConformerCTC(cfg).init(jax.random.key(0), feats, jnp.ones((1, 16), bool))
    converted = M.params_from_linen(linen, cfg)  # the {"params": ...} wrapper too
    fresh = M.init_params(cfg)
    assert jax.tree.structure(converted) == jax.tree.structure(fresh)
    assert jax.tree.map(jnp.shape, converted) == jax.tree.map(jnp.shape, fresh)
    assert (
        converted["encoder"]["blocks"][1]["mhsa"]["query"]["kernel"]
        is linen["params"]["encoder"]["block_1"]["mhsa"]["query"]["kernel"]
    )


def test_params_from_linen_refuses_unknown_paths():
    cfg = configs.CI
    good = M.params_from_linen(
        L.ConformerCTC(cfg).init(
            jax.random.key(0), jnp.zeros((1, 16, cfg.num_mels)), jnp.ones((1, 16), bool)
        )["params"]
    )
    linen = {"encoder": {"block_0": {"ffn1": {"extra": {"kernel": np.zeros(2)}}}}}
    with pytest.raises(ValueError, match="'encoder/block_0/ffn1/extra/kernel'"):
        M.params_from_linen(linen)
    with pytest.raises(ValueError, match="'encoder/layer_0/ffn1/norm/scale'"):
        M.params_from_linen({"encoder": {"layer_0": {"ffn1": {"norm": {"scale": np.zeros(2)}}}}})
    with pytest.raises(ValueError, match="'decoder/kernel'"):
        M.params_from_linen({"decoder": {"kernel": np.zeros(2)}})
    with pytest.raises(ValueError, match="does not match config 'cpu'"):
        M.params_from_linen(
            {"softmax": {"kernel": np.zeros((64, 32)), "bias": np.zeros(32)}}, configs.CPU
        )
    assert jax.tree.structure(good) == jax.tree.structure(M.init_params(cfg))


@pytest.mark.parametrize(
    "spec, options",
    [
        ("float", {}),
        ("int4", {}),
        ("int2/g4", {}),
        ("int4+2:4", {}),
        ("int8", {"compress_softmax": True, "compress_convs": True}),
    ],
)
def test_random_init_matches_linen_on_every_compressed_path(spec, options):
    cfg = configs.CI
    feats = jax.random.normal(jax.random.key(0), (2, 41, cfg.num_mels))
    mask = jnp.arange(41)[None] < jnp.array([41, 26])[:, None]
    linen_model = L.ConformerCTC(cfg, L.ModelOptions(spec=as_spec(spec), **options))
    linen = linen_model.init(jax.random.key(1), feats, mask)["params"]
    params = M.params_from_linen(linen, cfg)
    masks = masks_linen = None
    if as_spec(spec).sparse:  # one-shot N:M masks on the compressible kernels (Eq. 3)
        where = M.compressible_mask_tree(params, cfg, M.ModelOptions(**options))
        one_shot = lambda w, p: sparsity.nm_mask(w, 2, 4) if p else jnp.ones((), bool)
        masks = jax.tree.map(one_shot, params, where)
        masks_linen = jax.tree.map(
            one_shot, linen, L.compressible_mask_tree(linen, linen_model.opts)
        )
    ref, _ = linen_model.apply({"params": L.apply_masks(linen, masks_linen)}, feats, mask)
    out, _ = M.forward(
        M.model_graph(cfg, spec, **options), M.apply_masks(params, masks), feats, mask
    )
    diff = float(jnp.max(jnp.abs(out - ref)))
    print(f"CI random init, spec {spec} {options}: max |NNX - Linen| = {diff:.3g}")
    assert diff <= REL_TOL * float(jnp.max(jnp.abs(ref)))


def _linen_wer(b0, ds, batch_size: int = 16) -> float:
    """WER of the frozen Linen model over a prepared dataset, batched as the trainer does."""
    from usmlite_edu import batching, decoding

    cfg, _, linen, _, tok = b0
    mel = frontend.LogMelConfig.from_model(cfg)

    @jax.jit
    def logits(p, wav, lengths):
        feats, mask = frontend.log_mel(wav, lengths, mel)
        return L.ConformerCTC(cfg).apply({"params": p}, frontend.normalize(feats, mask), mask)

    refs, hyps = [], []
    for batch, idx in batching.eval_batches(ds, batch_size):
        out, omask = logits(linen, jnp.asarray(batch.waveforms), jnp.asarray(batch.lengths))
        for row, i in enumerate(idx):
            refs.append(tok.normalize(ds.examples[i].text))
            hyps.append(
                tok.decode(
                    decoding.greedy_decode(
                        np.asarray(out)[row : row + 1], np.asarray(omask)[row : row + 1]
                    )[0]
                )
            )
    return decoding.wer_cer(refs, hyps)[0]


def test_b0_committed_wer_is_reproduced(b0):
    """The NNX model, through the project's evaluation path (the one that wrote
    ``results/cpu/results.json``), gives B0's committed WER: exactly on the processor that
    recorded it; elsewhere exactly what the Linen model gives on this processor (XLA's CPU
    code, hence the summation order, depends on the processor; README "Determinism")."""
    from usmlite_edu import presets, reproduce, runs, train

    where = fsdd_dir()
    if where is None:
        pytest.skip("FSDD not found (set USMLITE_DATA or `usmlite-edu data fetch fsdd`)")
    record = next(
        r
        for r in json.loads((RUN.parents[0] / "results.json").read_text())["runs"]
        if r["exp"] == "B0" and r["seed"] == 0
    )
    p = presets.get_preset("cpu")
    run = runs.load_run(RUN)
    sets = reproduce._eval_sets(p.reproduce, str(where), run.config, run.tokenizer, p.train)
    trainer = train.get_trainer(run.config, "float", p.train)
    same_cpu = runs.machine_info()["processor"] == record["machine"]["processor"]
    for name, ds in sets.items():
        wer = trainer.evaluate(run.params, None, ds, run.tokenizer)["wer"]
        committed = record["results"][name]["wer"]
        expected = committed if same_cpu else _linen_wer(b0, ds)
        print(
            f"B0 {name}: NNX {wer:.2f}%, committed {committed:.2f}% "
            f"({'same processor' if same_cpu else f'Linen on this processor: {expected:.2f}%'})"
        )
        assert wer == pytest.approx(expected, abs=1e-9)
