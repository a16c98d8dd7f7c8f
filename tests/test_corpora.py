"""usmlite_edu.speech.corpora: LibriSpeech layout (data_small, broken files) and FSDD connected digits."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from usmlite_edu.speech import corpora
from usmlite_edu.speech.corpora import (
    DIGIT_WORDS,
    CorpusSplit,
    Utterance,
    fsdd_recordings,
    fsdd_speakers,
    load_corpus,
    load_fsdd_connected,
    load_librispeech,
    normalize_text,
)
from usmlite_edu.training.train import too_many_skipped

REPO = Path(__file__).resolve().parents[1]
DATA_SMALL = REPO / "data_small"


from fsdd_location import FSDD, needs_fsdd

# ------------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("HELLO, World!", "hello world"),
        ("  don't   STOP  ", "don't stop"),
        ("it\u2019s twenty-one", "it's twenty one"),
        ("Café NAÏVE", "cafe naive"),
        ("seven 3 one", "seven one"),
        ("...", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_utterance_is_frozen_hashable_and_resamples():
    with pytest.raises(ValueError, match="path or audio"):
        Utterance("u", "one", "s")
    u = Utterance("u", "one", "s", audio=np.zeros(800, np.float64), sample_rate=8000)
    assert u.audio.dtype == np.float32 and not u.audio.flags.writeable
    assert {u: 1}[Utterance("u", "one", "s", audio=np.ones(3), sample_rate=8000)] == 1
    assert len(u.load(16000)) == 1600 and u.load(8000) is u.audio


# ------------------------------------------------------------------- LibriSpeech layout


def test_data_small_splits():
    splits = {s: load_corpus("data_small", DATA_SMALL, s) for s in ("train", "dev", "test")}
    assert {s: len(c) for s, c in splits.items()} == {"train": 600, "dev": 100, "test": 100}
    speakers = {s: {u.speaker for u in c} for s, c in splits.items()}
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    for c in splits.values():
        assert c.skipped == [] and c.sample_rate == 16000
        assert all(u.text == normalize_text(u.text) and u.text for u in c)
    u = splits["test"].utterances[0]
    x = u.load(16000)
    assert x.dtype == np.float32 and 0.3 < len(x) / 16000 < 4.0 and np.abs(x).max() <= 1
    assert len(u.load(8000)) == pytest.approx(len(x) / 2, abs=1)
    digit_utts = [u for u in splits["train"] if u.uid.split("-")[1] == "10"]
    assert digit_utts and all(set(u.text.split()) <= set(DIGIT_WORDS) for u in digit_utts)


def test_data_small_default_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("USMLITE_DATA", raising=False)
    assert len(load_corpus("data_small", None, "dev")) == 100  # the repository's copy
    (tmp_path / "data_small").symlink_to(DATA_SMALL)
    monkeypatch.setenv("USMLITE_DATA", str(tmp_path))  # a parent holding data_small/
    assert len(load_corpus("data_small", None, "test")) == 100


def _chapter(root: Path, spk: str, chap: str, lines: list[str]) -> Path:
    d = root / spk / chap
    d.mkdir(parents=True)
    (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return d


def test_librispeech_skips_and_reports_bad_files(tmp_path, caplog):
    src = sorted((DATA_SMALL / "dev").rglob("*.flac"))[:3]
    d = _chapter(
        tmp_path,
        "19",
        "198",
        [
            "19-198-0000 HELLO WORLD",
            "19-198-0001 CORRUPT AUDIO",
            "19-198-0002 NO AUDIO HERE",
            "19-198-0003",
            "19-198-0004 ,,,",
            "19-198-0005 EMPTY FILE",
            "19-198-0000 AGAIN",
        ],
    )
    shutil.copy(src[0], d / "19-198-0000.flac")
    (d / "19-198-0001.flac").write_bytes(b"fLaC" + b"\x00" * 100)
    shutil.copy(src[1], d / "19-198-0003.flac")
    shutil.copy(src[2], d / "19-198-0004.flac")
    (d / "19-198-0005.flac").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="usmlite_edu.speech.corpora"):
        c = load_librispeech(tmp_path)
    assert [u.uid for u in c] == ["19-198-0000"]
    assert c.utterances[0].text == "hello world" and c.utterances[0].speaker == "19"
    reasons = dict(c.skipped)
    assert len(c.skipped) == 6
    assert "unreadable audio" in reasons["19-198-0001"]
    assert "19-198-0001.flac" in reasons["19-198-0001"]
    assert "missing audio file" in reasons["19-198-0002"]
    assert "empty transcript" in reasons["19-198-0003"]
    assert "empty transcript" in reasons["19-198-0004"]
    assert "empty" in reasons["19-198-0005"]
    assert any("duplicate" in r for _, r in c.skipped)
    assert sum("skipping" in r.message for r in caplog.records) == 6
    assert len(c.utterances[0].load(16000)) > 0


def test_librispeech_without_transcripts_names_dir_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_librispeech(tmp_path)
    assert str(tmp_path) in str(info.value) and "usmlite-edu data fetch" in str(info.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_librispeech(tmp_path / "nope")


def test_mini_librispeech_test_is_dev_clean_2(tmp_path, caplog):
    root = tmp_path / "LibriSpeech"
    for subset in ("train-clean-5", "dev-clean-2"):
        d = _chapter(root / subset, "84", "121123", ["84-121123-0000 ONE TWO"])
        shutil.copy(next((DATA_SMALL / "dev").rglob("*.flac")), d / "84-121123-0000.flac")
    with caplog.at_level(logging.WARNING, logger="usmlite_edu.speech.corpora"):
        c = load_corpus("mini-librispeech", tmp_path, "test")
    assert c.name == "mini-librispeech/test" and len(c) == 1
    assert "dev-clean-2" in c.utterances[0].path
    assert any("no test subset" in r.message for r in caplog.records)


def test_load_corpus_errors(monkeypatch, tmp_path):
    monkeypatch.delenv("USMLITE_DATA", raising=False)
    with pytest.raises(ValueError, match="USMLITE_DATA") as info:
        load_corpus("librispeech", None, "train")
    assert "data_dir" in str(info.value)
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("timit", tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_corpus("data_small", DATA_SMALL, "validation")
    with pytest.raises(ValueError, match="heldout_speaker"):
        load_corpus("data_small", DATA_SMALL, "train", heldout_speaker="x")
    with pytest.raises(FileNotFoundError, match="librispeech-100"):
        load_corpus("librispeech", tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="usmlite-edu data fetch fsdd"):
        load_corpus("fsdd", tmp_path, "dev")


# ------------------------------------------------------------------ FSDD connected digits


def _digits_of(names: tuple[str, ...]) -> list[str]:
    return [DIGIT_WORDS[int(n.split("_")[0])] for n in names]


@needs_fsdd
def test_fsdd_same_seed_same_corpus_other_seed_other_corpus():
    a = load_fsdd_connected(FSDD, "dev", seed=3, num_utterances=12)
    b = load_fsdd_connected(FSDD, "dev", seed=3, num_utterances=12)
    c = load_fsdd_connected(FSDD, "dev", seed=4, num_utterances=12)
    assert [u.text for u in a] == [u.text for u in b]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b))
    assert [u.text for u in a] != [u.text for u in c]
    prefix = load_fsdd_connected(FSDD, "dev", seed=3, num_utterances=5)
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(prefix, a))


@needs_fsdd
def test_fsdd_transcripts_match_recordings():
    c = load_fsdd_connected(FSDD, "test", seed=0, min_digits=2, max_digits=4)
    assert len(c) == pytest.approx(len(fsdd_recordings(FSDD, "test")) / 3, abs=1)
    assert c.sample_rate == 8000 and c.skipped == []
    for u in c:
        names = c.sources[u.uid]
        assert 2 <= len(u.text.split()) <= 4
        assert u.text.split() == _digits_of(names)
        assert {n.split("_")[1] for n in names} == {u.speaker}  # one speaker per utterance
        assert u.audio.dtype == np.float32 and np.abs(u.audio).max() <= 1.0
        assert len(u.audio) >= 0.05 * 8000 * (len(names) + 1)  # silences at least
        assert np.abs(u.audio[:200]).max() > 0  # light noise, not digital silence


@needs_fsdd
def test_fsdd_splits_are_disjoint():
    sets = {
        s: {(r.speaker, r.digit, r.index) for r in fsdd_recordings(FSDD, s)}
        for s in ("train", "dev", "test")
    }
    assert not sets["train"] & sets["dev"] and not sets["train"] & sets["test"]
    assert not sets["dev"] & sets["test"]
    assert {i for _, _, i in sets["test"]} == set(range(5))
    assert {i for _, _, i in sets["dev"]} == set(range(5, 10))
    assert min(i for _, _, i in sets["train"]) == 10
    dev = load_fsdd_connected(FSDD, "dev", num_utterances=20)
    used = {n for names in dev.sources.values() for n in names}
    allowed = {r.path.name for r in fsdd_recordings(FSDD, "dev")}
    assert used <= allowed


@needs_fsdd
def test_fsdd_heldout_speaker():
    speakers = fsdd_speakers(FSDD)
    assert "theo" in speakers and len(speakers) >= 5
    train = fsdd_recordings(FSDD, "train", heldout_speaker="theo")
    dev = fsdd_recordings(FSDD, "dev", heldout_speaker="theo")
    test = fsdd_recordings(FSDD, "test", heldout_speaker="theo")
    assert "theo" not in {r.speaker for r in train + dev}
    assert {r.speaker for r in test} == {"theo"} and {r.index for r in test} == set(range(50))
    c = load_corpus("fsdd", FSDD.parent, "test", heldout_speaker="theo")  # parent dir works
    assert {u.speaker for u in c} == {"theo"} and c.name == "fsdd/test/heldout-theo"
    with pytest.raises(ValueError, match="nobody"):
        fsdd_recordings(FSDD, "test", heldout_speaker="nobody")


@needs_fsdd
def test_fsdd_default_train_size_covers_recordings_about_twice():
    c = load_fsdd_connected(FSDD, "train", seed=0)
    n = len(fsdd_recordings(FSDD, "train"))
    uses = [name for names in c.sources.values() for name in names]
    assert len(c) == -(-2 * n // 4)
    assert len(set(uses)) == n and 1.7 * n < len(uses) < 2.3 * n


@needs_fsdd
def test_fsdd_unreadable_recording_is_skipped_and_never_used(tmp_path, caplog):
    rec = tmp_path / "recordings"
    rec.mkdir()
    for r in fsdd_recordings(FSDD, "test"):
        if r.speaker == "jackson":
            shutil.copy(r.path, rec / r.path.name)
    (rec / "3_jackson_2.wav").write_bytes(b"garbage" * 10)
    (rec / "notes.wav").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="usmlite_edu.speech.corpora"):
        c = load_fsdd_connected(tmp_path, "test", num_utterances=40, sample_rate=16000)
    assert dict(c.skipped).keys() == {"3_jackson_2.wav", "notes.wav"}
    assert "3_jackson_2.wav" not in {n for names in c.sources.values() for n in names}
    assert c.sample_rate == 16000 and isinstance(c, CorpusSplit)
    assert any("3_jackson_2.wav" in r.message for r in caplog.records)


def test_fsdd_missing_dir_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="0_jackson_0.wav"):
        fsdd_speakers(tmp_path)
    assert corpora.FSDD_SPLIT_INDICES["dev"] == range(5, 10)


def test_an_unreadable_transcript_file_counts_every_utterance_it_loses(tmp_path):
    """Issue 27: one bad byte in a chapter's transcript loses all of its utterances; each
    is counted (not one skip per file), so the 5% guard sees the real share."""
    src = REPO / "data_small" / "train"
    dst = tmp_path / "train"
    shutil.copytree(src, dst)
    good = load_librispeech(dst)
    transcripts = sorted(dst.rglob("*.trans.txt"))[:2]
    lost = 0
    for tr in transcripts:
        lost += sum(1 for line in tr.read_text().splitlines() if line.strip())
        tr.write_bytes(tr.read_bytes()[:10] + b"\xff" + tr.read_bytes()[11:])
    bad = load_librispeech(dst)
    assert len(bad.utterances) == len(good.utterances) - lost
    assert len(bad.skipped) == lost
    assert all("is unreadable" in reason for _, reason in bad.skipped)
    share = {"train": (len(bad.utterances), len(bad.skipped))}
    assert lost / len(good) > 0.05  # the case: 38 of 600, over the guard's 5%
    assert too_many_skipped(share) != []
