"""End-to-end tests of the speech pipeline: overfit, resume, bad input, CLI."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from tiny_model import TINY, TINY_CFG

from usmlite_edu import cli
from usmlite_edu.core import sparsity
from usmlite_edu.core.specs import CompressionSpec
from usmlite_edu.speech import batching, configs, decoding, presets, runs
from usmlite_edu.speech.corpora import CorpusSplit, Utterance, load_corpus
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training import train

pytestmark = pytest.mark.xdist_group("train")  # share the compile cache on one worker


@pytest.fixture(scope="module")
def small_train():
    return load_corpus("data_small", None, "train", sample_rate=16000)


@pytest.fixture(scope="module")
def tokenizer(small_train):
    return Tokenizer.train([u.text for u in small_train], 48, None, seed=0)


def test_transformer_schedule_peaks_at_warmup():
    s = train.transformer_schedule(1.0, 10)
    vals = [float(s(jnp.asarray(t))) for t in range(40)]
    assert int(np.argmax(vals)) == 9 and vals[9] == pytest.approx(1.0)
    assert vals[39] == pytest.approx(np.sqrt(10 / 40))


def test_transformer_schedule_continues_with_offset_and_rewarm():
    base = train.transformer_schedule(1.0, 10)
    cont = train.transformer_schedule(1.0, 10, offset=100)
    ramp = train.transformer_schedule(1.0, 10, offset=100, rewarm=5)
    for c in (0, 7, 30):
        assert float(cont(jnp.asarray(c))) == pytest.approx(float(base(jnp.asarray(c + 100))))
    # the ramp rises linearly to the continued rate, then follows it
    assert float(ramp(jnp.asarray(0))) == pytest.approx(float(cont(jnp.asarray(0))) / 5)
    assert float(ramp(jnp.asarray(4))) == pytest.approx(float(cont(jnp.asarray(4))))
    assert float(ramp(jnp.asarray(20))) == pytest.approx(float(cont(jnp.asarray(20))))
    # continuing never returns to the peak
    assert max(float(cont(jnp.asarray(c))) for c in range(50)) < np.sqrt(10 / 100) + 1e-6


def test_machine_info_names_the_cpu_and_its_matmul_flags():
    info = runs.machine_info()
    assert info["cpus"] == os.cpu_count() and info["jax"] == jax.__version__
    assert info["processor"], "the CPU model is recorded (platform.processor() is empty on Linux)"
    assert isinstance(info["cpu_flags"], list)
    assert all(f.startswith(("amx", "avx512")) for f in info["cpu_flags"])
    json.dumps(info)  # goes into results.json as it is


def test_release_compiled_frees_trainers_and_their_memory_maps():
    # A sweep over many specs must not accumulate executables (each holds memory maps;
    # the kernel's limit killed a full `reproduce --preset cpu` run before this existed).
    def n_maps():
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)

    cfg = configs.CI.replace(**TINY_CFG, vocab_size=8)
    tcfg = presets.get_preset("ci").train
    x = np.zeros((2, 8000), np.float32)
    lengths = np.array([8000, 4000], np.int32)
    t1 = train.get_trainer(cfg, CompressionSpec.parse("float"), tcfg)
    params = t1.init_params(0)
    train.release_compiled()
    before = n_maps()
    for spec in ("int8", "int4", "int2", "2:4", "int4+2:4", "int2/gs8"):
        t = train.get_trainer(cfg, CompressionSpec.parse(spec), tcfg)
        jax.block_until_ready(t.logits(params, None, x, lengths))
    assert train.trainer_cache_info().currsize <= 4, "the cache is bounded"
    grown = n_maps() - before
    train.release_compiled()
    assert train.trainer_cache_info().currsize == 0
    assert train.get_trainer(cfg, CompressionSpec.parse("float"), tcfg) is not t1
    assert grown > 0 and n_maps() - before < grown, "releasing the executables unmaps their code"


def test_greedy_decode_merges_repeats_and_drops_blanks():
    logits = np.eye(4)[[0, 2, 2, 0, 2, 3, 3, 1]][None]
    assert decoding.greedy_decode(logits, np.ones((1, 8), bool)) == [[2, 2, 3, 1]]
    assert decoding.greedy_decode(logits, np.arange(8)[None] < 3) == [[2]]


@pytest.mark.parametrize("spec", ["float", "int4+2:4"])
def test_overfit_one_batch(small_train, tokenizer, spec):
    """The loss of one batch can be driven near zero: the model, CTC loss and optimizer
    (dense and compressed) are wired correctly."""
    cfg = configs.CI.replace(vocab_size=tokenizer.vocab_size)
    split = CorpusSplit("one", small_train.utterances[:4], [], 16000)
    ds = batching.prepare(split, tokenizer, cfg, (4.5,))
    tcfg = configs.TrainConfig(
        batch_size=4, peak_lr=3e-3, encoder_warmup=20, softmax_warmup=10, bucket_seconds=(4.5,)
    )
    tr = train.Trainer(cfg, CompressionSpec.parse(spec), tcfg)
    params = tr.init_params(0)
    state = tr.setup_optimizer(params)
    batch, idx = next(batching.eval_batches(ds, 4))
    key = jax.random.key(0)
    losses = []
    for step in range(300):
        params, state, loss, finite = tr.step(params, state, batch, key, step)
        losses.append(float(loss))
    assert losses[-1] < 0.05 * losses[0] and losses[-1] < 0.2, losses[::30]
    ids = tr.transcribe_batch(params, sparsity.masks_from_state(state), batch)
    refs = [tokenizer.normalize(ds.examples[i].text) for i in idx]
    assert [tokenizer.decode(i) for i in ids] == refs


def test_bad_inputs_are_reported_and_skipped(tmp_path, small_train, tokenizer):
    cfg = configs.CI.replace(vocab_size=tokenizer.vocab_size)
    good = small_train.utterances[0]
    bad_file = tmp_path / "corrupt.flac"
    bad_file.write_bytes(b"not audio at all")
    stereo = tmp_path / "stereo_8k.wav"
    x = good.load(8000)
    sf.write(stereo, np.stack([x, x], 1), 8000)
    utts = [
        good,
        Utterance("corrupt", "one two", "s", path=str(bad_file)),
        Utterance("empty_audio", "one", "s", audio=np.zeros(0, np.float32)),
        Utterance("nan", "one", "s", audio=np.full(16000, np.nan, np.float32)),
        Utterance("empty_text", "", "s", audio=good.load(16000)),
        Utterance("unencodable", "one two ß", "s", audio=good.load(16000)),
        Utterance("too_long", "one", "s", audio=np.zeros(16000 * 10, np.float32)),
        Utterance(
            "too_short", "one two three four five six seven", "s", audio=np.zeros(3000, np.float32)
        ),
        Utterance("stereo_8k", good.text, "s", path=str(stereo)),
    ]
    ds = batching.prepare(CorpusSplit("bad", utts, [], 16000), tokenizer, cfg, (4.5,))
    kept = {e.uid for e in ds.examples}
    assert kept == {good.uid, "stereo_8k"}
    reasons = dict(ds.skipped)
    assert "unreadable audio" in reasons[str(bad_file)]
    assert "empty audio" in reasons["empty_audio"]
    assert "NaN" in reasons["nan"]
    assert "empty transcript" in reasons["empty_text"]
    assert "cannot be encoded" in reasons["unencodable"]
    assert "too long" in reasons["too_long"]
    assert "too short for CTC" in reasons["too_short"]


def test_ctc_min_frames_counts_repeats():
    assert batching.ctc_min_frames([1, 2, 3]) == 3
    assert batching.ctc_min_frames([1, 1, 2, 2, 2]) == 8


def test_batch_stream_is_deterministic_and_resumable(small_train, tokenizer):
    cfg = configs.CI.replace(vocab_size=tokenizer.vocab_size)
    ds = batching.prepare(small_train, tokenizer, cfg, (2.5, 4.5))
    a = batching.BatchStream(ds, 8, seed=3)
    bpe = a.batches_per_epoch
    first = [next(a) for _ in range(bpe + 20)]  # crosses an epoch boundary
    b = batching.BatchStream(ds, 8, seed=3, position=(0, 0))
    for x, y in zip(first, (next(b) for _ in range(bpe + 20))):
        np.testing.assert_array_equal(x.waveforms, y.waveforms)
    c = batching.BatchStream(ds, 8, seed=3, position=(1, 15))
    np.testing.assert_array_equal(next(c).labels, first[bpe + 15].labels)
    shapes = {x.waveforms.shape for x in first}
    assert shapes <= {(8, 40000), (8, 72000)}  # fixed buckets: at most two compiles


def _final_params(run):
    return jax.tree.leaves(runs.load_params(Path(run) / "params"))


@pytest.mark.parametrize("spec", ["2:4/fs6"])
def test_killed_run_resumes_to_identical_parameters(tmp_path, spec):
    kw = dict(
        steps=12,
        spec=spec,
        eval_splits=(),
        overrides={
            **TINY,
            "train.checkpoint_every": 4,
            "train.log_every": 2,
            "train.batch_size": 8,
            "train.bucket_seconds": (2.5, 4.5),
        },
    )
    train.train("ci", "data_small", None, tmp_path / "full", **kw)
    # "killed" after 7 steps: the last checkpoint is step 4; steps 5-7 are lost and redone
    train.train("ci", "data_small", None, tmp_path / "cut", stop_after=7, **kw)
    ckpts = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())
    assert "4" in ckpts and "8" not in ckpts
    train.train("ci", "data_small", None, tmp_path / "cut", **kw)
    for a, b in zip(_final_params(tmp_path / "full"), _final_params(tmp_path / "cut")):
        np.testing.assert_array_equal(a, b)
    masks_a = jax.tree.leaves(runs.load_params(tmp_path / "full" / "masks"))
    masks_b = jax.tree.leaves(runs.load_params(tmp_path / "cut" / "masks"))
    for a, b in zip(masks_a, masks_b):
        np.testing.assert_array_equal(a, b)


def test_relaunch_of_a_finished_run_reports_its_final_record(tmp_path):
    """Started again with the same --out after it finished, a run trains and evaluates
    nothing and returns the original final record (not one with "final_loss": null)."""
    kw = dict(
        steps=3,
        eval_splits=("dev",),
        overrides={
            **TINY,
            "train.checkpoint_every": 0,
            "train.log_every": 2,
            "train.batch_size": 8,
        },
    )
    out = tmp_path / "r"
    first = train.train("ci", "data_small", None, out, **kw)
    assert first["final_loss"] is not None and first["step"] == 3
    assert first["train"] == {"utterances": 600, "skipped": 0}
    assert first["dev"]["utterances"] == 100 and first["dev"]["skipped"] == 0
    metrics = (out / "metrics.jsonl").read_text()
    again = train.train("ci", "data_small", None, out, **kw)
    assert again == first
    assert (out / "metrics.jsonl").read_text() == metrics, "nothing new is logged"
    assert runs.read_metrics(out)[1] == first
    # killed after the last checkpoint but before its final record: the loss logged at
    # the last step is the final loss, not null
    lines = metrics.splitlines(keepends=True)
    (out / "metrics.jsonl").write_text("".join(l for l in lines if '"final"' not in l))
    third = train.train("ci", "data_small", None, out, **{**kw, "eval_splits": ()})
    assert third["final_loss"] == first["final_loss"] and third["step"] == 3


def test_resume_refuses_a_different_run(tmp_path):
    kw = dict(
        steps=2,
        eval_splits=(),
        overrides={**TINY, "train.checkpoint_every": 2, "train.batch_size": 8},
    )
    train.train("ci", "data_small", None, tmp_path / "r", **kw)
    with pytest.raises(ValueError, match="spec"):
        train.train("ci", "data_small", None, tmp_path / "r", spec="int4", **kw)
    with pytest.raises(ValueError, match="peak_lr"):
        train.train(
            "ci",
            "data_small",
            None,
            tmp_path / "r",
            **{**kw, "overrides": {**kw["overrides"], "train.peak_lr": 1e-4}},
        )
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["model_config"]["model_dim"] == 32 and saved["train_config"]["batch_size"] == 8
    assert "model.model_dim=32" in saved["overrides"], "the resolved config is recorded"


def test_non_finite_updates_are_skipped_and_counted(small_train, tokenizer):
    """optax.apply_if_finite leaves parameters and inner state untouched on a bad batch
    and counts it in the optimizer state (which the checkpoint saves)."""
    cfg = configs.CI.replace(**TINY_CFG, vocab_size=tokenizer.vocab_size)
    split = CorpusSplit("one", small_train.utterances[:2], [], 16000)
    ds = batching.prepare(split, tokenizer, cfg, (4.5,))
    tcfg = configs.TrainConfig(batch_size=2, bucket_seconds=(4.5,), max_nonfinite=3)
    tr = train.Trainer(cfg, "2:4", tcfg)
    params = tr.init_params(0)
    state = tr.setup_optimizer(params)
    batch, _ = next(batching.eval_batches(ds, 2))
    bad = batch._replace(waveforms=np.full_like(batch.waveforms, np.nan))
    before = jax.tree.map(np.asarray, params)
    params, state, loss, applied = tr.step(params, state, bad, jax.random.key(0), 0)
    assert not bool(applied) and not np.isfinite(float(loss))
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    assert int(state.total_notfinite) == 1
    params, state, loss, applied = tr.step(params, state, batch, jax.random.key(0), 1)
    assert bool(applied) and int(state.notfinite_count) == 0 and int(state.total_notfinite) == 1


def test_unknown_preset_is_refused_with_the_list(capsys):
    assert cli.main(["train", "--preset", "no_such", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "no_such" in err and all(n in err for n in ("ci", "cpu", "small", "usm_2b"))


def test_cli_set_is_validated_before_any_work(tmp_path, capsys):
    for bad, says in (
        ("train.peak_lr=fast", "train.peak_lr"),
        ("train.nope=1", "nope"),
        ("model.num_heads=5", "num_heads"),
        ("steps=3", "train.FIELD"),
    ):
        assert (
            cli.main(["train", "--preset", "ci", "--out", str(tmp_path / "x"), "--set", bad]) == 2
        )
        assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists(), "nothing is written for a refused setting"


def test_cli_train_eval_transcribe(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--preset",
                "ci",
                "--corpus",
                "data_small",
                "--out",
                str(out),
                "--steps",
                "3",
                "--set",
                "train.batch_size=8",
            ]
        )
        == 0
    )
    assert (out / "params").exists() and (out / "tokenizer" / "tokenizer.model").exists()
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["final"]["step"] == 3
    capsys.readouterr()
    assert (
        cli.main(
            [
                "eval",
                "--checkpoint",
                str(out),
                "--corpus",
                "data_small",
                "--split",
                "test",
                "--spec",
                "int4",
            ]
        )
        == 0
    )
    assert "test: WER" in capsys.readouterr().out
    wav = sorted(Path("data_small/test").rglob("*.flac"))[0]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....")
    assert cli.main(["transcribe", "--checkpoint", str(out), str(wav), str(bad)]) == 3
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith(f"{wav}\t") and lines[1].startswith(f"{bad}\t<error:")
    assert captured.err.strip().splitlines()[-1] == "usmlite-edu: 1 of 2 files failed"
    assert cli.main(["transcribe", "--checkpoint", str(out), str(wav)]) == 0
    assert (
        cli.main(["train", "--preset", "ci", "--out", str(tmp_path / "x"), "--spec", "int2/g7"])
        == 2
    )
