"""``usmlite-edu transcribe``: transcribe audio files with a run or a packed model."""

from __future__ import annotations

import argparse
import sys

from usmlite_edu.cli.common import EXIT_INPUTS_FAILED, model_args, spec_arg

#: what :func:`escape` rewrites, and as what
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(field: str) -> str:
    r"""``field`` as the ``PATH<TAB>TEXT`` output writes it: backslash, tab, newline and
        carriage return as the two characters ``\``, ``	``, ``
    ``, ``
    ``, so that every
        file is one line with exactly one tab whatever its name (a reader undoes it by
        replacing the four pairs, scanning left to right)."""
    return field.translate(_ESCAPES)


def add_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "transcribe",
        help="transcribe WAV/FLAC files (any rate, mono/stereo)",
        description="Print PATH<TAB>TEXT for each file, one line each: a backslash, tab, "
        "newline or carriage return in PATH (or TEXT) is written \\\\, \\t, \\n, \\r. A file "
        "that cannot be used (unreadable, truncated, flat, too short for the model, a "
        "folder, a symlink loop) prints <error: ...> and the others go on. Exit code 3 "
        "when any file failed (the last line counts them), 0 when all were transcribed; "
        "a closed output pipe (`| head`) ends it quietly with 0.",
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
        print(f"{escape(path)}\t{escape(text)}", flush=True)
        failed += transcribe.is_error(text)
    if failed:
        print(f"usmlite-edu: {failed} of {len(args.files)} files failed", file=sys.stderr)
        return EXIT_INPUTS_FAILED
    return 0
