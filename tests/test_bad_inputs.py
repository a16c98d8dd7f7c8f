"""Every failure is loud (issue 17): each kind of bad input in ``bad_input_cases.CASES``
gets what the table of docs/bad-inputs.md says, and fuzzed audio, headers and specs never crash."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from bad_input_cases import CASES, GOOD_FLAC, REPO, render_table, wav_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_model import TINY, TINY_CFG

from usmlite_edu import cli
from usmlite_edu.core.specs import CompressionSpec, as_spec
from usmlite_edu.speech import batching, configs, frontend, runs
from usmlite_edu.speech.audio import AudioError, load_audio, min_samples
from usmlite_edu.speech.corpora import CorpusSplit, Utterance, load_corpus, load_librispeech
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training import train

pytestmark = pytest.mark.xdist_group("train")  # the tiny run shares the compile cache

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cases(*groups):
    return [pytest.param(c, id=c.kind) for c in CASES if c.group in groups]


# --------------------------------------------------------------------------- the table
def test_docs_table_is_the_rendered_cases():
    page = (REPO / "docs" / "bad-inputs.md").read_text()
    start, end = "<!-- bad-inputs:start -->\n", "<!-- bad-inputs:end -->"
    assert start in page and end in page, "docs/bad-inputs.md lost its bad-inputs markers"
    block = page.split(start, 1)[1].split(end, 1)[0]
    assert block == render_table(), (
        "docs/bad-inputs.md's bad-input table differs from tests/bad_input_cases.py: "
        "run `python scripts/bad_inputs_table.py`"
    )


def test_table_lists_at_least_fifteen_kinds_each_checked_here():
    assert len(CASES) >= 15 and len({c.kind for c in CASES}) == len(CASES)
    checked = {"file", "file_ok", "corpus", "batch", "cli", "step", "share", "out", "output"}
    checked.add("eval_output")  # test_eval_decodes_a_long_utterance_in_windows_as_transcribe_does
    checked.add("fetch")  # tests/test_fetch.py: test_fetch_cases_are_tested_in_test_fetch
    assert {c.group for c in CASES} <= checked


def test_fetch_cases_are_tested_in_test_fetch():
    """Every ``data fetch`` row's message is a string a test of tests/test_fetch.py
    matches (``match=`` or ``in err``), and a fetch refusal exits 2 there."""
    source = (REPO / "tests" / "test_fetch.py").read_text()
    for c in (c for c in CASES if c.group == "fetch"):
        assert f'"{c.message}"' in source, f"no test in test_fetch.py matches {c.message!r}"
        assert c.exit_code == "2"
    assert "cli.main(argv) == 2" in source


def test_table_script_check_and_out(tmp_path):
    out = tmp_path / "bad-inputs.md"
    out.write_text("# x\n\n<!-- bad-inputs:start -->\nold\n<!-- bad-inputs:end -->\n\nrest\n")
    script = [sys.executable, str(REPO / "scripts" / "bad_inputs_table.py")]
    r = subprocess.run([*script, "--page", str(out), "--check"], capture_output=True, text=True)
    assert r.returncode == 1 and "bad_inputs_table.py" in r.stderr
    r = subprocess.run([*script, "--page", str(out), "--out", str(out)], capture_output=True)
    assert r.returncode == 0
    text = out.read_text()
    assert render_table() in text and text.endswith("<!-- bad-inputs:end -->\n\nrest\n")
    r = subprocess.run([*script, "--page", str(out), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------ audio files
@pytest.mark.parametrize("case", _cases("file", "file_ok"))
def test_audio_file_cases(tmp_path, case, caplog):
    path = tmp_path / f"bad_{CASES.index(case)}.wav"
    case.make(path)
    if case.group == "file":
        with pytest.raises(AudioError) as info:
            load_audio(path, 16000, model=configs.CI)
        assert case.message in str(info.value) and str(path) in str(info.value)
    else:
        with caplog.at_level("WARNING", logger="usmlite_edu.speech.audio"):
            x = load_audio(path, 16000, model=configs.CI)
        assert x.dtype == np.float32 and x.ndim == 1 and np.all(np.isfinite(x))
        assert case.message in caplog.text and (not case.message or str(path) in caplog.text)


def test_min_samples_is_one_ctc_frame_per_preset():
    for cfg in (configs.CI, configs.CPU, configs.SMALL):
        mel = frontend.LogMelConfig.from_model(cfg)
        for k in (1, 2, 7):
            n = min_samples(cfg, k)
            got = [
                int(frontend.subsampled_lengths(frontend.num_frames(m, mel))) for m in (n, n - 1)
            ]
            assert got[0] >= k > got[1], (cfg.name, k)
    assert min_samples(configs.CPU) == 256 and min_samples(configs.CI) == 512


# ----------------------------------------------------------------------------- corpora
def _chapter(root: Path) -> tuple[Path, list[str]]:
    src = GOOD_FLAC.parent
    chapter = root / "3001" / "10"
    chapter.mkdir(parents=True)
    lines = (src / "3001-10.trans.txt").read_text().splitlines()[:3]
    for line in lines:
        uid = line.split()[0]
        shutil.copy(src / f"{uid}.flac", chapter / f"{uid}.flac")
    return chapter, lines


@pytest.mark.parametrize("case", _cases("corpus"))
def test_corpus_cases_are_skipped_with_the_reason(tmp_path, case):
    chapter, lines = _chapter(tmp_path)
    lines = case.make(chapter, lines)
    (chapter / "3001-10.trans.txt").write_text("\n".join(lines) + "\n")
    split = load_librispeech(tmp_path)
    assert len(split.utterances) == 3 and len(split.skipped) == 1
    assert case.message in split.skipped[0][1]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [u.text for u in load_corpus("data_small", None, "train", sample_rate=16000)]
    return Tokenizer.train(texts, 48, None, seed=0)


@pytest.mark.parametrize("case", _cases("batch"))
def test_batch_cases_are_skipped_with_the_reason(case, tokenizer):
    good = load_audio(GOOD_FLAC, 16000)
    uid, text, audio = case.make(good)
    utts = [Utterance("good", "zero four", "s", audio=good), Utterance(uid, text, "s", audio=audio)]
    cfg = configs.CI.replace(vocab_size=tokenizer.vocab_size)
    ds = batching.prepare(CorpusSplit("bad", utts, [], 16000), tokenizer, cfg, (4.5,))
    assert [e.uid for e in ds.examples] == ["good"]
    assert case.message in dict(ds.skipped)[uid]


# -------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize("case", _cases("cli"))
def test_cli_cases_are_refused_with_one_line(tmp_path, case, capsys):
    assert cli.main(case.make(tmp_path)) == cli.EXIT_REFUSED == int(case.exit_code)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and case.message in err[0]
    assert not (tmp_path / "x" / "config.json").exists()  # refused before anything is written


@pytest.mark.parametrize("case", _cases("out"))
def test_unwritable_outputs_are_refused_before_the_work(tmp_path, case, capsys, monkeypatch):
    """A read-only folder: real permission bits for a user, and for root (whom they do
    not stop) a probe that fails as a read-only mount would."""
    from bad_input_cases import RO

    from usmlite_edu.cli import common
    from usmlite_edu.deploy import export

    ro = tmp_path / RO
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:
        real = common.tempfile.TemporaryFile

        def probe(*a, dir=None, **k):
            if Path(dir) == ro:
                raise PermissionError(13, "Permission denied")
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(common.tempfile, "TemporaryFile", probe)

    def no_work(*a, **k):
        raise AssertionError("the work started before the output was checked")

    for mod, name in ((train, "train"), (train, "evaluate_run"), (export, "write_packed")):
        monkeypatch.setattr(mod, name, no_work)
    try:
        assert cli.main(case.make(tmp_path)) == cli.EXIT_REFUSED == int(case.exit_code)
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and case.message in err[0] and str(ro) in err[0], err
    assert "Permission denied" in err[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "run"
    overrides = {**TINY, "train.batch_size": 8, "train.checkpoint_every": 0}
    train.train("ci", "data_small", None, out, steps=1, eval_splits=(), overrides=overrides)
    return out


def test_transcribe_exits_3_and_counts_the_failed_files(tmp_path, tiny_run, capsys):
    bad = []
    for i, case in enumerate(c for c in CASES if c.group == "file"):
        path = tmp_path / f"bad_{i}.wav"
        case.make(path)
        bad.append((path, case))
    ok = []
    for i, case in enumerate(c for c in CASES if c.group == "file_ok"):
        path = tmp_path / f"ok_{i}.wav"
        case.make(path)
        ok.append(path)
    files = [str(GOOD_FLAC), *map(str, ok), *(str(p) for p, _ in bad)]
    capsys.readouterr()
    assert cli.main(["transcribe", "--checkpoint", str(tiny_run), *files]) == 3
    out, err = capsys.readouterr()
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    for path, case in bad:
        assert lines[str(path)].startswith("<error: ") and case.message in lines[str(path)]
    assert not any(lines[f].startswith("<error") for f in files[: 1 + len(ok)])
    assert err.strip().splitlines()[-1] == f"usmlite-edu: {len(bad)} of {len(files)} files failed"
    # all good: 0, and nothing on stderr
    good = [str(GOOD_FLAC), *map(str, ok)]
    assert cli.main(["transcribe", "--checkpoint", str(tiny_run), *good]) == 0
    assert "failed" not in capsys.readouterr().err


def test_transcribe_escapes_tabs_and_newlines_in_names(tmp_path, tiny_run, capsys):
    names = ["tab\there.flac", "new\nline.flac", "back\\slash.flac"]
    for name in names:
        shutil.copy(GOOD_FLAC, tmp_path / name)
    files = [str(tmp_path / n) for n in names]
    capsys.readouterr()
    assert cli.main(["transcribe", "--checkpoint", str(tiny_run), *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.count("\t") == 1 for line in lines)
    want = [f.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") for f in files]
    assert [line.split("\t")[0] for line in lines] == want


def test_transcribe_into_a_closed_pipe_exits_quietly(tmp_path, tiny_run):
    """`transcribe ... | head -1`: the reader goes away after one line; no traceback."""
    shutil.copy(GOOD_FLAC, tmp_path / "a.flac")
    long = str(tmp_path / ("./" * 500) / "a.flac")  # 1 kB a line: more than a pipe holds
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "usmlite_edu", "transcribe", "--checkpoint", str(tiny_run)]
    proc = subprocess.Popen(
        [*argv, *[long] * 200], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert first.endswith(b"\n") and b"\t" in first
    assert "Traceback" not in err and "BrokenPipe" not in err, err


_RSS = (
    "import resource, sys\n"
    "from usmlite_edu.deploy.recognizer import Recognizer\n"
    "from usmlite_edu.speech.audio import load_audio\n"
    "rec = Recognizer.open(sys.argv[1])\n"
    "def peak():\n"
    "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
    "rec.transcribe(load_audio(sys.argv[2], rec.config.sample_rate))\n"
    "base = peak()\n"
    "rec.transcribe(load_audio(sys.argv[3], rec.config.sample_rate))\n"
    "print(peak() - base)\n"
)


def test_long_audio_is_transcribed_in_bounded_memory(tmp_path, tiny_run):
    """Four minutes of 8 kHz noise after 30 s: the peak RSS grows by the audio's own
    bytes at most (one pass over all of it grew by 168 MB at 3 min, quadratically)."""
    rng = np.random.default_rng(0)
    for name, seconds in (("short.wav", 30), ("long.wav", 240)):
        noise = (0.1 * rng.standard_normal(8000 * seconds)).astype(np.float32)
        sf.write(tmp_path / name, noise, 8000)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [
        sys.executable,
        "-c",
        _RSS,
        str(tiny_run),
        *(str(tmp_path / n) for n in ("short.wav", "long.wav")),
    ]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    growth = int(r.stdout.split()[-1])
    # 240 s at the model's 16 kHz: 15 MB of float32 samples, read and resampled
    assert growth < 64 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MB"


def test_long_form_stitching_takes_every_frame_once(tiny_run, monkeypatch):
    """The windows' kept frames tile the whole utterance: with a fake model whose output
    frame k "says" its global index k, the stitched sequence is 1, 2, ..., T-1 (0 is the
    blank), T the frames of one pass over all of it."""
    from usmlite_edu.deploy.recognizer import Recognizer

    rec = Recognizer.open(tiny_run)
    step = 4 * rec.forward.mel.hop_length

    def fake(chunk, n):
        first = int(chunk[0]) // step  # the samples are their own indices
        t = int(frontend.subsampled_lengths(frontend.num_frames(chunk.size, rec.forward.mel)))
        return np.arange(first, first + t)

    monkeypatch.setattr(rec, "_window_argmax", fake)
    width = int(rec.train_config.bucket_seconds[-1] * rec.config.sample_rate)
    for n in (width + 1, width + step, 3 * width + 1234, 10 * width + 7):
        total = int(frontend.subsampled_lengths(frontend.num_frames(n, rec.forward.mel)))
        assert rec.long_form_ids(np.arange(n, dtype=np.float64)) == list(range(1, total)), n


def test_eval_decodes_a_long_utterance_in_windows_as_transcribe_does(tiny_run, monkeypatch):
    """An evaluation set with a 40 s utterance (the ci model's largest bucket is 3 s):
    no forward pass is wider than that bucket, the long utterance gets transcribe's
    hypothesis, and the short ones are decoded as without it."""
    import dataclasses
    import math

    from usmlite_edu.deploy.recognizer import Recognizer

    rec = Recognizer.open(tiny_run)
    sr, tok = rec.config.sample_rate, rec.tokenizer
    split = load_corpus("data_small", None, "test", seed=0, sample_rate=sr)
    split = CorpusSplit("test", split.utterances[:6], [], sr)
    ds = batching.prepare(split, tok, rec.config, rec.train_config.bucket_seconds, keep_long=True)
    audio = np.concatenate([e.audio for e in ds.examples] * 8)[: 40 * sr]
    text = " ".join(e.text for e in ds.examples)
    longest = int(max(rec.train_config.bucket_seconds) * sr)
    assert audio.size > 13 * longest
    long_ex = batching.Example("long", text, audio, np.asarray(tok.encode(text), np.int32), 1)
    with_long = dataclasses.replace(
        ds,
        examples=[*ds.examples, long_ex],
        bucket_samples=(*ds.bucket_samples, math.ceil(audio.size / sr) * sr),
        label_lengths=(*ds.label_lengths, 8 * math.ceil(len(long_ex.tokens) / 8)),
    )
    widths = []
    logits, batch_ids = rec.logits, rec.transcribe_batch

    def seen_logits(w, n):
        widths.append(np.shape(w)[1])
        return logits(w, n)

    def seen_batch(b):
        widths.append(b.waveforms.shape[1])
        return batch_ids(b)

    monkeypatch.setattr(rec, "logits", seen_logits)
    monkeypatch.setattr(rec, "transcribe_batch", seen_batch)
    r = rec.evaluate(with_long)
    assert max(widths) <= longest and widths.count(longest) >= 10
    got = {t["id"]: t["hyp"] for t in r["transcripts"]}
    assert r["utterances"] == len(ds.examples) + 1
    assert got["long"] == rec.transcribe(audio)
    short = {t["id"]: t["hyp"] for t in rec.evaluate(ds)["transcripts"]}
    assert {k: v for k, v in got.items() if k != "long"} == short


def test_eval_exits_3_when_an_utterance_is_skipped(tmp_path, tiny_run, capsys):
    chapter, lines = _chapter(tmp_path / "data" / "test")
    (chapter / "3001-10.trans.txt").write_text("\n".join(lines) + "\n")
    argv = ["eval", "--checkpoint", str(tiny_run), "--data", str(tmp_path / "data")]
    assert cli.main(argv) == 0
    capsys.readouterr()
    lines = [c for c in CASES if c.kind.startswith("truncated WAV")][0].make(chapter, lines)
    (chapter / "3001-10.trans.txt").write_text("\n".join(lines) + "\n")
    assert cli.main(argv) == cli.EXIT_INPUTS_FAILED
    out, err = capsys.readouterr()
    assert "(3 utterances, 1 skipped" in out
    assert err.strip().splitlines()[-1].startswith("usmlite-edu: 1 of 4 utterances of test failed")


def test_train_and_reproduce_exit_4_above_the_skip_share(tmp_path, monkeypatch, capsys):
    case = [c for c in CASES if c.group == "share"][0]
    result = {"step": 3, "train": {"utterances": 17, "skipped": 3}}
    result["test"] = {"wer": 1.0, "cer": 1.0, "utterances": 100, "skipped": 5}  # 4.8%: fine
    monkeypatch.setattr(train, "train", lambda *a, **k: result)
    assert cli.main(["train", "--out", str(tmp_path / "r")]) == cli.EXIT_TOO_MANY_SKIPPED == 4
    err = capsys.readouterr().err
    assert f"train: {case.message}" in err and "test:" not in err
    result["train"]["skipped"] = 0
    assert cli.main(["train", "--out", str(tmp_path / "r")]) == 0
    assert train.MAX_SKIP_SHARE == 0.05

    from usmlite_edu.training import reproduce

    out = tmp_path / "repro"
    (out / "runs" / "W0-s0").mkdir(parents=True)
    final = {"final": {"step": 3, "train": {"utterances": 17, "skipped": 3}}}
    (out / "runs" / "W0-s0" / "metrics.jsonl").write_text(json.dumps(final) + "\n")
    rec = {"seed": 0, "heldout_speaker": "theo", "results": {}}
    rec["results"]["test"] = {"wer": 1.0, "n_utterances": 90, "skipped": 10}

    def fake_run(p, data_dir, out_dir, only=None):
        (Path(out_dir) / "table.md").write_text("table\n")
        (Path(out_dir) / "claims.md").write_text("claims\n")
        return [rec]

    monkeypatch.setattr(reproduce, "run", fake_run)
    assert cli.main(["reproduce", "--out", str(out)]) == 4
    err = capsys.readouterr().err
    assert f"train (run W0-s0): {case.message}" in err
    assert "test (seed 0, held out theo): skipped 10 of 100 utterances (10.0% > 5%)" in err
    (out / "runs" / "W0-s0" / "metrics.jsonl").unlink()
    rec["results"]["test"]["skipped"] = 0
    assert cli.main(["reproduce", "--out", str(out)]) == 0


# --------------------------------------------------------------------- run directories
_HOLD = (
    "import sys, time\n"
    "from usmlite_edu.speech import runs\n"
    "runs.writer_lock(sys.argv[1]).__enter__()\n"
    "print('held', flush=True)\n"
    "time.sleep(120)\n"
)


def test_writer_lock_names_its_holder_and_dies_with_it(tmp_path):
    run = tmp_path / "run"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(runs.RunLocked, match=rf"{run} is being written .*PID {proc.pid}"):
            with runs.writer_lock(run):
                pass
    finally:
        proc.kill()  # SIGKILL: the holder runs no cleanup
        proc.wait()
    with runs.writer_lock(run):  # the kernel dropped the killed holder's lock
        with pytest.raises(runs.RunLocked, match=f"PID {os.getpid()}"):
            with runs.writer_lock(run):
                pass
    with runs.writer_lock(run):  # and the with block released this one
        pass


def _tiny_train(out, data_dir=None, **kw):
    overrides = {**TINY, "train.batch_size": 8, "train.checkpoint_every": 0}
    return train.train(
        "ci", "data_small", data_dir, out, steps=1, eval_splits=(), overrides=overrides, **kw
    )


def test_train_releases_its_lock_and_refuses_other_data(tiny_run):
    with runs.writer_lock(tiny_run):  # the fixture's train released it
        pass
    before = (tiny_run / "config.json").read_text()
    with pytest.raises(ValueError, match="trained on the corpus's default folder, not --data"):
        _tiny_train(tiny_run, str(REPO / "data_small"))
    assert (tiny_run / "config.json").read_text() == before  # data_dir not overwritten
    with runs.writer_lock(tiny_run):  # released after the refusal too
        pass


def test_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    good = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    text = "".join(json.dumps(r) + "\n" for r in good)
    path.write_text(text + '{"step": 3, "lo')
    with caplog.at_level("WARNING", logger="usmlite_edu.speech.runs"):
        assert runs.read_metrics(tmp_path) == (good, None)
    assert f"{path}: its last line is torn" in caplog.text
    assert path.read_text().endswith('"lo')  # read only: the file is as it was
    runs.read_metrics(tmp_path, repair=True)
    assert path.read_text() == text  # repaired: the next record starts its own line
    path.write_text('{"step": 1, "lo\n' + text)  # damage before the last line: refused
    with pytest.raises(ValueError, match=f"{path}: line 1 is not JSON"):
        runs.read_metrics(tmp_path)


def test_train_resumes_past_a_torn_metrics_line(tiny_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 1, "loss": 0.')  # killed while appending
    with caplog.at_level("WARNING", logger="usmlite_edu.speech.runs"):
        _tiny_train(run)
    assert f"{run / 'metrics.jsonl'}: its last line is torn" in caplog.text
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "final" in records[-1]


# ------------------------------------------------------------------- the training step
@pytest.fixture(scope="module")
def nan_trainer(tokenizer):
    cfg = configs.CI.replace(vocab_size=tokenizer.vocab_size)
    tcfg = configs.TrainConfig(batch_size=2, bucket_seconds=(2.5,), max_nonfinite=10_000)
    tr = train.Trainer(cfg, "float", tcfg)
    split = load_corpus("data_small", None, "test", sample_rate=16000)
    ds = batching.prepare(split, tokenizer, cfg, (2.5,))
    batch, _ = next(batching.eval_batches(ds, 2))
    return tr, jax.tree.map(np.asarray, tr.init_params(0)), batch


KEY = jax.random.key(0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_nan_waveform_skips_the_update_bit_identically(nan_trainer, data):
    """Trainer.step on a batch with NaN (or inf) samples inside an utterance: the update
    is skipped (optax.apply_if_finite), the parameters are bit-identical, it is counted.

    "Inside" is where a log-mel frame reads: the last few samples after the last whole
    frame (fewer than a hop) never reach the model, so a NaN there changes nothing.
    """
    tr, params0, batch = nan_trainer
    row = data.draw(st.integers(0, 1))
    frames = frontend.num_frames(int(batch.lengths[row]), tr.mel)
    n = (frames - 1) * tr.mel.hop_length + tr.mel.win_length  # samples the frames cover
    idx = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5))
    bad_value = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    wav = batch.waveforms.copy()
    wav[row, idx] = bad_value
    params = jax.tree.map(jnp.array, params0)  # fresh copies: the step donates its inputs
    state = tr.setup_optimizer(params)
    params, state, loss, applied = tr.step(params, state, batch._replace(waveforms=wav), KEY, 0)
    assert not bool(applied) and not np.isfinite(float(loss))
    assert int(state.total_notfinite) == 1
    for a, b in zip(jax.tree.leaves(params0), jax.tree.leaves(params)):
        assert a.dtype == b.dtype and a.tobytes() == np.asarray(b).tobytes()


def test_a_non_finite_update_from_finite_gradients_is_skipped(tokenizer):
    """peak_lr 1e300 passes the finite check but overflows float32: the gradients are
    finite, the update is not; the step is skipped and counted, parameters bit-identical
    (it turned all 82 parameter leaves NaN and the run exited 0)."""
    cfg = configs.CI.replace(vocab_size=tokenizer.vocab_size, **TINY_CFG)
    tcfg = configs.TrainConfig(batch_size=2, bucket_seconds=(2.5,), peak_lr=1e300)
    tr = train.Trainer(cfg, "float", tcfg)
    split = load_corpus("data_small", None, "test", sample_rate=16000)
    ds = batching.prepare(split, tokenizer, cfg, (2.5,))
    batch, _ = next(batching.eval_batches(ds, 2))
    params0 = jax.tree.map(np.asarray, tr.init_params(0))
    params = jax.tree.map(jnp.array, params0)
    state = tr.setup_optimizer(params)
    params, state, loss, applied = tr.step(params, state, batch, KEY, 0)
    assert np.isfinite(float(loss)) and not bool(applied)
    assert int(state.total_notfinite) == 1 and int(state.notfinite_count) == 1
    for a, b in zip(jax.tree.leaves(params0), jax.tree.leaves(params)):
        assert a.tobytes() == np.asarray(b).tobytes()


def test_nan_step_is_logged_by_the_training_loop():
    for case in (c for c in CASES if c.group == "step"):
        assert case.message in Path(train.__file__).read_text()


# --------------------------------------------------------------------- fuzzed audio
N_FEAT = 16000  # features are computed on a fixed (1, N_FEAT) buffer: one compile
_MEL = frontend.LogMelConfig.from_model(configs.CI)


@jax.jit
def _features(wav, length):
    feats, mask = frontend.log_mel(wav, length, _MEL)
    return frontend.normalize(feats, mask)


def _load_or_refuse(path: Path) -> np.ndarray | None:
    """The property: load (finite, mono, in [-1, 1], finite features) or AudioError."""
    try:
        x = load_audio(path, 16000)
    except AudioError as e:
        assert str(path) in str(e)
        return None
    assert x.dtype == np.float32 and x.ndim == 1 and x.size > 0
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0
    buf = np.zeros((1, N_FEAT), np.float32)
    n = min(x.size, N_FEAT)
    buf[0, :n] = x[:n]
    feats = np.asarray(_features(jnp.asarray(buf), jnp.asarray([n], jnp.int32)))
    assert np.all(np.isfinite(feats)), "a loaded file gave a NaN feature"
    return x


@FUZZ
@given(blob=st.binary(max_size=2000), prefix=st.sampled_from([b"", b"RIFF", b"fLaC"]))
def test_random_bytes_load_or_raise_audio_error(tmp_path_factory, blob, prefix):
    path = tmp_path_factory.mktemp("fuzz") / "x.wav"
    path.write_bytes(prefix + blob)
    _load_or_refuse(path)


@FUZZ
@given(
    n=st.integers(0, 3000),
    rate=st.integers(1000, 96000),
    channels=st.integers(1, 4),
    riff=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    data=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    cut=st.integers(0, 200),
    seed=st.integers(0, 2**16),
)
def test_wav_headers_with_wrong_sizes(tmp_path_factory, n, rate, channels, riff, data, cut, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, n * channels).astype(np.float32)
    raw = wav_bytes(x, rate, channels, riff_size=riff, data_size=data)
    path = tmp_path_factory.mktemp("fuzz") / "x.wav"
    path.write_bytes(raw[: len(raw) - cut] if cut else raw)
    y = _load_or_refuse(path)
    full = data is None or data == n * channels * 2
    if full and not cut and n > 1:  # an honest file of noise always loads
        assert y is not None and y.size == -(-n * 16000 // rate)
    if data is not None and data > len(raw) and data not in (0xFFFFFFFF,):
        assert y is None, "a data chunk larger than the file is truncation"


@FUZZ
@given(
    rate=st.integers(500, 192000),
    channels=st.integers(1, 8),
    seconds=st.floats(0.0005, 0.2),
    subtype=st.sampled_from(["PCM_16", "PCM_24", "FLOAT", "PCM_U8"]),
    fmt=st.sampled_from([".wav", ".flac"]),
    seed=st.integers(0, 2**16),
)
def test_any_rate_and_channel_count_loads(
    tmp_path_factory, rate, channels, seconds, subtype, fmt, seed
):
    if fmt == ".flac" and (subtype in ("FLOAT", "PCM_U8") or rate > 655350 or channels > 8):
        subtype = "PCM_16"
    n = max(int(rate * seconds), 2)
    x = np.random.default_rng(seed).uniform(-0.9, 0.9, (n, channels)).astype(np.float32)
    path = tmp_path_factory.mktemp("fuzz") / f"x{fmt}"
    try:
        sf.write(path, x, rate, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return  # a combination libsndfile will not write is not an input anyone has
    y = _load_or_refuse(path)
    if rate < 1000:  # audio.SAMPLE_RATE_RANGE
        assert y is None
    else:
        assert y is not None and y.size == -(-n * 16000 // rate)


# ------------------------------------------------------------------ fuzzed spec names
_PIECES = [
    "int",
    "2",
    "4",
    "8",
    "9",
    "0",
    ":",
    "/",
    "+",
    "g",
    "gs",
    "fs",
    "clip",
    "0.5",
    ".",
    "sym",
    "asym",
    "srste",
    "oneshot",
    "float",
    "clipsearch",
    "dense",
    " ",
    "x",
]


def _named(text: str, e: ValueError) -> bool:
    """Whether the message names the value: the spec as given (its repr) or as read."""
    msg = str(e).lower()
    return repr(text).lower() in msg or text.strip().lower() in msg


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=20),
        st.lists(st.sampled_from(_PIECES), max_size=8).map("".join),
    )
)
def test_spec_names_parse_back_or_are_refused_by_name(text):
    try:
        spec = as_spec(text)
    except ValueError as e:
        assert _named(text, e), f"{text!r}: {e}"
        return
    assert CompressionSpec.parse(str(spec)) == spec
    assert str(CompressionSpec.parse(str(spec))) == str(spec)


def test_spec_corner_cases():
    assert as_spec("  INT4+2:4/FS100 ") == CompressionSpec.parse("int4+2:4/fs100")
    for bad in ("", "int4+", "float/g2", "int2/g7/gs8"):
        with pytest.raises(ValueError):
            as_spec(bad)


def test_declared_frames_reads_the_data_chunk(tmp_path):
    from usmlite_edu.speech.audio import declared_frames

    raw = wav_bytes(np.zeros(100, np.float32), 8000, 2)  # 50 frames of 2 channels
    (tmp_path / "a.wav").write_bytes(raw)
    assert declared_frames(tmp_path / "a.wav") == 50
    (tmp_path / "s.wav").write_bytes(wav_bytes(np.zeros(50), 8000, data_size=0xFFFFFFFF))
    assert declared_frames(tmp_path / "s.wav") is None  # streamed: unknown length
    assert declared_frames(GOOD_FLAC) is None
    assert struct.unpack("<I", raw[40:44])[0] == 200
