#!/usr/bin/env python
"""Build ``data_small/fsdd_sample/``: real connected-digit test speech that ships in the repo.

Why it exists: ``make run`` must show the committed B0 (``results/cpu/b0``) transcribing
*real* speech on a fresh, offline machine, and FSDD itself is a download. This script
writes the FSDD connected-digit **test** utterances that the reduced-scale reproduction
evaluated B0 on (``usmlite_edu/training/reproduce.py``, ``_eval_sets``), as files:

* the project's own deterministic builder, ``corpora.load_fsdd_connected(FSDD, "test",
  seed=0)`` (what ``load_corpus("fsdd", FSDD, "test", seed=0)`` returns), draws only on
  FSDD's official test recordings, index 0-4 of every speaker;
* every utterance of the speakers B0 was trained on is kept (the "test" rows of
  ``results/cpu/results.json``), plus the first ``--unseen`` utterances of the held-out
  speaker (B0 was trained without ``--heldout-speaker``), listed as such in ``sources.tsv``
  and the README.

Layout (what :func:`usmlite_edu.speech.corpora.load_librispeech` reads)::

    OUT/<speaker>/<seed>/<speaker>-<seed>-<n>.flac     8 kHz mono 16-bit FLAC
    OUT/<speaker>/<seed>/<speaker>-<seed>.trans.txt     lines "UTTID SEVEN THREE ONE"
    OUT/sources.tsv                                     utterance -> FSDD recordings
    OUT/README.md                                       provenance, licence, counts

``<n>`` is the builder's utterance number (``fsdd-test-s0-<n>``), so every file traces back
to the recordings it was made from. The script refuses to write anything if a single
source recording lies outside the test range. Same FSDD copy and seed give the same bytes.

Usage: ``python scripts/make_fsdd_sample.py --fsdd /work/shared/corpora/fsdd``
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from usmlite_edu.speech.audio import write_audio  # noqa: E402
from usmlite_edu.speech.corpora import (  # noqa: E402
    _FSDD_NAME,
    FSDD_SAMPLE_RATE,
    FSDD_SPLIT_INDICES,  # noqa: E402
    load_fsdd_connected,
)

DEFAULT_OUT = ROOT / "data_small" / "fsdd_sample"


def recording_index(name: str) -> int:
    """The recording index of an FSDD file name ``{digit}_{speaker}_{index}.wav``."""
    m = _FSDD_NAME.match(name)
    if m is None:
        raise ValueError(f"not an FSDD recording name: {name!r}")
    return int(m.group(3))


def build(
    fsdd_dir: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    heldout_speaker: str = "theo",
    unseen: int = 8,
) -> dict:
    """Write the sample to ``out`` (replacing it); returns the counts written."""
    split = load_fsdd_connected(fsdd_dir, "test", seed=seed, sample_rate=FSDD_SAMPLE_RATE)
    if split.skipped:
        raise RuntimeError(
            f"unreadable FSDD recordings, refusing a partial sample: {split.skipped[:3]}"
        )
    speakers = {u.speaker for u in split.utterances}
    if heldout_speaker not in speakers:
        raise ValueError(f"held-out speaker {heldout_speaker!r} not in {sorted(speakers)}")
    seen = [u for u in split.utterances if u.speaker != heldout_speaker]
    held = [u for u in split.utterances if u.speaker == heldout_speaker][:unseen]
    chosen = seen + held
    test_range = FSDD_SPLIT_INDICES["test"]
    for u in chosen:  # the whole point: nothing a model trains or tunes on
        bad = [s for s in split.sources[u.uid] if recording_index(s) not in test_range]
        if bad:
            raise RuntimeError(f"{u.uid} uses recordings outside the test split: {bad}")

    out = Path(out)
    tmp = Path(
        tempfile.mkdtemp(prefix=".fsdd_sample.", dir=out.parent if out.parent.is_dir() else None)
    )
    try:
        trans: dict[Path, list[str]] = {}
        rows = ["uid\tspeaker\tb0\tseconds\twords\trecordings"]
        digest = hashlib.sha256()
        for u in chosen:
            n = int(u.uid.rsplit("-", 1)[1])  # fsdd-test-s0-00012 -> 12
            uid = f"{u.speaker}-{seed}-{n:04d}"
            d = tmp / u.speaker / str(seed)
            write_audio(d / f"{uid}.flac", u.audio, FSDD_SAMPLE_RATE)
            trans.setdefault(d / f"{u.speaker}-{seed}.trans.txt", []).append(
                f"{uid} {u.text.upper()}"
            )
            role = "unseen" if u.speaker == heldout_speaker else "seen"
            rows.append(
                f"{uid}\t{u.speaker}\t{role}\t{u.audio.size / FSDD_SAMPLE_RATE:.2f}\t"
                f"{len(u.text.split())}\t{','.join(split.sources[u.uid])}"
            )
        for path, lines in trans.items():
            lines.sort()
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "sources.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        for p in sorted(tmp.rglob("*")):  # a content hash over every file, for the README
            if p.is_file():
                digest.update(str(p.relative_to(tmp)).encode() + b"\0" + p.read_bytes())
        stats = _stats(chosen, heldout_speaker, tmp)
        stats["sha256"] = digest.hexdigest()[:16]
        n_held = sum(u.speaker == heldout_speaker for u in split.utterances)
        (tmp / "README.md").write_text(
            _readme(stats, seed, heldout_speaker, unseen, n_held), encoding="utf-8"
        )
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return stats


def _stats(chosen, heldout: str, tmp: Path) -> dict:
    by = {
        "seen": [u for u in chosen if u.speaker != heldout],
        "unseen": [u for u in chosen if u.speaker == heldout],
    }
    s = {}
    for role, us in by.items():
        s[role] = {
            "utterances": len(us),
            "words": sum(len(u.text.split()) for u in us),
            "seconds": sum(u.audio.size for u in us) / FSDD_SAMPLE_RATE,
            "speakers": dict(sorted(Counter(u.speaker for u in us).items())),
        }
    s["bytes"] = sum(p.stat().st_size for p in tmp.rglob("*.flac"))
    s["flac_files"] = len(list(tmp.rglob("*.flac")))
    info = sf.info(str(next(tmp.rglob("*.flac"))))
    s["format"] = f"{info.samplerate} Hz, {info.channels} channel, {info.subtype_info}"
    return s


def _range(r: tuple[float, float], scale: float = 1.0) -> str:
    return f"{r[0] * scale:g}-{r[1] * scale:g}"


def _readme(s: dict, seed: int, heldout: str, unseen: int, n_held: int) -> str:
    seen, un = s["seen"], s["unseen"]
    # the builder's own defaults, so the description cannot drift from the audio
    b = {k: p.default for k, p in inspect.signature(load_fsdd_connected).parameters.items()}
    tot_u = seen["utterances"] + un["utterances"]
    tot_w = seen["words"] + un["words"]
    spk = ", ".join(f"{k} {v}" for k, v in {**seen["speakers"], **un["speakers"]}.items())
    return f"""# fsdd_sample: real connected-digit test speech (FSDD test split only)

