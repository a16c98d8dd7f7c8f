"""``usmlite-edu transcribe``: transcribe audio files with a run or a packed model."""

from __future__ import annotations

import argparse
import sys

from usmlite_edu.cli.common import EXIT_INPUTS_FAILED, model_args, spec_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "transcribe",
        help="transcribe WAV/FLAC files (any rate, mono/stereo)",
        description="Print PATH<TAB>TEXT for each file; a file that cannot be used "
        "(unreadable, truncated, flat, too short for the model) prints <error: ...> and "
        "the others go on. Exit code 3 when any file failed (the last line counts them), "
        "0 when all were transcribed.",
    )
    model_args(tr)
    tr.add_argument(
        "--spec",
        metavar="SPEC",
        help="run through another spec (PTQ), e.g. int4 (default: the run's own; not with --model)",
    )
    tr.add_argument(
        "--spec-map",
        metavar="FILE",
        help="per-layer specs instead of --spec: a JSON map of layer patterns to specs "
        "(README 'Which layer gets which bits')",
    )
    tr.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    tr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usmlite_edu.deploy import transcribe  # lazy: imports jax; keeps --help fast

    failed = 0
    texts = transcribe.transcribe_files(
        args.checkpoint, args.files, spec=spec_arg(args), model=args.model, arith=args.arith
    )
    for path, text in texts:
        print(f"{path}\t{text}", flush=True)
        failed += transcribe.is_error(text)
    if failed:
        print(f"usmlite-edu: {failed} of {len(args.files)} files failed", file=sys.stderr)
        return EXIT_INPUTS_FAILED
    return 0
