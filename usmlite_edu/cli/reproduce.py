"""``usmlite-edu reproduce``: the paper's Tables 1-3 at reduced scale."""

from __future__ import annotations

import argparse
from pathlib import Path

from usmlite_edu.cli.common import check_writable, data_dir, set_arg, too_many_skipped
from usmlite_edu.speech import presets
from usmlite_edu.speech.corpora import CORPORA


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "reproduce",
        help="the paper's Tables 1-3 at reduced scale",
        description="Per seed, pre-train a float start, then fine-tune B0-B3 and every "
        "E row of USM-Lite's Tables 1-3 from it; writes table.md/csv, results.json, "
        "plot.png, claims.md. A second run skips finished rows.",
    )
    r.add_argument(
        "--preset",
        default="ci",
        metavar="PRESET",
        help="ci (data_small, minutes), cpu (FSDD, hours on 2 cores) or an4 (AN4; its "
        "table's time on 2 cores: results/an4/README.md)",
    )
    r.add_argument(
        "--corpus",
        choices=CORPORA,
        help="shorthand for --set reproduce.corpus=NAME (default: the preset's)",
    )
    r.add_argument("--data", metavar="DIR", help="corpus folder (default $USMLITE_DATA)")
    r.add_argument(
        "--out", required=True, metavar="DIR", help="results directory (resumes rows already done)"
    )
    r.add_argument(
        "--seeds", type=int, metavar="N", help="seeds 0..N-1 of every row (default: the preset's)"
    )
    r.add_argument(
        "--only", nargs="*", metavar="EXP", help="only these rows and their starts, e.g. B0 E3"
    )
    set_arg(r, "model.*, train.* or reproduce.*")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usmlite_edu.training import reproduce  # lazy: imports jax; keeps --help fast

    p = presets.get_preset(args.preset).override(args.set)
    check_writable(args.out, "--out", folder=True)
    if p.reproduce is None:
        raise ValueError(
            f"preset {p.name!r} has no reproduction plan; use one of "
            + ", ".join(n for n, q in presets.PRESETS.items() if q.reproduce)
        )
    if args.corpus:
        p = p.override({"reproduce.corpus": args.corpus})
    if args.seeds is not None:
        p = p.override({"reproduce.seeds": tuple(range(args.seeds))})
    records = reproduce.run(p, data_dir(args), args.out, only=args.only)
    print((Path(args.out) / "table.md").read_text())
    print((Path(args.out) / "claims.md").read_text())
    return too_many_skipped(_reproduce_skips(records, Path(args.out)))


def _reproduce_skips(records: list[dict], out: Path) -> list[str]:
    """The splits of a reproduction that skipped more than ``MAX_SKIP_SHARE``: each
    row's evaluation sets (its record's ``results``) and each training run's ``train``
    split (the final record in ``OUT/runs/*/metrics.jsonl``), each named once."""
    from usmlite_edu.speech import runs  # lazy: imports jax; keeps --help fast
    from usmlite_edu.training import train  # lazy: imports jax; keeps --help fast

    counts: dict[str, tuple[int, int]] = {}
    for rec in records:
        held = rec.get("heldout_speaker")
        for split, v in rec.get("results", {}).items():
            if isinstance(v, dict) and "n_utterances" in v and "skipped" in v:
                name = f"{split} (seed {rec.get('seed')}" + (f", held out {held})" if held else ")")
                counts[name] = (int(v["n_utterances"]), int(v["skipped"]))
    for metrics in sorted(out.glob("runs/*/metrics.jsonl")):
        _, final = runs.read_metrics(metrics.parent)
        if final and isinstance(final.get("train"), dict):
            t = final["train"]
            counts[f"train (run {metrics.parent.name})"] = (t["utterances"], t["skipped"])
    return train.too_many_skipped(counts)
