"""Speech corpora as lists of (audio, transcript) utterances.

Three sources, one result type (:class:`CorpusSplit`):

* **LibriSpeech layout** (:func:`load_librispeech`): LibriSpeech, mini-LibriSpeech, the
  repository's own ``data_small/``, ``data_small/fsdd_sample/`` (corpus ``fsdd_sample``:
  real FSDD connected-digit *test* utterances, its only split is ``test``) and
  ``data_small/an4_sample/`` (corpus ``an4_sample``: AN4's official test set, FLAC) all use
  ``<speaker>/<chapter>/<spk>-<chap>-<utt>.flac`` plus one ``<spk>-<chap>.trans.txt`` per
  chapter. Audio is read lazily (by path).
* **FSDD connected digits** (:func:`load_fsdd_connected`): real single-digit recordings
  (8 kHz) joined into 1-7 digit utterances with random silences, gain and light noise,
  built in memory and fully determined by the seed.
* **AN4** (:func:`load_an4`): CMU's census database in its Sphinx layout (see below).
* :func:`load_corpus` picks one of them by name, for the CLI and the notebooks.

A bad file never stops a run: it goes into ``CorpusSplit.skipped`` with the reason and a
warning is logged, so a learner sees "3 of 2,703 skipped" instead of a traceback.

FSDD splits (speakers: jackson, theo, nicolas, lucas, yweweler, george):

=========  ===============================  =================================================
split      recordings (per digit, speaker)  why
=========  ===============================  =================================================
``test``   index 0-4                        FSDD's official test split
``dev``    index 5-9                        held out of the official train split for tuning
``train``  index 10-49                      the rest of the official train split (5-49)
=========  ===============================  =================================================

AN4 (CMU census database, 16 kHz close-talking read speech: spelled letters, digits,
number words, a few commands; 99 words; BSD-style licence kept with the copy) has 948
training utterances of 74 speakers and 130 test utterances of 10 other speakers (the
training text has 99 distinct words; the test text adds two, "thirteen" and "november"):

=========  ===========================================================  ================
split      what                                                         size
=========  ===========================================================  ================
``test``   the official test speakers (``etc/an4_test.transcription``)  130 utts, 10 spk
``dev``    :data:`AN4_DEV_SPEAKERS`, held out of the official training  100 utts, 8 spk
           set whole, so dev is speaker-disjoint from train as test is
``train``  the other 66 training speakers                               848 utts
=========  ===========================================================  ================

Text is normalised once, by :func:`normalize_text`: lower case, and a spelled letter stays
its own one-letter word (``"RUBOUT G M E F THREE"`` -> ``"rubout g m e f three"``).

With ``heldout_speaker="theo"`` (leave one speaker out) ``train``/``dev`` keep the index
ranges above without theo, and ``test`` is every recording (index 0-49) of theo only.
"""

from __future__ import annotations

import logging
import math
import os
import re
import unicodedata
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from usmlite_edu.speech.audio import (
    AudioError,
    declared_frames,
    load_audio,
    resample,
    truncation_reason,
)
from usmlite_edu.speech.paths import find_checkout

