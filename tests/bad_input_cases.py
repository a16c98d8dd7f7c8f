"""Every kind of bad input the project is tested with, and what each one gets.

One list, :data:`CASES`, read by ``tests/test_bad_inputs.py`` (which checks every case:
the message excerpt, skipped or refused, the exit code) and by
``scripts/bad_inputs_table.py`` (which renders it as the table of ``docs/bad-inputs.md``). Only numpy and
soundfile here, so the script renders the table without importing JAX.

Groups, and the test that checks them:

* ``file``: an audio file; :func:`usmlite_edu.speech.audio.load_audio` raises ``AudioError`` with
  the message; ``transcribe`` prints ``<error: ...>`` and exits 3; in a corpus it is
  skipped and ``eval`` exits 3.
* ``file_ok``: unusual but usable audio, loaded (the clipped one with a warning).
* ``corpus``: a LibriSpeech-layout transcript problem, skipped by the corpus loader.
* ``batch``: an utterance that cannot train, skipped by ``batching.prepare``.
* ``cli``: a command line refused with one line on stderr, exit 2.
* ``step``: a training batch with a NaN waveform: the update is skipped.
* ``out``: an output location in a folder that cannot be written (``RO``, made read-only
  by the test): refused with one line before the work, exit 2.
* ``output``: what ``transcribe`` does with odd file names, a closed pipe and long audio
  (``test_transcribe_escapes_tabs_and_newlines_in_names``,
  ``test_transcribe_into_a_closed_pipe_exits_quietly``,
  ``test_long_audio_is_transcribed_in_bounded_memory``).
* ``share``: a split that lost more than 5% of its utterances: ``train``/``reproduce`` exit 4.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
#: one real utterance of data_small (16 kHz FLAC), the good file next to the bad ones
GOOD_FLAC = REPO / "data_small" / "test" / "3001" / "10" / "3001-10-0000.flac"

EXIT_FILE = "3 (`transcribe`, `eval`)"
EXIT_SKIP = "3 (`eval`); `train`: 0, or 4 above 5% of a split"


@dataclass(frozen=True)
class Case:
    """One kind of bad input.

    ``make`` builds it: for ``file`` cases ``make(path)`` writes the file; for ``corpus``
    cases ``make(chapter_dir, trans_lines)`` edits a chapter and returns the transcript
    lines; for ``batch`` cases ``make(good_audio)`` returns ``(uid, text, audio)``; for
    ``cli`` cases ``make(tmp_dir)`` returns the argv. ``message`` must appear in what the
    user is told.
    """

    kind: str
    group: str
    outcome: str
    message: str
    exit_code: str
    make: Callable | None = None
    where: str = ""


def _sine(n: int, sr: int = 8000, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * 300 * np.arange(n) / sr)).astype(np.float32)


def wav_bytes(
    samples: np.ndarray,
    rate: int,
    channels: int = 1,
    *,
    riff_size: int | None = None,
    data_size: int | None = None,
) -> bytes:
    """A 16-bit PCM WAV, with the RIFF and ``data`` sizes overridable (to lie)."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    body += b"data" + struct.pack("<I", len(pcm) if data_size is None else data_size) + pcm
    size = len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size) + body


# ----------------------------------------------------------------------- file makers
def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _garbage(p: Path) -> None:
    p.write_bytes(b"this is not audio, just text with a .wav name\n" * 10)


def _no_samples(p: Path) -> None:
    p.write_bytes(wav_bytes(np.zeros(0, np.float32), 8000))


def _truncated_wav(p: Path) -> None:
    p.write_bytes(wav_bytes(_sine(8000), 8000)[:100])  # header + 28 samples of 8000


