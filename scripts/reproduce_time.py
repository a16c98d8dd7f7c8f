"""Where a reproduction's wall time went, row by row, from what its run wrote.

    python scripts/reproduce_time.py --table DIR [--seeds 0 1] [--out FILE.md]

``DIR`` is a ``usmlite-edu reproduce --out`` folder with its ``rows/`` and ``runs/`` (the
run directories are not committed, so this reads a machine's own table). For every
trained row it splits the record's ``wall_time_s`` into

* **steps**: the row's training steps at its *median* logged rate (the intervals between
  ``metrics.jsonl`` lines, the first interval excluded because it holds the compiling);
* **start-up**: the rest of the training loop's time (compiling each bucket's step, loading
  and featurising the data, checkpoints, and any slowdown beyond the median);
* **decoding**: ``wall_time_s`` minus the training time (dev and test decoding, building
  the model, writing the record).

A row interrupted and resumed keeps one ``metrics.jsonl`` whose ``elapsed_s`` restarts;
the record's ``wall_time_s`` is then the last segment's, and the earlier segments are
reported beside it, their time up to their last logged step: ``N steps`` kept from a
checkpoint, or ``lost`` when the row was interrupted before its first checkpoint and trained
again from step 0. PTQ rows have
no training and count as decoding. The parts are measurements of one run on one machine
under whatever load it had (the records name the processor), not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RowTime:
    key: str
    steps: int  # training steps of the timed (last) segment
    wall_s: float  # the record's wall_time_s
    step_s: float  # seconds of those steps at the median rate
    startup_s: float  # training time beyond them
    decode_s: float  # wall_time_s beyond the training time
    median_s_per_step: float
    earlier_s: float = 0.0  # segments before a resume (to their last logged step)
    earlier_steps: int = 0


def _segments(lines: list[dict]) -> list[list[dict]]:
    """Step records split where ``elapsed_s`` restarts (a resumed run)."""
    out: list[list[dict]] = []
    for rec in lines:
        if "step" not in rec or "elapsed_s" not in rec:
            continue
        if not out or rec["elapsed_s"] < out[-1][-1]["elapsed_s"]:
            out.append([])
        out[-1].append(rec)
    return out


def row_time(record: dict, metrics: Path | None) -> RowTime:
    """One row's split (see the module docstring); ``metrics`` is its ``metrics.jsonl``."""
    wall = float(record["wall_time_s"])
    if not metrics or not metrics.exists() or not record.get("steps"):
        return RowTime(record["key"], 0, wall, 0.0, 0.0, wall, 0.0)
    lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    finals = [x["final"] for x in lines if "final" in x]
    segs = _segments(lines)
    if not finals or not segs:
        raise ValueError(f"{metrics}: no final record or no logged steps; was the row finished?")
    last = segs[-1]
    every = last[1]["step"] - last[0]["step"] if len(last) > 1 else last[0]["step"]
    start_step = last[0]["step"] - every if len(segs) > 1 else 0
    steps = finals[-1]["step"] - start_step
    rates = [
        (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"])
        for a, b in zip(last, last[1:], strict=False)
        if b["step"] > a["step"]
    ]
    median = statistics.median(rates) if rates else last[0]["elapsed_s"] / last[0]["step"]
    train = float(finals[-1]["train_time_s"])
    step_s = steps * median
    earlier = sum(s[-1]["elapsed_s"] for s in segs[:-1])
    earlier_steps = start_step
    return RowTime(
        record["key"],
        steps,
        wall,
        step_s,
        max(train - step_s, 0.0),
        max(wall - train, 0.0),
        median,
        earlier,
        earlier_steps,
    )


def table_times(table: Path, seeds: list[int] | None = None) -> list[RowTime]:
    rows = [json.loads(p.read_text()) for p in sorted((table / "rows").glob("*.json"))]
    rows = [r for r in rows if seeds is None or r["seed"] in seeds]
    if not rows:
        raise ValueError(f"{table / 'rows'}: no rows" + (f" of seeds {seeds}" if seeds else ""))
    return [row_time(r, table / "runs" / r["key"] / "metrics.jsonl") for r in rows]


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def report(times: list[RowTime], processor: str) -> str:
    order = {"W": 0, "B": 1, "E": 2, "V": 3}
    times = sorted(times, key=lambda t: (t.key.split("_s")[1], order.get(t.key[0], 9), t.key))
    out = [
        "# Where the reproduction's time went",
        "",
        f"Processor: {processor}. Seconds from each record's `wall_time_s` and its run's "
        "`metrics.jsonl` (`python scripts/reproduce_time.py`).",
        "",
        "| row | steps | wall s | steps at median rate s | start-up s | decoding s | s/step | earlier segments |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for t in times:
        if t.earlier_steps:  # resumed from a checkpoint: those steps were kept
            earlier = f"{t.earlier_steps} steps, {t.earlier_s:.0f} s"
        elif t.earlier_s:  # interrupted before its first checkpoint: trained again from 0
            earlier = f"lost, {t.earlier_s:.0f} s"
        else:
            earlier = ""
        out.append(
            f"| {t.key} | {t.steps} | {t.wall_s:.0f} | {t.step_s:.0f} | {t.startup_s:.0f} | "
            f"{t.decode_s:.0f} | {t.median_s_per_step:.3f} | {earlier} |"
        )
    out += ["", "| seed | rows | wall | steps | start-up | decoding | earlier segments |"]
    out += ["|---|---:|---:|---:|---:|---:|---:|"]
    for seed in sorted({t.key.split("_s")[1] for t in times}, key=int):
        ts = [t for t in times if t.key.split("_s")[1] == seed]
        wall = sum(t.wall_s for t in ts)
        parts = [sum(getattr(t, f) for t in ts) for f in ("step_s", "startup_s", "decode_s")]
        share = " | ".join(f"{_h(p)} ({100 * p / wall:.0f}%)" for p in parts)
        out.append(
            f"| {seed} | {len(ts)} | {_h(wall)} | {share} | {_h(sum(t.earlier_s for t in ts))} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", type=Path, required=True, help="a reproduce --out folder")
    ap.add_argument("--seeds", type=int, nargs="*", help="only these seeds (default: all)")
    ap.add_argument("--out", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    try:
        times = table_times(args.table, args.seeds)
        first = json.loads(next((args.table / "rows").glob("*.json")).read_text())
    except (OSError, ValueError, KeyError, StopIteration) as e:
        print(f"reproduce_time: {e}", file=sys.stderr)
        return 2
    text = report(times, first.get("machine", {}).get("processor", "unknown"))
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