__all__ = [
    "Utterance",
    "CorpusSplit",
    "normalize_text",
    "load_librispeech",
    "FsddRecording",
    "fsdd_speakers",
    "fsdd_recordings",
    "load_fsdd_connected",
    "load_an4",
    "AN4_DEV_SPEAKERS",
    "load_corpus",
    "CORPORA",
    "SPLITS",
    "DIGIT_WORDS",
    "FSDD_SPLIT_INDICES",
    "FSDD_SAMPLE_RATE",
    "LIBRISPEECH_SUBSETS",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
CORPORA = (
    "fsdd",
    "data_small",
    "librispeech",
    "mini-librispeech",
    "fsdd_sample",
    "an4",
    "an4_sample",
)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FSDD_SAMPLE_RATE = 8000
#: recording indices per split (without a held-out speaker); dev is carved out of FSDD's
#: official train range 5-49 so that tuning never touches the official test range 0-4.
FSDD_SPLIT_INDICES: dict[str, range] = {
    "test": range(0, 5),
    "dev": range(5, 10),
    "train": range(10, 50),
}
#: LibriSpeech-layout subset directories per corpus and split
LIBRISPEECH_SUBSETS: dict[str, dict[str, str]] = {
    "librispeech": {"train": "train-clean-100", "dev": "dev-clean", "test": "test-clean"},
    # mini-LibriSpeech (openslr 31) has no test subset: test reuses dev-clean-2.
    "mini-librispeech": {"train": "train-clean-5", "dev": "dev-clean-2", "test": "dev-clean-2"},
    "data_small": {"train": "train", "dev": "dev", "test": "test"},
    # A sample of FSDD's test split only (scripts/make_fsdd_sample.py): no train or dev,
    # so that nothing can train on it; the speaker folders sit at its root.
    "fsdd_sample": {"test": "."},
    # AN4's official test set (scripts/make_an4_sample.py), likewise test only.
    "an4_sample": {"test": "."},
}
#: The test-only samples that ship in ``data_small/``: native sample rate, the script that
#: regenerates each, and what it is a sample of (for the refusal of other splits).
_SAMPLES: dict[str, tuple[int, str, str]] = {
    "fsdd_sample": (8000, "make_fsdd_sample.py --fsdd FSDD_DIR", "FSDD's test recordings"),
    "an4_sample": (16000, "make_an4_sample.py --an4 AN4_DIR", "AN4's official test set"),
}
#: AN4's dev speakers: training speakers held out whole. The rule, fixed before any model
#: was trained on AN4: of each gender (the id's first letter), the four speakers with the
#: smallest CRC-32 of their id; 100 utterances (tests/test_an4.py checks the rule and the
#: counts on the corpus).
AN4_DEV_SPEAKERS: tuple[str, ...] = (
    "fash",
    "fejs",
    "fsaf2",
    "ftmj",
    "mcen",
    "mkdb",
    "msjm",
    "msrb",
)
_AN4_FILES = {
    "train": ("etc/an4_train.transcription", "wav/an4_clstk"),
    "dev": ("etc/an4_train.transcription", "wav/an4_clstk"),
    "test": ("etc/an4_test.transcription", "wav/an4test_clstk"),
}
# "<s> WORDS </s> (utterance-id)" (train) or "WORDS (utterance-id)" (test)
_AN4_LINE = re.compile(r"^\s*(?:<s>\s+)?(?P<text>.*?)\s*(?:</s>\s*)?\((?P<uid>[^()\s]+)\)\s*$")
_FETCH_NAMES = {
    "an4": "an4",
    "fsdd": "fsdd",
    "librispeech": "librispeech-100",
    "mini-librispeech": "mini-librispeech",
}
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def _fetch_hint(corpus: str, where: str | os.PathLike[str] = "DIR") -> str:
    """The command that gets ``corpus`` onto this machine, for error messages."""
    if corpus == "data_small":
        return (
            "data_small/ ships in the repository; regenerate it with "
            "`python scripts/make_data_small.py` (needs espeak-ng)"
        )
    if corpus in _SAMPLES:
        return (
            f"data_small/{corpus}/ ships in the repository; regenerate it with "
            f"`python scripts/{_SAMPLES[corpus][1]}`"
        )
    return f"fetch it with `usmlite-edu data fetch {_FETCH_NAMES[corpus]} --to {where}`"


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Utterance:
    """One transcribed utterance: in-memory ``audio`` or a ``path`` read on demand.

    ``audio`` (float32 mono) is at ``sample_rate`` when that is given, else at the rate of
    the corpus that made it. It is excluded from ``==``/``hash`` (arrays have no truth
    value), so two utterances compare by id, text, speaker and path.
    """

    uid: str
    text: str
    speaker: str
    path: str | None = None
    audio: np.ndarray | None = field(default=None, compare=False, repr=False)
    sample_rate: int | None = None

    def __post_init__(self) -> None:
        if self.path is None and self.audio is None:
            raise ValueError(f"utterance {self.uid!r} needs a path or audio")
        if self.audio is not None:
            a = np.array(self.audio, dtype=np.float32)  # a copy: never freeze the caller's
            if a.ndim != 1:
                raise ValueError(f"utterance {self.uid!r}: audio must be mono 1-D, got {a.shape}")
            a.setflags(write=False)  # frozen means frozen: no in-place edits by callers
            object.__setattr__(self, "audio", a)

    def load(self, sample_rate: int) -> np.ndarray:
        """The waveform at ``sample_rate``: float32 mono in [-1, 1] (read-only if cached)."""
        if self.audio is not None:
            if self.sample_rate is None or self.sample_rate == sample_rate:
                return self.audio
            return np.clip(resample(self.audio, self.sample_rate, sample_rate), -1, 1)
        assert self.path is not None
        return load_audio(self.path, sample_rate)


@dataclass
class CorpusSplit:
    """The utterances of one split, what was skipped and why, and their sample rate.

    ``sources`` maps an utterance id to the files it was built from (FSDD connected
    digits: several recordings each), so tests and learners can check that no recording
    leaks between splits.
    """

    name: str
    utterances: list[Utterance]
    skipped: list[tuple[str, str]]
    sample_rate: int
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def summary(self) -> str:
        """One line for logs and notebooks."""
        return (
            f"{self.name}: {len(self.utterances)} utterances, "
            f"{len({u.speaker for u in self.utterances})} speakers, "
            f"{len(self.skipped)} skipped, {self.sample_rate} Hz"
        )


def _skip(skipped: list[tuple[str, str]], what: str, reason: str) -> None:
    skipped.append((what, reason))
    log.warning("skipping %s: %s", what, reason)


def _split(name: str, utterances, skipped, sample_rate: int) -> CorpusSplit:
    """The loaded split, with one warning line counting what was skipped."""
    if skipped:
        log.warning(
            "%s: skipped %d of %d utterances (see CorpusSplit.skipped)",
            name,
            len(skipped),
            len(skipped) + len(utterances),
        )
    return CorpusSplit(name, utterances, skipped, sample_rate)


def normalize_text(s: str) -> str:
    """Lower-case ``a-z``, apostrophes and single spaces: the CTC alphabet's view of text.

    Accents are folded (``café`` -> ``cafe``), curly apostrophes become ``'``, any other
    character (punctuation, hyphens, digits written as numerals) becomes a word break.
    Number words stay as they are ("seven" is not turned into "7").
    """
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").lower()
    s = re.sub(r"[^a-z' ]+", " ", s)
    return " ".join(s.split())


_AUDIO_EXTS = (".flac", ".wav")
#: a transcript whose normalisation keeps less than this share of its letters and digits is
#: not the text that was spoken (another script, numerals): skipped, not trained on
MIN_KEPT_SHARE = 0.5


def _chapter_audio(tr: Path, audio_files: dict[Path, list[Path]]) -> list[Path]:
    """The audio files a transcript ``<spk>-<chap>.trans.txt`` would name."""
    prefix = tr.name[: -len(".trans.txt")] + "-"
    return sorted(a for a in audio_files.get(tr.parent, []) if a.name.startswith(prefix))


def _mostly_dropped(raw: str, text: str) -> str | None:
    """Why ``raw`` -> ``text`` lost most of the line, or None. Counts letters and digits
    (any script) before, letters after (:func:`normalize_text` keeps ``a-z``)."""
    before = sum(1 for c in raw if unicodedata.category(c)[0] in "LN")
    after = sum(1 for c in text if c.isalpha())
    if before and after < MIN_KEPT_SHARE * before:
        return (
            f"normalisation keeps {after} of {before} letters and digits ({raw!r:.60} -> "
            f"{text!r:.60}): write the transcript in English letters, numbers as words"
        )
    return None


# ------------------------------------------------------------------- LibriSpeech layout


def load_librispeech(
    root: str | os.PathLike[str],
    subset_dirs: list[str] | None = None,
    sample_rate: int = 16000,
    *,
    check_audio: bool = True,
    name: str | None = None,
    fetch_hint: str | None = None,
) -> CorpusSplit:
    """Read a LibriSpeech-layout tree (``root`` itself, or ``root/<subset>`` per subset).

    Each ``<spk>-<chap>.trans.txt`` line ``UTTID TEXT`` becomes an utterance whose audio is
    ``UTTID.flac`` (or ``.wav``) next to it, read lazily. With ``check_audio`` every file's
    header is opened once (fast; catches corrupt, empty and truncated WAV files up front,
    by their header's frame count; a FLAC cut mid-stream fails later, in
    :meth:`Utterance.load`, naming the file and the frames it lacks).
    Every utterance that is lost is skipped and reported, one entry each: missing audio,
    an empty transcript, one that normalisation mostly removes (less than
    :data:`MIN_KEPT_SHARE` of its letters and digits survive: another script, numerals),
    unreadable audio, a duplicate id, audio that no transcript line names, and every
    audio file of a chapter whose transcript file cannot be read. Raises ``FileNotFoundError`` naming the directory if it holds no transcripts.
    """
    root = Path(root)
    dirs = [root] if not subset_dirs else [root / s for s in subset_dirs]
    hint = fetch_hint or (
        "fetch LibriSpeech with `usmlite-edu data fetch "
        "mini-librispeech --to DIR` or `... librispeech-100 --to DIR`"
    )
    utterances: list[Utterance] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"corpus directory {d} does not exist; {hint}")
        transcripts = sorted(d.rglob("*.trans.txt"))
        if not transcripts:
            raise FileNotFoundError(
                f"no LibriSpeech transcripts (*.trans.txt) under {d}; expected "
                f"<speaker>/<chapter>/<speaker>-<chapter>.trans.txt; {hint}"
            )
        # every audio file is an utterance: one its transcript does not name is lost too
        audio_files: dict[Path, list[Path]] = defaultdict(list)
        for ext in _AUDIO_EXTS:
            for a in d.rglob(f"*{ext}"):
                audio_files[a.parent].append(a)
        named: set[Path] = set()
        for tr in transcripts:
            try:
                lines = tr.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                lost = _chapter_audio(tr, audio_files)
                named.update(lost)
                for a in lost:  # each of its utterances is lost: count each one
                    _skip(skipped, a.stem, f"its transcript file {tr} is unreadable ({e})")
                if not lost:
                    _skip(skipped, str(tr), f"unreadable transcript file ({e})")
                continue
            for line in lines:
                if not line.strip():
                    continue
                parts = line.split(maxsplit=1)
                uid = parts[0]
                raw = parts[1] if len(parts) > 1 else ""
                text = normalize_text(raw)
                for ext in _AUDIO_EXTS:
                    named.add(tr.parent / (uid + ext))
                if uid in seen:
                    _skip(skipped, uid, f"duplicate utterance id (again in {tr})")
                    continue
                seen.add(uid)
                if not text:
                    _skip(skipped, uid, f"empty transcript in {tr}")
                    continue
                dropped = _mostly_dropped(raw, text)
                if dropped:
                    _skip(skipped, uid, f"{dropped} in {tr}")
                    continue
                audio = next(
                    (
                        tr.parent / (uid + ext)
                        for ext in _AUDIO_EXTS
                        if (tr.parent / (uid + ext)).is_file()
                    ),
                    None,
                )
                if audio is None:
                    _skip(skipped, uid, f"missing audio file {tr.parent / (uid + '.flac')}")
                    continue
                if check_audio:
                    reason = _header_problem(audio)
                    if reason:
                        _skip(skipped, uid, f"unreadable audio {audio}: {reason}")
                        continue
                # the speaker folder (LibriSpeech's id prefix, and AN4's ids in an4_sample,
                # whose speaker is their middle field); the id prefix in a shallower tree
                spk_dir = tr.parent.parent
                speaker = (
                    spk_dir.name if spk_dir != d and d in spk_dir.parents else uid.split("-")[0]
                )
                utterances.append(Utterance(uid, text, speaker, path=str(audio)))
        for folder in sorted(audio_files):
            for a in sorted(audio_files[folder]):
                if a not in named:
                    _skip(skipped, a.stem, f"audio file {a} has no transcript line")
    if name is None:
        name = "+".join(subset_dirs) if subset_dirs else root.name
    return _split(name, utterances, skipped, sample_rate)


