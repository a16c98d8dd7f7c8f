#!/usr/bin/env python
"""Regenerate ``data_small/``: a tiny synthetic speech corpus in the LibriSpeech layout.

Why it exists: the tests, the CI and a first offline run need *some* speech with
transcripts that ships inside the repository (a few MB), without FSDD or LibriSpeech.
It is synthesised with espeak-ng (``apt-get install espeak-ng``), never needed at test
time: only this script calls it.

What it makes (all from one seed):

* speakers = espeak-ng voice (accent) + variant (``+m1`` .. ``+f5``) + a pitch and a
  speaking rate of their own; train, dev and test speakers are disjoint combinations, each
  split half "male", half "female" variants;
* utterances: half connected digits (1-7 digit words, "SEVEN THREE ONE"), half short
  sentences from a fixed 70-word grammar ("THE RED CAT SEES A SMALL BIRD");
* audio: espeak-ng's 22.05 kHz output resampled to 16 kHz, edge silence trimmed, then
  50-250 ms of silence at both ends, a random peak level (0.3-0.9), white noise at
  30-40 dB SNR, then TPDF-dithered rounding to ``--bits`` (8) significant bits, stored as
  16-bit FLAC (FLAC drops the unused low bits: that keeps 800 utterances near 8 MB, where
  full 16-bit noisy audio would take about 25 MB).

Files: ``data_small/{train,dev,test}/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``
with ``<speaker>-<chapter>.trans.txt``; chapter 10 holds the digits, 20 the sentences.
``data_small/README.md`` is written too. Re-running with the same seed and the same
espeak-ng version reproduces the corpus byte for byte (other espeak-ng versions give the
same transcripts and speakers but slightly different audio).

Usage: ``python scripts/make_data_small.py [--out data_small] [--seed 0]``
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from usmlite_edu.speech.audio import resample, write_audio  # noqa: E402

SAMPLE_RATE = 16000
VOICES = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
FEMALE = ("f1", "f2", "f3", "f4", "f5")
#: split -> (speaker id base, male speakers, female speakers, utterances)
SPLITS = {"train": (1001, 8, 8, 600), "dev": (2001, 2, 2, 100), "test": (3001, 2, 2, 100)}
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

DET = ("the", "a", "my", "your", "this", "that")
ADJ = (
    "big",
    "small",
    "red",
    "blue",
    "green",
    "old",
    "new",
    "good",
    "hot",
    "cold",
    "happy",
    "quiet",
    "dark",
    "long",
)
NOUN = (
    "cat",
    "dog",
    "bird",
    "fish",
    "car",
    "book",
    "house",
    "tree",
    "ship",
    "train",
    "phone",
    "door",
    "box",
    "cup",
    "shoe",
    "road",
    "hat",
    "lamp",
)
VERB_S = ("sees", "likes", "finds", "takes", "opens", "moves", "holds", "wants", "brings", "needs")
VERB = ("see", "like", "find", "take", "open", "move", "hold", "want", "bring", "need")
IVERB_S = ("runs", "sleeps", "waits", "stops", "sits", "falls")
PREP = ("on", "in", "near", "under", "behind")
PRON = ("i", "we", "you", "they")


@dataclass(frozen=True)
class Speaker:
    sid: int
    voice: str
    variant: str
    pitch: int  # espeak-ng -p, 0-99
    rate: int  # espeak-ng -s, words per minute

    @property
    def name(self) -> str:
        return f"{self.voice}+{self.variant}"


def assign_speakers(seed: int) -> dict[str, list[Speaker]]:
    """Disjoint voice+variant combinations per split, half male and half female variants."""
    rng = np.random.default_rng([seed, 1])
    pools = {
        g: [(v, x) for v in VOICES for x in variants]
        for g, variants in (("m", MALE), ("f", FEMALE))
    }
    for g in pools:
        pools[g] = [pools[g][i] for i in rng.permutation(len(pools[g]))]
    out: dict[str, list[Speaker]] = {}
    for split, (base, n_m, n_f, _) in SPLITS.items():
        combos = [pools["m"].pop() for _ in range(n_m)] + [pools["f"].pop() for _ in range(n_f)]
        out[split] = [
            Speaker(base + i, v, x, int(rng.integers(30, 71)), int(rng.integers(150, 201)))
            for i, (v, x) in enumerate(combos)
        ]
    return out


def sentence(rng: np.random.Generator) -> str:
    """A short sentence from a small fixed grammar (3-7 words)."""
    c = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    t = int(rng.integers(5))
    if t == 0:
        return f"{c(DET)} {c(ADJ)} {c(NOUN)} {c(VERB_S)} {c(DET)} {c(NOUN)}"
    if t == 1:
        return f"{c(DET)} {c(NOUN)} {c(VERB_S)} {c(DET)} {c(ADJ)} {c(NOUN)}"
    if t == 2:
        return f"{c(DET)} {c(NOUN)} {c(IVERB_S)} {c(PREP)} {c(DET)} {c(NOUN)}"
    if t == 3:
        return f"{c(PRON)} {c(VERB)} {c(DET)} {c(ADJ)} {c(NOUN)}"
    return f"{c(VERB)} {c(DET)} {c(NOUN)}"


def digits(rng: np.random.Generator) -> str:
    return " ".join(DIGITS[int(d)] for d in rng.integers(0, 10, int(rng.integers(1, 8))))


def synthesize(
    text: str, spk: Speaker, rng: np.random.Generator, tmp: Path, bits: int
) -> tuple[np.ndarray, float]:
    """espeak-ng -> 16 kHz, trimmed, padded, random gain, light white noise, quantised.

    Returns the audio and its measured SNR in dB: power of the speech span (pauses
    between words included) over the power of the leading pad (noise and dither only).
    """
    rate = int(round(spk.rate * rng.uniform(0.9, 1.1)))
    pitch = int(np.clip(spk.pitch + rng.integers(-5, 6), 0, 99))
    wav = tmp / "u.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            f"{spk.voice}+{spk.variant}",
            "-s",
            str(rate),
            "-p",
            str(pitch),
            "-w",
            str(wav),
            text,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    x, sr = sf.read(str(wav), dtype="float64")
    x = resample(x, sr, SAMPLE_RATE).astype(np.float64)
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    x = x[loud[0] : loud[-1] + 1]
    pad = lambda: np.zeros(int(rng.uniform(0.05, 0.25) * SAMPLE_RATE))  # noqa: E731
    speech_power = float(np.mean(x**2))
    gain = rng.uniform(0.3, 0.9) / np.abs(x).max()
    lead, tail = pad(), pad()
    span = slice(len(lead), len(lead) + len(x))
    x = np.concatenate([lead, x * gain, tail])
    snr = rng.uniform(30.0, 40.0)
    x += rng.normal(0.0, np.sqrt(speech_power * gain**2 / 10 ** (snr / 10)), x.shape)
    step = 2.0 ** (1 - bits)  # `bits` significant bits over [-1, 1)
    # TPDF dither: without it the quiet noise rounds to digital zero in the pauses.
    x += (rng.uniform(-0.5, 0.5, x.shape) + rng.uniform(-0.5, 0.5, x.shape)) * step
    y = np.clip(np.round(x / step) * step, -1.0, 1.0 - step)
    measured = 10 * np.log10(np.mean(y[span] ** 2) / max(np.mean(y[: len(lead)] ** 2), 1e-20))
    return y, float(measured)


def generate(out: Path, seed: int, bits: int) -> dict[str, dict]:
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng not found: install it (Debian/Ubuntu: apt-get install espeak-ng)")
    speakers = assign_speakers(seed)
    stats: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for s_idx, (split, (_, _, _, n_utts)) in enumerate(SPLITS.items()):
            split_dir = out / split
            if split_dir.exists():
                shutil.rmtree(split_dir)
            spks = speakers[split]
            trans: dict[tuple[int, int], list[str]] = {}
            seconds, snrs = 0.0, []
            for i in range(n_utts):
                spk = spks[i % len(spks)]
                rng = np.random.default_rng([seed, 2, s_idx, i])
                chapter = 10 if i // len(spks) % 2 == 0 else 20
                text = digits(rng) if chapter == 10 else sentence(rng)
                lines = trans.setdefault((spk.sid, chapter), [])
                uid = f"{spk.sid}-{chapter}-{len(lines):04d}"
                x, snr = synthesize(text, spk, rng, tmp, bits)
                snrs.append(snr)
                seconds += len(x) / SAMPLE_RATE
                write_audio(split_dir / str(spk.sid) / str(chapter) / f"{uid}.flac", x, SAMPLE_RATE)
                lines.append(f"{uid} {text.upper()}")
            for (sid, chapter), lines in trans.items():
                (split_dir / str(sid) / str(chapter) / f"{sid}-{chapter}.trans.txt").write_text(
                    "\n".join(lines) + "\n"
                )
            size = sum(p.stat().st_size for p in split_dir.rglob("*") if p.is_file())
            stats[split] = {
                "utterances": n_utts,
                "seconds": seconds,
                "bytes": size,
                "speakers": spks,
                "snr": snrs,
            }
            print(f"{split}: {n_utts} utterances, {seconds / 60:.1f} min, {size / 1e6:.2f} MB")
    return stats


def write_readme(out: Path, seed: int, bits: int, stats: dict[str, dict]) -> None:
    version = (
        subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
        .stdout.split("Data at")[0]
        .strip()
    )
    digest = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != "README.md":
            digest.update(p.relative_to(out).as_posix().encode() + b"\0" + p.read_bytes())
    total = sum(s["bytes"] for s in stats.values())
    n_utts = sum(s["utterances"] for s in stats.values())
    minutes = sum(s["seconds"] for s in stats.values()) / 60
    n_spk = sum(len(s["speakers"]) for s in stats.values())
    snr = np.percentile([v for s in stats.values() for v in s["snr"]], [5, 50, 95])
    rows = "\n".join(
        f"| {split} | {s['utterances']} | {s['seconds'] / 60:.1f} | {s['bytes'] / 1e6:.2f} | "
        f"{len(s['speakers'])} |"
        for split, s in stats.items()
    )
    spk_rows = "\n".join(
        f"| {split} | {sp.sid} | `{sp.voice}` | `+{sp.variant}` | {sp.pitch} | {sp.rate} |"
        for split, s in stats.items()
        for sp in s["speakers"]
    )
    text = f"""# data_small: a tiny synthetic speech corpus (LibriSpeech layout)

