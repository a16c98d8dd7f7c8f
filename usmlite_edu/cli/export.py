"""``usmlite-edu export``: pack a run's compressed weights into a .safetensors file."""

from __future__ import annotations

import argparse
from pathlib import Path

from usmlite_edu.cli.common import check_writable, spec_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser(
        "export",
        help="pack a run's compressed weights into a .safetensors file",
        description="Write the run's weights compressed with SPEC at their real bit widths "
        "(int8 one per byte, int4 two, int2 four with zero points; N:M: kept values and "
        "2-bit positions; float32 scales and float layers) into one safetensors file "
        "that holds the config, spec and tokenizer too. Prints the file's bytes beside "
        "the exact figure of `usmlite-edu sizes`. `transcribe --model FILE` and "
        "`eval --model FILE` run it.",
    )
    x.add_argument("--checkpoint", required=True, metavar="RUN", help="run directory")
    x.add_argument(
        "--spec",
        metavar="SPEC",
        help="compression to pack with, e.g. int4+2:4 (default: the run's own; a float "
        "run under another spec is post-training quantization, N:M masks one-shot)",
    )
    x.add_argument(
        "--spec-map",
        metavar="FILE",
        help="per-layer specs instead of --spec: a JSON map of layer patterns to specs "
        "(README 'Which layer gets which bits')",
    )
    x.add_argument("--out", required=True, metavar="FILE", help="the .safetensors file to write")
    x.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usmlite_edu.deploy import export  # lazy: imports jax; keeps --help fast

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out}: name the packed file FILE.safetensors")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    check_writable(out, "--out")
    info = export.write_packed(args.checkpoint, spec_arg(args), out)
    print(info.summary())
    return 0