def _header_problem(path: Path) -> str | None:
    """Why ``path`` cannot be decoded, from its header alone, or None if it looks fine."""
    try:
        if path.stat().st_size == 0:
            return "the file is empty (0 bytes)"
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as e:
        return f"{type(e).__name__}: {e}"
    if info.frames == 0:
        return "it contains no samples"
    declared = declared_frames(path)  # libsndfile shortens a cut WAV without a word
    if declared is not None and declared > info.frames:
        return truncation_reason(declared, info.frames, info.samplerate)
    return None


# ------------------------------------------------------------------ FSDD connected digits


@dataclass(frozen=True)
class FsddRecording:
    """One FSDD file ``{digit}_{speaker}_{index}.wav``."""

    path: Path
    digit: int
    speaker: str
    index: int


def _fsdd_scan(fsdd_dir: str | os.PathLike[str]) -> tuple[list[FsddRecording], list[str]]:
    rec_dir = Path(fsdd_dir) / "recordings"
    if not rec_dir.is_dir():
        raise FileNotFoundError(
            f"FSDD recordings folder {rec_dir} does not exist; {_fetch_hint('fsdd', fsdd_dir)} "
            f"(or unpack the FSDD archive so that {rec_dir / '0_jackson_0.wav'} exists)"
        )
    recs, odd = [], []
    for p in sorted(rec_dir.glob("*.wav")):
        m = _FSDD_NAME.match(p.name)
        if m is None:
            odd.append(p.name)
            continue
        recs.append(FsddRecording(p, int(m.group(1)), m.group(2), int(m.group(3))))
    if not recs:
        raise FileNotFoundError(
            f"no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) in "
            f"{rec_dir}; {_fetch_hint('fsdd', fsdd_dir)}"
        )
    return recs, odd