Generated by `scripts/make_data_small.py --seed {seed} --bits {bits}` with {version}.
Do not edit by hand: re-run the script (it needs `espeak-ng`; Debian/Ubuntu:
`apt-get install espeak-ng`). Same seed and espeak-ng version give identical files
(content sha256 `{digest.hexdigest()[:16]}`).

**What it is for**: tests, CI and a first offline run of the speech pipeline. It is
synthetic speech (espeak-ng's formant synthesiser), far easier and far less varied than
real speech: word error rates on it say nothing about LibriSpeech or FSDD.

**Licence**: generated by this project from our own texts; dedicated to the public domain
under CC0 1.0 (espeak-ng's GPL covers the program, not the audio it outputs).

## Layout and contents

`{{train,dev,test}}/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` plus
`<speaker>-<chapter>.trans.txt` (lines `UTTID TRANSCRIPT`, upper case), as in LibriSpeech;
load with `usmlite_edu.speech.corpora.load_corpus("data_small", "data_small", split)`.
Chapter `10`: connected digits, 1-7 digit words ("SEVEN THREE ONE"). Chapter `20`: short
sentences from a fixed grammar of about 70 words ("THE RED CAT SEES A SMALL BIRD").

Audio: 16 kHz mono FLAC. espeak-ng's 22.05 kHz output is resampled, its edge silence
trimmed, then 50-250 ms of silence is added at both ends, the peak level is drawn from
0.3-0.9, white noise is added at 30-40 dB SNR, and samples are rounded to {bits}
significant bits with TPDF dither (so pauses hold a noise floor near -50 dBFS rather than
digital silence). Measured SNR (power of the speech span over that of the leading pause):
median {snr[1]:.0f} dB, 5th-95th percentile {snr[0]:.0f}-{snr[2]:.0f} dB; the rounding adds
noise on top of the 30-40 dB white noise. It is also what keeps the corpus small: FLAC
stores only the bits used, and full 16-bit noisy audio would take about three times the
space.

| split | utterances | minutes | MB | speakers |
|---|---|---|---|---|
{rows}
| total | {n_utts} | {minutes:.1f} | {total / 1e6:.2f} | {n_spk} |

## Speakers

A speaker is an espeak-ng voice (accent) with a variant (voice quality; `m*` male,
`f*` female), its own pitch (`-p`) and speaking rate (`-s`, words per minute; each
utterance varies rate by +-10% and pitch by +-5). No voice+variant combination appears in
two splits; the accents and variants themselves are shared.

| split | id | voice | variant | pitch | rate |
|---|---|---|---|---|---|
{spk_rows}
"""
    (out / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "data_small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bits", type=int, default=8, help="significant bits kept per sample")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stats = generate(args.out, args.seed, args.bits)
    write_readme(args.out, args.seed, args.bits, stats)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
