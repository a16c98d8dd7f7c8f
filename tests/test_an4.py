"""AN4 (usmlite_edu.speech.corpora.load_an4, speech.fetch for ``data fetch an4``): the
Sphinx layout, the committed speaker-disjoint dev split, text normalisation, bad lines
and files counted, and the fetcher's content check, offline."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from script_loader import load_script

from usmlite_edu.speech import fetch
from usmlite_edu.speech.corpora import AN4_DEV_SPEAKERS, load_an4, load_corpus

REPO = Path(__file__).resolve().parents[1]
SHARED_AN4 = REPO.parent / "shared" / "corpora" / "an4"
needs_an4 = pytest.mark.skipif(
    not (SHARED_AN4 / "etc" / "an4_train.transcription").is_file(),
    reason="AN4 not found at ../shared/corpora/an4 (usmlite-edu data fetch an4 --to DIR)",
)


def _wav(path: Path, seconds: float = 0.2, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)).astype(np.float32)
    sf.write(path, x, 16000, subtype="PCM_16")


def _tiny_an4(root: Path) -> Path:
    """Two dev speakers, two train speakers, one test speaker, and some bad lines."""
    train = [
        ("an1-fash-b", "<s> YES </s>"),
        ("an2-fash-b", "<s> A B C FIVE </s>"),
        ("an3-mcen-b", "<s> RUBOUT G M E F THREE </s>"),
        ("an4-fzzz-b", "<s> STOP </s>"),
        ("an5-fzzz-b", "<s> ERASE C Q </s>"),
        ("an6-mzzz-b", "<s> GO </s>"),
    ]
    lines = [f"{t} ({u})" for u, t in train]
    lines += [
        "<s> NO ID HERE </s>",  # malformed: no (id)
        "<s> GO </s> (an6-mzzz-b)",  # duplicate id
        "<s> ENTER </s> (an7-mzzz-b)",  # audio missing
        "<s>  </s> (an8-mzzz-b)",  # empty transcript
    ]
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "an4_train.transcription").write_text("\n".join(lines) + "\n")
    (root / "etc" / "an4_test.transcription").write_text(
        "RUBOUT G M E F THREE NINE (an406-fcaw-b)\nERASE C Q Q F SEVEN (an407-fcaw-b)\n"
    )
    for i, (uid, _) in enumerate(train + [("an8-mzzz-b", "")]):
        _wav(root / "wav" / "an4_clstk" / uid.split("-")[1] / f"{uid}.wav", seed=i)
    for uid in ("an406-fcaw-b", "an407-fcaw-b"):
        _wav(root / "wav" / "an4test_clstk" / "fcaw" / f"{uid}.wav")
    return root


def test_splits_of_the_sphinx_layout(tmp_path):
    root = _tiny_an4(tmp_path / "an4")
    train, dev, test = (load_an4(root, s) for s in ("train", "dev", "test"))
    # a line without an id belongs to no split: both splits read from its file report it
    assert [w for w, _ in dev.skipped] == [f"{root}/etc/an4_train.transcription:7"]
    assert {u.speaker for u in dev} == {"fash", "mcen"}  # dev speakers held out whole
    assert {u.speaker for u in train} == {"fzzz", "mzzz"}
    assert [u.uid for u in test] == ["an406-fcaw-b", "an407-fcaw-b"]
    texts = {u.uid: u.text for split in (train, dev, test) for u in split}
    assert texts["an3-mcen-b"] == "rubout g m e f three"  # letters stay one-letter words
    assert texts["an407-fcaw-b"] == "erase c q q f seven"
    assert test.sample_rate == 16000
    assert test.utterances[0].load(16000).shape == (3200,)


def test_bad_lines_and_files_are_counted_with_their_reason(tmp_path):
    root = _tiny_an4(tmp_path / "an4")
    train = load_an4(root, "train")
    reasons = " | ".join(r for _, r in train.skipped)
    assert len(train.skipped) == 4, train.skipped
    for expected in ("not '<s> WORDS", "duplicate utterance id", "missing audio", "empty"):
        assert expected in reasons
    assert any(what.endswith("an4_train.transcription:7") for what, _ in train.skipped)


def test_a_corrupt_wav_is_skipped_and_an_unreadable_transcription_stops_the_load(tmp_path):
    root = _tiny_an4(tmp_path / "an4")
    (root / "wav" / "an4_clstk" / "fzzz" / "an4-fzzz-b.wav").write_bytes(b"RIFF\0\0\0\0junk")
    train = load_an4(root, "train")
    assert "an4-fzzz-b" not in {u.uid for u in train}
    assert any(w == "an4-fzzz-b" and "unreadable audio" in r for w, r in train.skipped)
    (root / "etc" / "an4_test.transcription").write_bytes(b"\xff\xfe\xfa bad bytes (x-y-z)\n")
    with pytest.raises(ValueError, match="an4_test.transcription cannot be read"):
        load_an4(root, "test")
    shutil.rmtree(root / "etc")
    with pytest.raises(FileNotFoundError, match="data fetch an4"):
        load_corpus("an4", tmp_path, "train")


def test_audio_that_no_line_names_is_counted(tmp_path):
    root = _tiny_an4(tmp_path / "an4")
    _wav(root / "wav" / "an4_clstk" / "fzzz" / "an99-fzzz-b.wav")
    train = load_an4(root, "train")
    assert any(w == "an99-fzzz-b" and "has no line" in r for w, r in train.skipped)
    assert not any(w == "an99-fzzz-b" for w, _ in load_an4(root, "dev").skipped)


def test_load_corpus_finds_an4_in_a_parent_folder(tmp_path):
    _tiny_an4(tmp_path / "an4")
    assert len(load_corpus("an4", tmp_path, "dev")) == 3


def test_the_dev_speakers_follow_their_written_rule():
    """Of each gender, the four training speakers with the smallest CRC-32 of their id:
    checked against the speaker list of the real corpus when present, else the rule's
    output shape."""
    assert len(AN4_DEV_SPEAKERS) == 8
    assert sum(s.startswith("f") for s in AN4_DEV_SPEAKERS) == 4
    if SHARED_AN4.is_dir():
        speakers = sorted(p.name for p in (SHARED_AN4 / "wav" / "an4_clstk").iterdir())
        want = []
        for g in "fm":
            same = sorted((zlib.crc32(s.encode()), s) for s in speakers if s[0] == g)
            want += [s for _, s in same[:4]]
        assert tuple(sorted(want)) == AN4_DEV_SPEAKERS


@needs_an4
def test_the_real_corpus_counts_and_disjoint_speakers():
    splits = {s: load_an4(SHARED_AN4, s) for s in ("train", "dev", "test")}
    assert {s: len(v) for s, v in splits.items()} == {"train": 848, "dev": 100, "test": 130}
    assert all(not v.skipped for v in splits.values())
    spk = {s: {u.speaker for u in v} for s, v in splits.items()}
    assert (len(spk["train"]), len(spk["dev"]), len(spk["test"])) == (66, 8, 10)
    assert not spk["train"] & spk["dev"] and not spk["train"] & spk["test"]
    assert not spk["dev"] & spk["test"]
    words = {s: {w for u in v for w in u.text.split()} for s, v in splits.items()}
    training = words["train"] | words["dev"]
    assert len(training) == 99 and {"a", "z", "rubout", "seventeen"} <= training
    assert words["test"] - training == {"thirteen", "november"}  # two words never trained on


# ----------------------------------------------------------------------------- fetching


def _zip_of(root: Path, out: Path, top: str = "an4-b567d13", extra: dict | None = None) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, f"{top}/{p.relative_to(root).as_posix()}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out


def _digest_of(root: Path) -> tuple[int, str]:
    sums = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and fetch._AN4_MEMBER.match(p.relative_to(root).as_posix())
    }
    return len(sums), fetch.an4_digest(sums)


def test_fetch_unpacks_a_placed_archive_whose_content_matches(tmp_path, monkeypatch):
    src = _tiny_an4(tmp_path / "src")
    (src / "LICENSE").write_text("CMU licence text\n")
    n, digest = _digest_of(src)
    monkeypatch.setattr(fetch, "AN4_FILES", n)
    monkeypatch.setattr(fetch, "AN4_DIGEST", digest)
    to = tmp_path / "data"
    to.mkdir()
    archive = fetch.CORPUS_ARCHIVES["an4"][0]
    _zip_of(src, to / archive.filename, extra={"an4-b567d13/etc/an4.dic": "A AH\n"})
    got = fetch.fetch("an4", to, base_url="http://127.0.0.1:9")  # never contacted
    assert got == to / "an4"
    assert (got / "LICENSE").read_text() == "CMU licence text\n"
    assert len(load_an4(got, "dev")) == 3
    assert not (got / "etc" / "an4.dic").exists()  # only the kept members are unpacked
    assert not (to / archive.filename).exists()  # archive removed after unpacking
    assert fetch.fetch("an4", to, base_url="http://127.0.0.1:9") == got  # done: no download


def test_fetch_refuses_a_zip_with_a_member_outside_the_target(tmp_path):
    src = _tiny_an4(tmp_path / "src")
    to = tmp_path / "data"
    to.mkdir()
    archive = fetch.CORPUS_ARCHIVES["an4"][0]
    _zip_of(src, to / archive.filename, extra={"an4-b567d13/../evil.txt": "x"})
    with pytest.raises(fetch.FetchError, match="outside the target folder"):
        fetch.fetch("an4", to, base_url="http://127.0.0.1:9")
    assert not (tmp_path / "evil.txt").exists() and not (to / "an4").exists()


def test_fetch_refuses_an_archive_whose_content_differs(tmp_path, monkeypatch):
    src = _tiny_an4(tmp_path / "src")
    n, digest = _digest_of(src)
    monkeypatch.setattr(fetch, "AN4_FILES", n)
    monkeypatch.setattr(fetch, "AN4_DIGEST", digest)
    wav = src / "wav" / "an4_clstk" / "fash" / "an1-fash-b.wav"
    data = bytearray(wav.read_bytes())
    data[-1] ^= 1  # one flipped bit in one file
    wav.write_bytes(bytes(data))
    to = tmp_path / "data"
    to.mkdir()
    archive = fetch.CORPUS_ARCHIVES["an4"][0]
    _zip_of(src, to / archive.filename)
    with pytest.raises(fetch.FetchError, match="not AN4 at the pinned commit"):
        fetch.fetch("an4", to, base_url="http://127.0.0.1:9")
    assert (to / (archive.filename + ".bad")).is_file()
    assert not (to / "an4").exists()  # nothing unpacked


@needs_an4
def test_the_pinned_digest_is_the_shared_copy(tmp_path):
    assert _digest_of(SHARED_AN4) == (fetch.AN4_FILES, fetch.AN4_DIGEST)


# ------------------------------------------------- data_small/an4_sample (the main job's)
AN4_SAMPLE = REPO / "data_small" / "an4_sample"


def _make_an4_sample():
    return load_script("make_an4_sample")


def test_an4_sample_is_the_whole_test_set_with_its_licence():
    """130 utterances of 10 speakers, test only, the licence beside them, the README's
    content checksum that of the files (so an edit by hand shows)."""
    split = load_corpus("an4_sample", None, "test")
    assert len(split) == 130 and not split.skipped and split.sample_rate == 16000
    assert len({u.speaker for u in split}) == 10
    assert not {u.speaker for u in split} & set(AN4_DEV_SPEAKERS)
    assert all(u.speaker in u.uid.split("-") for u in split)
    assert "Carnegie Mellon" in (AN4_SAMPLE / "LICENSE").read_text()
    assert sum(p.stat().st_size for p in AN4_SAMPLE.rglob("*")) < 7e6
    digest = _make_an4_sample().content_digest(AN4_SAMPLE)
    assert f"content\nsha256 `{digest}`" in (AN4_SAMPLE / "README.md").read_text()
    for name in ("train", "dev"):  # a test sample must never be trainable
        with pytest.raises(ValueError, match="AN4's official test set"):
            load_corpus("an4_sample", None, name)


@needs_an4
def test_an4_sample_rebuilds_to_the_same_bytes_and_text(tmp_path):
    _make_an4_sample().build(SHARED_AN4, tmp_path / "s")
    files = sorted(p.relative_to(AN4_SAMPLE) for p in AN4_SAMPLE.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(tmp_path / "s") for p in (tmp_path / "s").rglob("*") if p.is_file()
    )
    for rel in files:
        assert (AN4_SAMPLE / rel).read_bytes() == (tmp_path / "s" / rel).read_bytes(), rel
    full = {u.uid: u.text for u in load_corpus("an4", SHARED_AN4, "test")}
    assert {u.uid: u.text for u in load_corpus("an4_sample", AN4_SAMPLE, "test")} == full