{tot_u} utterances ({tot_w} digit words, {(seen["seconds"] + un["seconds"]) / 60:.1f} minutes,
{s["bytes"] / 1e6:.2f} MB of FLAC: {s["format"]}) of real human speech: spoken digits
from the Free Spoken Digit Dataset joined into connected-digit utterances
("SEVEN THREE ONE").
It is what `make run` transcribes with the committed B0 (`results/cpu/b0`), offline.

Generated by `python scripts/make_fsdd_sample.py --fsdd /work/shared/corpora/fsdd --seed {seed}
--heldout-speaker {heldout} --unseen {unseen}` (the folder holding FSDD's `recordings/`,
as the project's fetch command downloads it). Do not edit by hand: re-run the script; the same
FSDD copy gives the same bytes (content sha256 `{s["sha256"]}`).

## What it is, and what it is not

* **Test split only, never trained on.** The utterances are those of
  `usmlite_edu.speech.corpora.load_fsdd_connected(FSDD, "test", seed={seed})`: built only from FSDD's
  official test recordings, index 0-4 of each speaker and digit (the `test` row of the
  table in `usmlite_edu/speech/corpora.py`). Training (index 10-49) and tuning (index 5-9) never see
  them; `sources.tsv` names the recordings of every utterance and `tests/test_main_job.py`
  checks that they all lie in 0-4.
* **Seen speakers** ({seen["utterances"]} utterances, {seen["words"]} words): every test
  utterance of the speakers B0 was trained on, i.e. exactly B0's "test" set in
  `results/cpu/results.json` (stored here as 16-bit FLAC, which rounds each sample to 1/32768).
* **Unseen speaker** ({un["utterances"]} utterances, {un["words"]} words): the first
  {un["utterances"]} (in the builder's order) of the split's {n_held} utterances by `{heldout}`,
  whom B0 never heard (the reproduction trains with `heldout_speaker="{heldout}"`).
  Column `b0` of `sources.tsv` says `unseen`. Too few for a precise WER: an indication only.
* Utterances per speaker: {spk}.

Audio as the builder makes it: the real 8 kHz recordings of one speaker,
{_range(b["silence_s"], 1000)} ms of silence between and around them, a random peak level
({_range(b["peak"])}) and white noise at {_range(b["snr_db"])} dB SNR; stored as 8 kHz mono
16-bit FLAC.

## Layout

LibriSpeech layout, read by `usmlite_edu.speech.corpora.load_corpus("fsdd_sample", None, "test")`
(its only split): `<speaker>/{seed}/<speaker>-{seed}-<n>.flac` plus
`<speaker>-{seed}.trans.txt` (lines `UTTID TRANSCRIPT`, upper case), where `<n>` is the
builder's utterance number (`fsdd-test-s{seed}-<n>`) and the chapter is the seed.

## Licence and attribution

The recordings are from the **Free Spoken Digit Dataset** (FSDD), Zohar Jackson
(GitHub: Jakobovski) and contributors, <https://github.com/Jakobovski/free-spoken-digit-dataset>
(folder `recordings/`), licensed under **CC BY-SA 4.0**
(<https://creativecommons.org/licenses/by-sa/4.0/>). The voices are FSDD's speakers
{", ".join(sorted({**seen["speakers"], **un["speakers"]}))}, recorded by FSDD's contributors (see
FSDD's README for who they are). This sample is an adaptation (recordings joined, level changed,
noise added, re-encoded) and is distributed under the same **CC BY-SA 4.0** licence
(ShareAlike). The rest of `data_small/` is synthetic speech made by this project and is
CC0 1.0; this folder is the exception.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fsdd", required=True, help="FSDD folder (holding recordings/)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--seed", type=int, default=0, help="the builder's seed (B0's: 0)")
    ap.add_argument("--heldout-speaker", default="theo", help="the speaker B0 was trained without")
    ap.add_argument(
        "--unseen", type=int, default=8, help="utterances of the held-out speaker to include"
    )
    a = ap.parse_args(argv)
    s = build(a.fsdd, a.out, seed=a.seed, heldout_speaker=a.heldout_speaker, unseen=a.unseen)
    print(
        f"{a.out}: {s['flac_files']} utterances "
        f"({s['seen']['utterances']} seen, {s['unseen']['utterances']} unseen), "
        f"{s['seen']['words'] + s['unseen']['words']} words, {s['bytes'] / 1e6:.2f} MB, "
        f"sha256 {s['sha256']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