def fsdd_speakers(fsdd_dir: str | os.PathLike[str]) -> list[str]:
    """The speakers present in an FSDD copy, sorted (5 in ours, 6 in the full corpus)."""
    return sorted({r.speaker for r in _fsdd_scan(fsdd_dir)[0]})


def fsdd_recordings(
    fsdd_dir: str | os.PathLike[str], split: str, *, heldout_speaker: str | None = None
) -> list[FsddRecording]:
    """The recordings a split may draw from (see the module docstring's table)."""
    return _fsdd_split(_fsdd_scan(fsdd_dir)[0], fsdd_dir, split, heldout_speaker)


def _fsdd_split(
    recs: list[FsddRecording],
    fsdd_dir: str | os.PathLike[str],
    split: str,
    heldout_speaker: str | None,
) -> list[FsddRecording]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if heldout_speaker is not None:
        speakers = sorted({r.speaker for r in recs})
        if heldout_speaker not in speakers:
            raise ValueError(
                f"heldout_speaker {heldout_speaker!r} is not in {fsdd_dir}; "
                f"speakers: {', '.join(speakers)}"
            )
        if split == "test":
            return [r for r in recs if r.speaker == heldout_speaker]
        recs = [r for r in recs if r.speaker != heldout_speaker]
    if split == "train":  # everything from index 10 up (FSDD has 0-49)
        return [r for r in recs if r.index >= FSDD_SPLIT_INDICES["train"].start]
    return [r for r in recs if r.index in FSDD_SPLIT_INDICES[split]]


