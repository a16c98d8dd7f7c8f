"""The forward-only Recognizer (usmlite_edu.deploy.recognizer): loads from a run directory
and from a packed file with the same transcripts, evaluates as a direct forward pass +
greedy decoding + WER scores, exports the bytes `usmlite-edu export` writes, refuses bad
requests in one line; deploy never imports training; the shared checkpoint helper and
the one bit packer."""

import dataclasses
import json
import struct
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from usmlite_edu.core import quant
from usmlite_edu.deploy import export
from usmlite_edu.deploy.recognizer import Recognizer
from usmlite_edu.speech import batching, configs, frontend, model, runs
from usmlite_edu.speech.audio import load_audio
from usmlite_edu.speech.corpora import load_corpus
from usmlite_edu.speech.decoding import greedy_decode, wer_cer
from usmlite_edu.speech.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[1]
TOK = Tokenizer.load(REPO / "results" / "cpu" / "b0" / "tokenizer")
CFG = configs.CI.replace(
    model_dim=36,
    num_heads=2,
    num_layers=1,
    subsample_channels=(4, 6),
    vocab_size=TOK.vocab_size,
    sample_rate=8000,
)
TCFG = configs.TrainConfig(bucket_seconds=(2.0, 6.0), eval_batch_size=8)
WAVS = sorted((REPO / "data_small" / "fsdd_sample").glob("*/*/*.flac"))[:4]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run directory as `usmlite-edu train` leaves it (fresh weights, no training)."""
    path = tmp_path_factory.mktemp("recognizer") / "run"
    path.mkdir()
    runs.save_params(path / "params", model.init_params(CFG, seed=1))
    TOK.save(path / "tokenizer")
    runs.write_json(
        path / "config.json",
        {
            "model_config": dataclasses.asdict(CFG),
            "train_config": dataclasses.asdict(TCFG),
            "spec": "float",
        },
    )
    return path


def _header_and_data(path: Path) -> tuple[dict, bytes]:
    # safetensors writes the metadata map in a per-process order: compare it as JSON
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def test_deploy_never_imports_training():
    code = (
        "import sys, usmlite_edu.deploy.transcribe, usmlite_edu.deploy.export, "
        "usmlite_edu.deploy.infer, usmlite_edu.deploy.recognizer\n"
        "print(sorted(m for m in sys.modules if m.startswith('usmlite_edu.training')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("spec", ["float", "int8"])
def test_run_and_packed_file_give_the_same_logits_and_transcripts(run_dir, tmp_path, spec):
    """float packs the weights as they are; int8's file holds the integers the checkpoint's
    forward computes with (Eq. 1): both paths run the same numbers."""
    from_run = Recognizer.from_run(run_dir, spec)
    info = from_run.export(tmp_path / "m.safetensors")
    from_file = Recognizer.from_packed(info.path)
    assert from_file.spec == from_run.spec and from_file.config == from_run.config
    audio = [load_audio(w, CFG.sample_rate) for w in WAVS]
    assert [from_file.transcribe(a) for a in audio] == [from_run.transcribe(a) for a in audio]
    wav = np.zeros((1, 16000), np.float32)
    wav[0, : audio[0].size] = audio[0][:16000]
    lengths = np.array([min(audio[0].size, 16000)], np.int32)
    a, _ = from_run.logits(wav, lengths)
    b, _ = from_file.logits(wav, lengths)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_evaluate_is_the_forward_pass_decoded_and_scored(run_dir):
    """The result dict of `eval` (same keys as ever) and its numbers, recomputed here from
    the model's forward pass, greedy decoding and WER/CER directly."""
    rec = Recognizer.from_run(run_dir)
    split = load_corpus(
        "fsdd_sample", REPO / "data_small" / "fsdd_sample", "test", sample_rate=CFG.sample_rate
    )
    ds = batching.prepare(split, TOK, CFG, TCFG.bucket_seconds, keep_long=True)
    got = rec.evaluate(ds)
    assert set(got) == {"wer", "cer", "utterances", "skipped", "transcripts", "examples"}
    assert got["utterances"] == len(ds.examples) and got["skipped"] == len(ds.skipped)

    mel = frontend.LogMelConfig.from_model(CFG)
    graphdef = model.model_graph(CFG)

    @jax.jit
    def logits(params, wav, n):
        feats, mask = frontend.log_mel(wav, n, mel)
        return model.forward(graphdef, params, frontend.normalize(feats, mask), mask)

    refs, hyps = [], []
    for batch, idx in batching.eval_batches(ds, TCFG.eval_batch_size):
        lg, om = logits(rec.params, jnp.asarray(batch.waveforms), jnp.asarray(batch.lengths))
        ids = greedy_decode(np.asarray(lg), np.asarray(om))
        for row, i in enumerate(idx):
            refs.append(TOK.normalize(ds.examples[i].text))
            hyps.append(TOK.decode(ids[row]))
    assert [t["hyp"] for t in got["transcripts"]] == hyps
    assert [t["ref"] for t in got["transcripts"]] == refs
    assert (got["wer"], got["cer"]) == wer_cer(refs, hyps)


