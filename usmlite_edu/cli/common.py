"""What several commands share: exit codes, the spec and data arguments and their parsers'
common options."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from usmlite_edu.speech.corpora import CORPORA
from usmlite_edu.speech.presets import PRESETS

#: refused: bad input, one clear line on stderr
EXIT_REFUSED = 2
#: ``transcribe`` / ``eval``: at least one input failed, the others were done
EXIT_INPUTS_FAILED = 3
#: ``train`` / ``reproduce``: more than ``train.MAX_SKIP_SHARE`` of a split was skipped
EXIT_TOO_MANY_SKIPPED = 4
EXIT_DOES_NOT_COMPILE = 5


def check_writable(path: str | os.PathLike, option: str, *, folder: bool = False) -> None:
    """Refuse, before any work, an output the command could not write: ``ValueError``
    naming ``option`` (``--out``, ``--json``), the path and why.

    ``path`` is a file to write (``folder=False``: its folder must be writable) or a
    folder to create or fill (``folder=True``). The nearest part of the path that exists
    must be a folder in which a file can be created: a probe file is created there and
    removed (permission bits alone say nothing for root, a read-only mount says no).
    """
    where = Path(path) if folder else Path(path).parent
    where = Path(os.path.abspath(where))
    probe = where
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(
            f"{option} {path}: {probe} is a file, not a folder; choose another location"
        )
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".usmlite-write-check-"):
            pass
    except OSError as e:
        raise ValueError(
            f"{option} {path}: cannot write in {probe} ({e.strerror or e}); choose a folder "
            "you can write to"
        ) from None


def preset_names() -> str:
    """The presets, for help texts."""
    return ", ".join(PRESETS)


def too_many_skipped(lines: list[str]) -> int:
    """Report the splits that lost too much data; the exit code that says so."""
    if not lines:
        return 0
    for line in lines:
        print(f"usmlite-edu: error: {line}", file=sys.stderr)
    print(
        f"usmlite-edu: {len(lines)} split(s) skipped more than the allowed share "
        "(usmlite_edu.training.train.MAX_SKIP_SHARE); the outputs are written, but check the data",
        file=sys.stderr,
    )
    return EXIT_TOO_MANY_SKIPPED


def spec_arg(args: argparse.Namespace):
    """``--spec`` or ``--spec-map FILE`` (a per-layer map), never both."""
    path = getattr(args, "spec_map", None)
    if path is None:
        return args.spec
    if args.spec:
        raise ValueError(f"give --spec or --spec-map, not both (got --spec {args.spec})")
    from usmlite_edu.core.specs import SpecMap  # lazy: imports jax; keeps --help fast

    return SpecMap.load(path)


def data_dir(args: argparse.Namespace) -> str | None:
    return args.data or os.environ.get("USMLITE_DATA")


def data_args(sp: argparse.ArgumentParser) -> None:
    """--corpus, --data, --seed and --heldout-speaker (train, eval)."""
    sp.add_argument(
        "--corpus",
        default="data_small",
        choices=CORPORA,
        help="which corpus (default data_small, the synthetic one in the repository)",
    )
    sp.add_argument(
        "--data",
        metavar="DIR",
        help="corpus folder (default: $USMLITE_DATA; data_small and "
        "fsdd_sample fall back to the repository copy); get one with "
        "`usmlite-edu data fetch`",
    )
    sp.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data order, the FSDD connected-digit builder, the "
        "initialisation and dropout (default 0)",
    )
    sp.add_argument(
        "--heldout-speaker",
        metavar="NAME",
        help="fsdd: leave this speaker out of train/dev; test becomes all "
        "of that speaker's recordings (unseen-speaker WER)",
    )


def set_arg(sp: argparse.ArgumentParser, sections: str) -> None:
    """--set SECTION.FIELD=VALUE, for the preset's ``sections``."""
    sp.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help=f"override any {sections} field of the preset, repeatable, "
        "e.g. --set train.peak_lr=1e-3 --set model.dropout=0.1 (validated "
        "before any work; recorded in the run's config.json)",
    )


def model_args(sp: argparse.ArgumentParser) -> None:
    """--checkpoint or --model, and --arith (eval, transcribe)."""
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="RUN", help="run directory")
    which.add_argument(
        "--model",
        metavar="FILE",
        help="a packed .safetensors file of `usmlite-edu export` (gives exactly the "
        "results of its run under the spec it was exported with)",
    )
    sp.add_argument(
        "--arith",
        metavar="ARITH",
        help="inference arithmetic of the dense layers (default: the run's own): "
        "float32, bf16, w8 / w4 (int8 / int4 weights, bf16 activations) or w8a8 "
        "(int8 weights x int8 activations -> int32); a float spec's weights are "
        "quantized per channel for w8/w4/w8a8 (README 'Export a packed model')",
    )
