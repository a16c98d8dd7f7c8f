#!/usr/bin/env python
"""Two row records on the same utterances: each one's WER, their paired difference with its
95% interval, the verdict "A is no worse than B", and how many hypotheses are identical.

A *row record* is what ``usmlite-edu reproduce`` writes to ``DIR/rows/<row>.json``: its
``results`` hold, per split, every utterance's ``id`` / ``ref`` / ``hyp``. The difference is
:func:`usmlite_edu.core.stats.paired_difference` (WER(A) - WER(B) in points, 2,000 paired
bootstrap resamples of the utterances) and the verdict :func:`usmlite_edu.core.stats.verdict`
with ``no_worse`` (reproduced when the interval lies below the 1-point margin). One seed per
record, so the interval covers the utterances, not training noise.

Use it to check a change that should not move the WER, e.g. a row trained again after a
code change against the committed row (``results/an4/checks/README.md``)::

    PYTHONPATH=. python scripts/compare_rows.py NEW.json results/an4/rows/B0_s0.json --splits dev

Exit status 0; 2 with one line on stderr when a file cannot be read, is larger than
``MAX_RECORD_BYTES`` or is not a row record, lacks a split, or the two records do not hold
the same utterances.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from usmlite_edu.core import stats

#: a row record holds a few hundred transcripts (tens of kB); larger files are refused
#: before they are read, so memory stays bounded whatever is passed
MAX_RECORD_BYTES = 64 * 2**20


class Refused(Exception):
    """Bad input: the message is the one line the user sees."""


def load_row(path: Path) -> dict:
    """The record at ``path``; :class:`Refused` when it is unreadable or has no results."""
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise Refused(
                f"{path}: {path.stat().st_size:,} bytes is not a row record (at most "
                f"{MAX_RECORD_BYTES:,}); pass DIR/rows/<row>.json"
            )
        rec = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Refused(f"{path}: cannot read a row record ({e.__class__.__name__}: {e})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("results"), dict):
        raise Refused(f"{path}: not a row record (no 'results'); pass DIR/rows/<row>.json")
    return rec


def compare(a: dict, b: dict, split: str, names: tuple[str, str]) -> dict:
    """WERs, the paired difference and its verdict, and identical hypotheses on ``split``."""
    utts = []
    for rec, name in zip((a, b), names):
        res = rec["results"].get(split)
        if not isinstance(res, dict) or not res.get("utterances"):
            have = ", ".join(sorted(rec["results"])) or "none"
            raise Refused(f"{name}: no transcripts for split {split!r} (it has: {have})")
        utts.append(res["utterances"])
    try:
        sa, sb = (stats.score(sorted(us, key=lambda u: u["id"])) for us in utts)
        iv = stats.paired_difference([sa], [sb])  # refuses other utterances or references
    except (KeyError, TypeError, AttributeError) as e:
        raise Refused(
            f"{split}: an utterance is not an {{'id', 'ref', 'hyp'}} record ({e!r}); "
            "pass row records written by usmlite-edu reproduce"
        ) from None
    except ValueError as e:
        raise Refused(f"{names[0]} vs {names[1]}, {split}: {e}") from None
    hb = {u["id"]: u["hyp"] for u in utts[1]}
    return {
        "split": split,
        "wer_a": sa.wer,
        "wer_b": sb.wer,
        "diff": iv.estimate,
        "lo": iv.lo,
        "hi": iv.hi,
        "verdict_no_worse": stats.verdict(iv.lo, iv.hi, "no_worse"),
        "same_hypotheses": sum(u["hyp"] == hb[u["id"]] for u in utts[0]),
        "utterances": len(utts[0]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="row record A (e.g. the new run)")
    ap.add_argument("b", type=Path, help="row record B (e.g. the committed row)")
    ap.add_argument("--splits", nargs="+", default=["dev"], help="default: dev only")
    args = ap.parse_args(argv)
    try:
        a, b = load_row(args.a), load_row(args.b)
        out = [compare(a, b, s, (str(args.a), str(args.b))) for s in args.splits]
    except Refused as e:
        print(f"compare_rows: {e}", file=sys.stderr)
        return 2
    print(f"A = {args.a}\nB = {args.b}")
    print("| split | WER A % | WER B % | A - B [95%] | A no worse than B | same hypotheses |")
    print("|---|---:|---:|---|---|---:|")
    for r in out:
        print(
            f"| {r['split']} | {r['wer_a']:.2f} | {r['wer_b']:.2f} | {r['diff']:+.2f} "
            f"[{r['lo']:+.2f}, {r['hi']:+.2f}] | **{r['verdict_no_worse']}** | "
            f"{r['same_hypotheses']} of {r['utterances']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