def _stable_int(s: str) -> int:
    """A run-independent integer for a string (Python's ``hash`` is salted per process)."""
    return zlib.crc32(s.encode("utf-8"))


def load_fsdd_connected(
    fsdd_dir: str | os.PathLike[str],
    split: str,
    *,
    seed: int = 0,
    num_utterances: int | None = None,
    min_digits: int = 1,
    max_digits: int = 7,
    sample_rate: int = FSDD_SAMPLE_RATE,
    heldout_speaker: str | None = None,
    silence_s: tuple[float, float] = (0.05, 0.3),
    snr_db: tuple[float, float] = (30.0, 40.0),
    peak: tuple[float, float] = (0.2, 0.9),
) -> CorpusSplit:
    """Connected-digit utterances built from FSDD recordings of one split, in memory.

    Each utterance: one speaker, ``min_digits..max_digits`` of that speaker's recordings
    of this split, random silences (``silence_s``) between them and at both ends, a random
    gain (peak level drawn from ``peak``), then white noise at a random SNR (``snr_db``,
    relative to the power of the speech samples). Recordings are dealt from a shuffled
    deck per speaker, so every recording is used before any is reused. The default
    ``num_utterances`` gives about two passes over the recordings for train and one for
    dev/test. Everything is determined by ``(seed, split, heldout_speaker)``; the first
    ``n`` utterances do not depend on ``num_utterances``. Unreadable recordings are
    reported in ``skipped`` and never used.
    """
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    if num_utterances is not None and num_utterances < 0:
        raise ValueError(f"num_utterances must be >= 0, got {num_utterances}")
    all_recs, odd = _fsdd_scan(fsdd_dir)
    recs = _fsdd_split(all_recs, fsdd_dir, split, heldout_speaker)
    skipped: list[tuple[str, str]] = []
    for fname in odd:
        _skip(skipped, fname, "file name is not {digit}_{speaker}_{index}.wav")
    pools: dict[str, list[tuple[FsddRecording, np.ndarray]]] = defaultdict(list)
    for r in recs:
        try:
            pools[r.speaker].append((r, load_audio(r.path, sample_rate)))
        except AudioError as e:
            _skip(skipped, r.path.name, e.reason)
    n_ok = sum(len(v) for v in pools.values())
    tag = f"fsdd/{split}" + (f"/heldout-{heldout_speaker}" if heldout_speaker else "")
    if n_ok == 0:
        raise ValueError(
            f"{tag}: none of the {len(recs)} FSDD recordings in {fsdd_dir} "
            f"could be read; {_fetch_hint('fsdd', fsdd_dir)}"
        )
    if num_utterances is None:
        passes = 2 if split == "train" else 1
        num_utterances = math.ceil(passes * n_ok / ((min_digits + max_digits) / 2))

    rng = np.random.default_rng([seed, _stable_int(split), _stable_int(heldout_speaker or "")])
    speakers = sorted(pools)
    weights = np.array([len(pools[s]) for s in speakers], dtype=np.float64)
    weights /= weights.sum()
    decks: dict[str, list[int]] = {s: [] for s in speakers}

    def deal(spk: str) -> tuple[FsddRecording, np.ndarray]:
        if not decks[spk]:
            decks[spk] = list(rng.permutation(len(pools[spk])))
        return pools[spk][decks[spk].pop()]

    def silence() -> np.ndarray:
        return np.zeros(int(round(rng.uniform(*silence_s) * sample_rate)), np.float32)

    utterances, sources = [], {}
    for i in range(num_utterances):
        spk = speakers[int(rng.choice(len(speakers), p=weights))]
        picked = [deal(spk) for _ in range(int(rng.integers(min_digits, max_digits + 1)))]
        pieces, speech = [silence()], []
        for _, audio in picked:
            pieces += [audio, silence()]
            speech.append(audio)
        x = np.concatenate(pieces).astype(np.float64)
        gain = rng.uniform(*peak) / max(float(np.abs(x).max()), 1e-6)
        x *= gain
        p_speech = float(np.mean(np.concatenate(speech).astype(np.float64) ** 2)) * gain**2
        noise_std = math.sqrt(p_speech / 10 ** (rng.uniform(*snr_db) / 10))
        x += rng.normal(0.0, noise_std, x.shape)
        uid = f"{tag.replace('/', '-')}-s{seed}-{i:05d}"
        text = " ".join(DIGIT_WORDS[r.digit] for r, _ in picked)
        utterances.append(
            Utterance(
                uid, text, spk, audio=np.clip(x, -1, 1).astype(np.float32), sample_rate=sample_rate
            )
        )
        sources[uid] = tuple(r.path.name for r, _ in picked)
    return CorpusSplit(tag, utterances, skipped, sample_rate, sources)