def test_export_from_a_recognizer_is_the_cli_export(run_dir, tmp_path):
    a = Recognizer.from_run(run_dir, "int4+2:4").export(tmp_path / "a.safetensors")
    b = export.write_packed(run_dir, "int4+2:4", tmp_path / "b.safetensors")
    assert a.file_bytes == b.file_bytes
    assert _header_and_data(a.path) == _header_and_data(b.path)


def test_bad_requests_are_refused_in_one_line(run_dir, tmp_path):
    path = Recognizer.from_run(run_dir, "int4").export(tmp_path / "m.safetensors").path
    with pytest.raises(ValueError, match=r"compressed with int4; it cannot run under --spec int8"):
        Recognizer.from_packed(path, "int8")
    with pytest.raises(ValueError, match="already integers"):
        Recognizer.from_packed(path).export(tmp_path / "again.safetensors")
    with pytest.raises(ValueError, match="--arith 'int3'"):
        Recognizer.from_run(run_dir, arith="int3")
    with pytest.raises(ValueError, match="give a run directory"):
        Recognizer.open(run_dir, path)
    with pytest.raises(ValueError, match="no tokenizer"):
        Recognizer(Recognizer.from_run(run_dir).forward, {}).evaluate(None)


def test_checkpoint_helper_round_trips_and_says_when_there_is_none(tmp_path):
    mngr = runs.checkpoint_manager(tmp_path)
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": np.asarray(3, np.int64)}
    assert runs.restore_latest(mngr, state) is None
    runs.save_checkpoint(mngr, 3, state)
    runs.save_checkpoint(mngr, 5, {"w": state["w"] + 1, "step": np.asarray(5, np.int64)})
    step, got = runs.restore_latest(runs.checkpoint_manager(tmp_path), state)
    assert step == 5 and int(got["step"]) == 5
    np.testing.assert_array_equal(np.asarray(got["w"]), np.arange(6.0).reshape(2, 3) + 1)


def test_int4_kernels_are_packed_by_the_one_bit_packer():
    q = np.random.default_rng(0).integers(-8, 8, (7, 3)).astype(np.int8)
    packed = quant.pack_int4(q)
    # column by column, rows 2k and 2k+1 side by side: pack_bits' stream at 4 bits
    padded = np.concatenate([q, np.zeros((1, 3), np.int8)])
    stream = quant.to_codes(padded, 4).reshape(4, 2, 3).transpose(0, 2, 1)
    assert np.array_equal(packed.ravel(), quant.pack_bits(stream, 4))
    assert export.pack_bits is quant.pack_bits
    np.testing.assert_array_equal(np.asarray(quant.unpack_int4(jnp.asarray(packed), 7)), q)
