"""``usmlite-edu eval``: WER/CER of a trained run on a split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from usmlite_edu.cli.common import (
    EXIT_INPUTS_FAILED,
    check_writable,
    data_args,
    data_dir,
    model_args,
    set_arg,
    spec_arg,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "eval",
        help="WER/CER of a trained run on a split",
        description="Word and character error rate of a run, through its "
        "own spec or another one (post-training quantization).",
    )
    model_args(e)
    data_args(e)
    e.add_argument(
        "--split",
        default="test",
        choices=["train", "dev", "test"],
        help="which split (default test)",
    )
    e.add_argument(
        "--spec",
        metavar="SPEC",
        help="evaluate through another spec (PTQ; N:M masks one-shot from the "
        "weights), e.g. int4 (default: the run's own; not with --model)",
    )
    e.add_argument(
        "--spec-map",
        metavar="FILE",
        help="per-layer specs instead of --spec: a JSON map of layer patterns to specs "
        "(README 'Which layer gets which bits')",
    )
    e.add_argument(
        "--json", metavar="FILE", help="also write the result, with example transcripts, to FILE"
    )
    set_arg(e, "train.* (evaluation batch size, buckets)")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usmlite_edu.training import train  # lazy: imports jax; keeps --help fast

    if args.json:  # before the evaluation, not after it
        check_writable(args.json, "--json")
    r = train.evaluate_run(
        args.checkpoint,
        args.corpus,
        data_dir(args),
        args.split,
        spec=spec_arg(args),
        seed=args.seed,
        heldout_speaker=args.heldout_speaker,
        overrides=args.set,
        model=args.model,
        arith=args.arith,
    )
    print(
        f"{args.split}: WER {r['wer']:.2f}%  CER {r['cer']:.2f}%  "
        f"({r['utterances']} utterances, {r['skipped']} skipped, spec {r['spec']}"
        + (f", arith {args.arith})" if args.arith else ")")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    if r["skipped"]:
        print(
            f"usmlite-edu: {r['skipped']} of {r['utterances'] + r['skipped']} utterances of "
            f"{args.split} failed (skipped, not scored; the warnings above name each one)",
            file=sys.stderr,
        )
        return EXIT_INPUTS_FAILED
    return 0