# --------------------------------------------------------------------------------- AN4


def _an4_speaker(uid: str) -> str | None:
    """``an406-fcaw-b`` -> ``fcaw``; ``None`` when the id has no speaker field."""
    parts = uid.split("-")
    return parts[1] if len(parts) == 3 and parts[1] else None


def load_an4(
    root: str | os.PathLike[str],
    split: str,
    sample_rate: int = 16000,
    *,
    check_audio: bool = True,
) -> CorpusSplit:
    """Read ``split`` of AN4 from ``root`` (the folder holding ``etc/`` and ``wav/``).

    The splits are in the module docstring. Each transcription line becomes an utterance
    whose audio ``wav/<an4_clstk|an4test_clstk>/<speaker>/<id>.wav`` is read lazily; a line
    that does not parse, an id seen before, an empty transcript (or one normalisation
    mostly removes), missing audio, audio that no line names and (with ``check_audio``)
    audio whose header cannot be decoded are skipped and counted in
    ``CorpusSplit.skipped``, each naming the file and line. A transcription file that is
    missing or cannot be read as text stops the load (``FileNotFoundError`` /
    ``ValueError`` naming it): every utterance of the split would be lost.
    """
    if split not in _AN4_FILES:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    trans_rel, wav_rel = _AN4_FILES[split]
    trans = root / trans_rel
    if not trans.is_file():
        raise FileNotFoundError(f"AN4 transcription {trans} does not exist; {_fetch_hint('an4')}")
    try:
        lines = trans.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(
            f"AN4 transcription {trans} cannot be read as text ({e}); fetch the corpus "
            f"again: {_fetch_hint('an4')}"
        ) from None
    dev = set(AN4_DEV_SPEAKERS)
    utterances: list[Utterance] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    named: set[Path] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = _AN4_LINE.match(line)
        speaker = _an4_speaker(m.group("uid")) if m else None
        if m is None or speaker is None:
            _skip(
                skipped,
                f"{trans}:{number}",
                f"not '<s> WORDS </s> (id)' nor 'WORDS (id)': {line!r:.80}",
            )
            continue
        uid = m.group("uid")
        if split != "test" and (speaker in dev) != (split == "dev"):
            continue
        if uid in seen:
            _skip(skipped, uid, f"duplicate utterance id ({trans}:{number})")
            continue
        seen.add(uid)
        text = normalize_text(m.group("text"))
        named.add(root / wav_rel / speaker / f"{uid}.wav")
        if not text:
            _skip(skipped, uid, f"empty transcript ({trans}:{number})")
            continue
        dropped = _mostly_dropped(m.group("text"), text)
        if dropped:
            _skip(skipped, uid, f"{dropped} ({trans}:{number})")
            continue
        audio = root / wav_rel / speaker / f"{uid}.wav"
        if not audio.is_file():
            _skip(skipped, uid, f"missing audio file {audio}")
            continue
        if check_audio:
            reason = _header_problem(audio)
            if reason:
                _skip(skipped, uid, f"unreadable audio {audio}: {reason}")
                continue
        utterances.append(Utterance(uid, text, speaker, path=str(audio)))
    for folder in sorted(p for p in (root / wav_rel).glob("*") if p.is_dir()):
        if split != "test" and (folder.name in dev) != (split == "dev"):
            continue
        for a in sorted(folder.glob("*.wav")):
            if a not in named:
                _skip(skipped, a.stem, f"audio file {a} has no line in {trans}")
    return _split(f"an4/{split}", utterances, skipped, sample_rate)