def _truncated_flac(p: Path) -> None:
    x = _sine(16000, 16000) + 0.01 * np.random.default_rng(0).normal(size=16000)
    sf.write(p.with_suffix(".tmp.flac"), x.astype(np.float32), 16000)
    data = p.with_suffix(".tmp.flac").read_bytes()
    p.with_suffix(".tmp.flac").unlink()
    p.write_bytes(data[: len(data) // 2])


def _nan(p: Path) -> None:
    x = _sine(8000)
    x[100:200] = np.nan
    sf.write(p, x, 8000, subtype="FLOAT")


def _silence(p: Path) -> None:
    sf.write(p, np.zeros(8000, np.float32), 8000)


def _stuck(p: Path) -> None:
    sf.write(p, np.ones(8000, np.float32), 8000)


def _dc(p: Path) -> None:
    sf.write(p, np.full(8000, 0.25, np.float32), 8000)


def _too_short(p: Path) -> None:
    sf.write(p, _sine(80), 8000)  # 10 ms: less than one 32 ms window


def _missing(p: Path) -> None:
    p.unlink(missing_ok=True)


def _folder(p: Path) -> None:
    p.mkdir()


def _symlink_loop(p: Path) -> None:
    p.symlink_to(p.name)  # a link to itself: resolving it loops


def _stereo_44k(p: Path) -> None:
    x = _sine(44100, 44100)
    sf.write(p, np.stack([x, 0.5 * x], 1), 44100)


def _clipped(p: Path) -> None:
    sf.write(p, np.clip(4 * _sine(8000), -1, 1), 8000)  # most peaks flattened


def _good(p: Path) -> None:
    shutil.copy(GOOD_FLAC, p)


# --------------------------------------------------------------------- corpus makers
def _empty_text(chapter: Path, lines: list[str]) -> list[str]:
    _good(chapter / "9-9-0001.flac")
    return [*lines, "9-9-0001"]


def _missing_audio(chapter: Path, lines: list[str]) -> list[str]:
    return [*lines, "9-9-0002 ONE TWO"]


def _duplicate(chapter: Path, lines: list[str]) -> list[str]:
    return [*lines, lines[0].split()[0] + " THREE"]


def _audio_without_line(chapter: Path, lines: list[str]) -> list[str]:
    shutil.copy(GOOD_FLAC, chapter / "3001-10-0099.flac")  # no line names it
    return lines


def _other_script(chapter: Path, lines: list[str]) -> list[str]:
    shutil.copy(GOOD_FLAC, chapter / "3001-10-0098.flac")
    return [*lines, "3001-10-0098 \u65e5\u672c\u8a9e \u00c7A VA? 123"]


def _truncated_in_corpus(chapter: Path, lines: list[str]) -> list[str]:
    _truncated_wav(chapter / "9-9-0003.wav")
    return [*lines, "9-9-0003 FOUR FIVE"]


# ---------------------------------------------------------------------- batch makers
def _ctc_short(good: np.ndarray):
    return "ctc_short", "one two three four five six seven", good[:3000]


def _too_long(good: np.ndarray):
    return "too_long", "one", np.tile(good, 1 + 16000 * 10 // good.size)[: 16000 * 10]


def _unencodable(good: np.ndarray):
    return "unencodable", "one two \u00df", good


# ------------------------------------------------------------------------ cli makers
def _cli_bad_bits(tmp: Path) -> list[str]:
    return ["sizes", "--spec", "int9"]


def _cli_two_widths(tmp: Path) -> list[str]:
    return ["sizes", "--spec", "int4+int8"]


def _cli_nm(tmp: Path) -> list[str]:
    return ["sizes", "--spec", "3:2"]


def _cli_preset(tmp: Path) -> list[str]:
    return ["train", "--preset", "no_such", "--out", str(tmp / "x")]


def _cli_set(tmp: Path) -> list[str]:
    return ["train", "--preset", "ci", "--out", str(tmp / "x"), "--set", "train.peak_lr=fast"]


def _cli_setting(setting: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        return ["train", "--preset", "ci", "--out", str(tmp / "x"), "--set", setting]

    return make


def _cli_not_a_run(tmp: Path) -> list[str]:
    (tmp / "not_a_run").mkdir(exist_ok=True)
    return ["transcribe", "--checkpoint", str(tmp / "not_a_run"), str(GOOD_FLAC)]


def _packed_b0(tmp: Path) -> Path:
    """The committed B0 packed at int8 (``usmlite-edu export``), made once per folder."""
    path = tmp / "b0_int8.safetensors"
    if not path.exists():
        from usmlite_edu.deploy import export  # JAX: only when a test makes the case

        export.write_packed(REPO / "results" / "cpu" / "b0", "int8", path)
    return path


def _cli_packed_flipped(tmp: Path) -> list[str]:
    data = bytearray(_packed_b0(tmp).read_bytes())
    data[-1000] ^= 0x10  # inside the last tensor's bytes
    (tmp / "flipped.safetensors").write_bytes(bytes(data))
    return ["transcribe", "--model", str(tmp / "flipped.safetensors"), str(GOOD_FLAC)]


def _cli_packed_header_edited(tmp: Path) -> list[str]:
    data = _packed_b0(tmp).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    old, new = b'hop_ms\\": 10.0', b'hop_ms\\": 19.0'  # one byte, as a hex editor would
    head = data[8 : 8 + n]
    assert head.count(old) == 1
    (tmp / "edited.safetensors").write_bytes(data[:8] + head.replace(old, new) + data[8 + n :])
    return ["eval", "--model", str(tmp / "edited.safetensors"), "--corpus", "fsdd_sample"]


def _cli_packed_cut(tmp: Path) -> list[str]:
    data = _packed_b0(tmp).read_bytes()
    (tmp / "cut.safetensors").write_bytes(data[: len(data) // 2])
    return ["transcribe", "--model", str(tmp / "cut.safetensors"), str(GOOD_FLAC)]


def _cli_packed_foreign(tmp: Path) -> list[str]:
    from safetensors.numpy import save_file

    save_file({"weight": np.zeros((4, 4), np.float32)}, str(tmp / "foreign.safetensors"))
    return ["eval", "--model", str(tmp / "foreign.safetensors"), "--corpus", "fsdd_sample"]


B0 = REPO / "results" / "cpu" / "b0"
#: writer locks the cases hold for the rest of the test process (see _cli_run_in_use)
_HELD: list = []


def _cli_resume_other_data(tmp: Path) -> list[str]:
    """A run directory of the ci preset trained on another copy of data_small (its
    config.json and a tokenizer, as a run leaves them), resumed without that --data."""
    run = tmp / "run_other_data"
    run.mkdir(exist_ok=True)
    meta = {"preset": "ci", "spec": "float", "corpus": "data_small", "seed": 0}
    meta |= {"data_dir": "/elsewhere/data_small", "heldout_speaker": None, "init": None}
    (run / "config.json").write_text(json.dumps(meta))
    shutil.copytree(B0 / "tokenizer", run / "tokenizer", dirs_exist_ok=True)
    return ["train", "--preset", "ci", "--out", str(run), "--steps", "1"]


def _cli_out_under_a_file(tmp: Path) -> list[str]:
    (tmp / "a_file").write_text("not a folder\n")
    return ["train", "--preset", "ci", "--out", str(tmp / "a_file" / "run")]


#: the read-only folder of the ``out`` cases, inside the test's temporary folder
RO = "read_only"


def _out_train(tmp: Path) -> list[str]:
    return ["train", "--preset", "ci", "--out", str(tmp / RO / "run")]


def _out_export(tmp: Path) -> list[str]:
    return ["export", "--checkpoint", str(B0), "--out", str(tmp / RO / "m.safetensors")]


def _out_eval_json(tmp: Path) -> list[str]:
    argv = ["eval", "--checkpoint", str(B0), "--corpus", "fsdd_sample"]
    return [*argv, "--json", str(tmp / RO / "r.json")]


def _cli_run_in_use(tmp: Path) -> list[str]:
    """A run directory whose writer lock is held (as by a ``train`` still running; the
    lock is taken in this process, which the lock refuses like any other holder)."""
    from usmlite_edu.speech import runs  # JAX: only when a test makes the case

    lock = runs.writer_lock(tmp / "x")
    lock.__enter__()
    _HELD.append(lock)
    return ["train", "--preset", "ci", "--out", str(tmp / "x"), "--steps", "1"]


def _map_file(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _cli_map_not_json(tmp: Path) -> list[str]:
    path = _map_file(tmp, "map_not_json.json", '{"default": "int4", "layers": {')
    return ["train", "--preset", "ci", "--out", str(tmp / "x"), "--spec-map", path]


def _cli_map_unknown_layer(tmp: Path) -> list[str]:
    text = '{"default": "int4", "layers": {"encoder/blocks/9/ffn1/.*": "int8"}}'
    path = _map_file(tmp, "map_unknown_layer.json", text)
    return ["eval", "--checkpoint", str(B0), "--corpus", "fsdd_sample", "--spec-map", path]


def _cli_map_unfit_spec(tmp: Path) -> list[str]:
    text = '{"default": "int4", "layers": {"encoder/blocks/0/ffn1/dense1": "int2/gs7"}}'
    path = _map_file(tmp, "map_unfit_spec.json", text)
    return [
        "export",
        "--checkpoint",
        str(B0),
        "--out",
        str(tmp / "m.safetensors"),
        "--spec-map",
        path,
    ]


CASES: list[Case] = [
    # audio files: load_audio refuses them; transcribe and eval report and go on
    Case(
        "empty file (0 bytes)", "file", "skipped", "the file is empty (0 bytes)", EXIT_FILE, _empty
    ),
    Case("not audio (text named .wav)", "file", "skipped", "unreadable", EXIT_FILE, _garbage),
    Case("WAV header, no samples", "file", "skipped", "no samples", EXIT_FILE, _no_samples),
    Case(
        "WAV cut to 100 bytes (header promises 1 s)",
        "file",
        "skipped",
        "truncated: its header promises 8000 frames (1.000 s at 8000 Hz) but only 28",
        EXIT_FILE,
        _truncated_wav,
    ),
    Case(
        "FLAC cut in half",
        "file",
        "skipped",
        "truncated or corrupt: its header promises 16000 frames",
        EXIT_FILE,
        _truncated_flac,
    ),
    Case(
        "float WAV with NaN samples", "file", "skipped", "NaN or infinite samples", EXIT_FILE, _nan
    ),
    Case(
        "digital silence (all zeros)", "file", "skipped", "(digital silence)", EXIT_FILE, _silence
    ),
    Case(
        "every sample at full scale",
        "file",
        "skipped",
        "(stuck at full scale: clipped flat)",
        EXIT_FILE,
        _stuck,
    ),
    Case("constant offset (DC only)", "file", "skipped", "(a constant offset)", EXIT_FILE, _dc),
    Case(
        "10 ms of audio (shorter than one 32 ms window)",
        "file",
        "skipped",
        "too short: 10.0 ms (80 samples at 8000 Hz); the ci model needs at least 512 samples",
        EXIT_FILE,
        _too_short,
    ),
    Case("file that does not exist", "file", "skipped", "no such file", EXIT_FILE, _missing),
    Case(
        "a folder given as an audio file",
        "file",
        "skipped, named as a folder",
        "a folder, not an audio file",
        EXIT_FILE,
        _folder,
    ),
    Case(
        "a symlink loop given as an audio file",
        "file",
        "skipped, named as a loop",
        "a symlink loop (too many levels of symbolic links)",
        EXIT_FILE,
        _symlink_loop,
    ),
    # unusual but usable
    Case("stereo at 44.1 kHz", "file_ok", "loaded (mixed down, resampled)", "", "0", _stereo_44k),
    Case(
        "speech clipped on most peaks",
        "file_ok",
        "loaded, with a warning",
        "of its samples are at full scale (clipped)",
        "0",
        _clipped,
    ),
    # corpus transcripts
    Case(
        "transcript line with no text",
        "corpus",
        "skipped",
        "empty transcript",
        EXIT_SKIP,
        _empty_text,
    ),
    Case(
        "transcript line, audio missing",
        "corpus",
        "skipped",
        "missing audio file",
        EXIT_SKIP,
        _missing_audio,
    ),
    Case(
        "utterance id listed twice",
        "corpus",
        "skipped",
        "duplicate utterance id",
        EXIT_SKIP,
        _duplicate,
    ),
    Case(
        "audio file that no transcript line names",
        "corpus",
        "skipped (counted as a lost utterance)",
        "has no transcript line",
        EXIT_SKIP,
        _audio_without_line,
    ),
    Case(
        "transcript mostly in another script or numerals",
        "corpus",
        "skipped (normalisation would keep less than half its letters)",
        "normalisation keeps 4 of 10 letters and digits",
        EXIT_SKIP,
        _other_script,
    ),
    Case(
        "truncated WAV listed in a transcript",
        "corpus",
        "skipped (header check, before any decoding)",
        "truncated: its header promises 8000 frames",
        EXIT_SKIP,
        _truncated_in_corpus,
    ),
    # utterances that cannot train
    Case(
        "transcript too long for its audio (CTC)",
        "batch",
        "skipped",
        "too short for CTC",
        EXIT_SKIP,
        _ctc_short,
    ),
    Case(
        "10 s utterance, largest training bucket 4.5 s",
        "batch",
        "skipped (train); a new bucket (eval)",
        "too long: 10.00 s > largest bucket 4.5 s",
        "`train`: 0, or 4 above 5% of a split; `eval`: 0 (kept)",
        _too_long,
    ),
    Case(
        "transcript with characters outside the vocabulary",
        "batch",
        "skipped",
        "transcript cannot be encoded",
        EXIT_SKIP,
        _unencodable,
    ),
    # command lines
    Case("spec `int9`", "cli", "refused", "bits=9 is outside 2..8", "2", _cli_bad_bits),
    Case("spec `int4+int8`", "cli", "refused", "names two bit widths", "2", _cli_two_widths),
    Case("spec `3:2`", "cli", "refused", "n=3 > m=2", "2", _cli_nm),
    Case("unknown preset", "cli", "refused", "no_such", "2", _cli_preset),
    Case("`--set train.peak_lr=fast`", "cli", "refused", "train.peak_lr", "2", _cli_set),
    Case(
        "`--set train.peak_lr=1e999`",
        "cli",
        "refused before the run folder is written",
        "train.peak_lr must be a finite number",
        "2",
        _cli_setting("train.peak_lr=1e999"),
    ),
    Case(
        "`--set model.num_heads=0`",
        "cli",
        "refused before the run folder is written",
        "model.num_heads must be an integer >= 1",
        "2",
        _cli_setting("model.num_heads=0"),
    ),
    Case(
        "`--set model.ffn_multiplier=0`",
        "cli",
        "refused before the run folder is written",
        "model.ffn_multiplier must be an integer >= 1",
        "2",
        _cli_setting("model.ffn_multiplier=0"),
    ),
    Case(
        "`--set model.conv_kernel=-1`",
        "cli",
        "refused before the run folder is written",
        "model.conv_kernel must be an integer >= 1",
        "2",
        _cli_setting("model.conv_kernel=-1"),
    ),
    Case(
        "`--set model.dropout=-1`",
        "cli",
        "refused before the run folder is written",
        "model.dropout must be in [0, 1)",
        "2",
        _cli_setting("model.dropout=-1"),
    ),
    Case(
        "`--set model.hop_ms=0`",
        "cli",
        "refused before the run folder is written",
        "0 < hop_ms <= window_ms",
        "2",
        _cli_setting("model.hop_ms=0"),
    ),
    Case(
        "`--set model.sample_rate=1000000000`",
        "cli",
        "refused before the run folder is written",
        "model.sample_rate must be an integer in",
        "2",
        _cli_setting("model.sample_rate=1000000000"),
    ),
    Case(
        "`--set train.bucket_seconds=[1e6]`",
        "cli",
        "refused before the run folder is written",
        "longer than 600 s",
        "2",
        _cli_setting("train.bucket_seconds=[1e6]"),
    ),
    Case(
        "`--checkpoint` that is not a run directory",
        "cli",
        "refused",
        "is not a run directory (no config.json)",
        "2",
        _cli_not_a_run,
    ),
    # packed model files (usmlite-edu export): refused before any array reaches JAX
    Case(
        "packed model with a flipped data byte",
        "cli",
        "refused",
        "does not match its checksum: the file is damaged",
        "2",
        _cli_packed_flipped,
    ),
    Case(
        "packed model with one header byte edited (`hop_ms` 10.0 -> 19.0)",
        "cli",
        "refused",
        "its header does not match its header checksum",
        "2",
        _cli_packed_header_edited,
    ),
    Case(
        "packed model cut short (truncated copy)",
        "cli",
        "refused",
        "truncated or damaged: the header describes",
        "2",
        _cli_packed_cut,
    ),
    Case(
        "safetensors file not written by `export`",
        "cli",
        "refused",
        "not a packed usmlite_edu model",
        "2",
        _cli_packed_foreign,
    ),
    # per-layer spec maps (--spec-map FILE): refused before any data or mask, naming the file
    Case(
        "`train --spec-map` file that is not JSON",
        "cli",
        "refused",
        "map_not_json.json is not valid JSON",
        "2",
        _cli_map_not_json,
    ),
    Case(
        "`eval --spec-map` naming a layer the model lacks",
        "cli",
        "refused",
        "map_unknown_layer.json: pattern 'encoder/blocks/9/ffn1/.*' matches no compressible layer",
        "2",
        _cli_map_unknown_layer,
    ),
    Case(
        "`export --spec-map` giving a layer a spec it cannot take",
        "cli",
        "refused",
        "map_unfit_spec.json: encoder/blocks/0/ffn1/dense1/kernel: group size 7 does not divide",
        "2",
        _cli_map_unfit_spec,
    ),
    # run directories
    Case(
        "second `train` on a run directory another `train` is writing",
        "cli",
        "refused before anything is written (advisory lock `RUN/train.lock`)",
        "is being written by another training process (PID",
        "2",
        _cli_run_in_use,
    ),
    Case(
        "resuming a run with another `--data`",
        "cli",
        "refused before anything is written, like other changed settings",
        "holds a run trained on --data /elsewhere/data_small, not the corpus's default folder",
        "2",
        _cli_resume_other_data,
    ),
    # output locations: refused before the work (no training, export or evaluation)
    Case(
        "`train --out` below a file",
        "cli",
        "refused before any data is read",
        "a_file is a file, not a folder",
        "2",
        _cli_out_under_a_file,
    ),
    Case(
        "`train --out` in a read-only folder",
        "out",
        "refused before any data is read",
        "cannot write in",
        "2",
        _out_train,
    ),
    Case(
        "`export --out` in a read-only folder",
        "out",
        "refused before the run is read",
        "cannot write in",
        "2",
        _out_export,
    ),
    Case(
        "`eval --json` in a read-only folder",
        "out",
        "refused before the evaluation (was: after computing the WER)",
        "cannot write in",
        "2",
        _out_eval_json,
    ),
    # what transcribe writes
    Case(
        "file names with a tab, newline or backslash (`transcribe`)",
        "output",
        "transcribed; the name escaped as `\\t`, `\\n`, `\\\\` (one line, one tab per file)",
        "",
        "0",
    ),
    Case(
        "`transcribe` piped into `head -1` (the reader closes the pipe)",
        "output",
        "stops quietly at the first failed write, no traceback",
        "",
        "0",
    ),
    Case(
        "4 minutes of audio (`transcribe`; largest bucket a few seconds)",
        "output",
        "transcribed in overlapping windows of the largest bucket, in bounded memory",
        "",
        "0",
    ),
    Case(
        "a 40 s utterance in an evaluation set (`eval`; largest bucket 3 s)",
        "eval_output",
        "decoded in overlapping windows of the largest bucket, as `transcribe` decodes it; "
        "no forward pass wider than that bucket",
        "",
        "0",
    ),
    # training
    Case(
        "NaN in a training batch's waveform",
        "step",
        "update skipped, parameters bit-identical",
        "non-finite loss/gradient/update, update skipped",
        "0; 2 after `train.max_nonfinite` in a row",
    ),
    Case(
        "a learning rate that overflows float32 (`train.peak_lr=1e300`)",
        "step",
        "update skipped (finite gradients, non-finite update), parameters bit-identical",
        "non-finite loss/gradient/update, update skipped",
        "0; 2 after `train.max_nonfinite` in a row",
    ),
    Case(
        "more than 5% of a split skipped",
        "share",
        "run finishes, outputs written",
        "skipped 3 of 20 utterances (15.0% > 5%)",
        "4 (`train`, `reproduce`)",
    ),
]

# ``usmlite-edu data fetch``: each refusal is tested in tests/test_fetch.py, against a local
# server; the message excerpt is the string that test matches
# (test_bad_inputs.test_fetch_cases_are_tested_in_test_fetch checks that it does)
CASES += [
    Case(
        "`data fetch`: a zip member named `x/recordings/../../evil.wav`",
        "fetch",
        "refused whole, nothing unpacked",
        "outside the target folder",
        "2",
    ),
    Case(
        "`data fetch`: a zip member with an absolute path",
        "fetch",
        "refused whole, nothing unpacked",
        "outside the target folder",
        "2",
    ),
    Case(
        "`data fetch`: a zip member that is a symlink", "fetch", "refused whole", "is a link", "2"
    ),
    Case(
        "`data fetch`: a zip whose recordings are junk (was: 'fsdd is ready')",
        "fetch",
        "refused whole, nothing unpacked",
        "is not a WAV file",
        "2",
    ),
    Case(
        "`data fetch`: a tar member with `../`, an absolute path or a link",
        "fetch",
        "refused, nothing half-unpacked",
        "refusing",
        "2",
    ),
    Case(
        "`data fetch`: more archive members than the corpus holds (zip or tar; 200,000 files)",
        "fetch",
        "refused at the limit (`Archive.max_members`)",
        "more than 10 members",
        "2",
    ),
    Case(
        "`data fetch`: a zip bomb (more unpacked bytes than the corpus holds)",
        "fetch",
        "refused at the limit (`Archive.max_bytes`), nothing unpacked",
        "more than the 0.0 MB",
        "2",
    ),
    Case(
        "`data fetch`: `DIR/recordings` is a symlink to elsewhere",
        "fetch",
        "refused, nothing written through it",
        "is a symbolic link",
        "2",
    ),
    Case("`data fetch --to` naming a file", "fetch", "refused", "is a file, not a folder", "2"),
    Case(
        "`data fetch`: the disk fills while unpacking (ENOSPC)",
        "fetch",
        "one line, no traceback",
        "no space left on the device",
        "2",
    ),
]

WHERE = {
    "file": "audio loader",
    "file_ok": "audio loader",
    "corpus": "corpus loader",
    "batch": "batching",
    "cli": "command line",
    "step": "training step",
    "share": "`train`, `reproduce`",
    "out": "command line",
    "output": "`transcribe` output",
    "eval_output": "`eval` decoding",
    "fetch": "`data fetch`",
}


def render_table(cases: list[Case] = CASES) -> str:
    """The bad-input table of docs/bad-inputs.md (markdown), one row per case."""
    rows = [
        "| # | Bad input | Caught by | What it gets | Message (excerpt) | Exit code |",
        "|---|---|---|---|---|---|",
    ]
    for i, c in enumerate(cases, 1):
        msg = f"`{c.message}`" if c.message else "(none)"
        rows.append(f"| {i} | {c.kind} | {WHERE[c.group]} | {c.outcome} | {msg} | {c.exit_code} |")
    return "\n".join(rows) + "\n"