# ------------------------------------------------------------------------- dispatching


def _resolve_dir(data_dir: Path, candidates: list[Path], looks_right, corpus: str) -> Path:
    for c in candidates:
        if looks_right(c):
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"{corpus} not found (looked in {tried}); {_fetch_hint(corpus, data_dir)}"
    )


def load_corpus(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    split: str,
    *,
    seed: int = 0,
    sample_rate: int | None = None,
    heldout_speaker: str | None = None,
) -> CorpusSplit:
    """Load ``split`` ("train"/"dev"/"test") of corpus ``name`` (one of :data:`CORPORA`).

    ``data_dir`` is the corpus folder itself or a folder holding it under its usual name
    (``fsdd/``, ``data_small/``, ``LibriSpeech/``, ``an4/``); ``None`` reads it from the environment
    variable ``USMLITE_DATA`` (and, for ``data_small``, ``fsdd_sample`` and ``an4_sample``, falls back to
    the copy in the repository). ``sample_rate`` defaults to the corpus's own (8 kHz FSDD
    and ``fsdd_sample``, 16 kHz others). The samples have only a ``test`` split.
    ``seed`` and ``heldout_speaker`` only apply to FSDD, whose utterances are synthesised.
    mini-LibriSpeech has no test subset: its ``test`` is ``dev-clean-2`` again (logged).
    """
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split not in LIBRISPEECH_SUBSETS.get(name, {split: split}):
        raise ValueError(
            f"{name} has only the split(s) "
            f"{', '.join(LIBRISPEECH_SUBSETS[name])}, not {split!r}"
            + (
                f": it is a sample of {_SAMPLES[name][2]}, never to be trained or tuned on"
                if name in _SAMPLES
                else ""
            )
        )
    if heldout_speaker is not None and name != "fsdd":
        raise ValueError(f"heldout_speaker only applies to fsdd, not {name}")
    if data_dir is None:
        env = os.environ.get("USMLITE_DATA")
        # data_small/ ships with a clone, found from the working directory (never beside
        # the package, which may be an installed wheel).
        clone = find_checkout()
        repo_copy = (clone or Path.cwd()) / "data_small"
        if env:
            data_dir = env
        elif name == "data_small" and (repo_copy / "train").is_dir():
            data_dir = repo_copy
        elif name in _SAMPLES and (repo_copy / name).is_dir():
            data_dir = repo_copy / name
        else:
            raise ValueError(
                f"no data directory for {name}: pass data_dir (--data) or set "
                f"the environment variable USMLITE_DATA"
                + (
                    " (or run from a clone of the repository, which ships it)"
                    if name == "data_small" or name in _SAMPLES
                    else ""
                )
                + f"; {_fetch_hint(name)}"
            )
    root = Path(data_dir).expanduser()

    if name == "an4":
        d = _resolve_dir(
            root,
            [root, root / "an4"],
            lambda c: (c / "etc" / "an4_train.transcription").is_file(),
            "an4",
        )
        return load_an4(d, split, sample_rate or 16000)
    if name == "fsdd":
        d = _resolve_dir(root, [root, root / "fsdd"], lambda c: (c / "recordings").is_dir(), "fsdd")
        return load_fsdd_connected(
            d,
            split,
            seed=seed,
            sample_rate=sample_rate or FSDD_SAMPLE_RATE,
            heldout_speaker=heldout_speaker,
        )

    subset = LIBRISPEECH_SUBSETS[name][split]
    if name in _SAMPLES:  # its root holds the speakers: look for transcripts there
        d = _resolve_dir(
            root,
            [root, root / name, root / "data_small" / name],
            lambda c: any(c.glob("*/*/*.trans.txt")),
            name,
        )
        return load_librispeech(
            d,
            None,
            sample_rate or _SAMPLES[name][0],
            name=f"{name}/{split}",
            fetch_hint=_fetch_hint(name),
        )
    cands = [root, root / "data_small"] if name == "data_small" else [root, root / "LibriSpeech"]
    d = _resolve_dir(root, cands, lambda c: (c / subset).is_dir(), name)
    if name == "mini-librispeech" and split == "test":
        log.warning(
            "mini-librispeech has no test subset: test = %s (the dev audio); "
            "report it as dev, and do not tune on it",
            subset,
        )
    return load_librispeech(
        d,
        [subset],
        sample_rate or 16000,
        name=f"{name}/{split}",
        fetch_hint=_fetch_hint(name, root),
    )
