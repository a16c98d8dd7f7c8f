"""``usmlite-edu train``: train or fine-tune a Conformer-CTC (Algorithm 1)."""

from __future__ import annotations

import argparse
import json

from usmlite_edu.cli.common import (
    check_writable,
    data_args,
    data_dir,
    preset_names,
    set_arg,
    spec_arg,
    too_many_skipped,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    names = preset_names()
    t = sub.add_parser(
        "train",
        help="train or fine-tune a Conformer-CTC (Algorithm 1)",
        description="Train a model (or fine-tune one with --init) with "
        "compression applied from the first step; resumes from OUT's last "
        "checkpoint when started again.",
    )
    t.add_argument(
        "--preset",
        default="ci",
        metavar="PRESET",
        help=f"model + training recipe: {names} (default ci)",
    )
    data_args(t)
    t.add_argument(
        "--out",
        required=True,
        metavar="RUN",
        help="run directory (config, tokenizer, checkpoints, params, metrics); "
        "resumes if it holds a checkpoint",
    )
    t.add_argument(
        "--spec",
        metavar="SPEC",
        help="compression during training, e.g. int8, int2/gs24, 2:4/fs10, "
        "int4+2:4 (default float)",
    )
    t.add_argument(
        "--spec-map",
        metavar="FILE",
        help="per-layer specs instead of --spec: a JSON map of layer patterns to specs "
        "(README 'Which layer gets which bits')",
    )
    t.add_argument(
        "--init",
        metavar="RUN",
        help="run directory of a trained model to fine-tune from (its model and "
        "tokenizer are kept; the learning-rate schedule continues)",
    )
    t.add_argument("--steps", type=int, help="shorthand for --set train.steps=N")
    t.add_argument(
        "--mesh",
        metavar="AXIS=N,...",
        help="train sharded on a device mesh with axes data, fsdp, tensor, e.g. "
        "data=2,fsdp=4 (their product must be the device count; an axis left out is "
        "1; an empty spec puts every device on fsdp). Default: one "
        "device, no mesh. On a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=8 "
        "simulates 8 devices. A checkpoint resumes on any mesh.",
    )
    t.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="several processes, one run: process 0's address (with --num-processes and "
        "--process-id; every process runs the same command with its own id). The mesh "
        "spans all their devices; each process reads only its rows of every batch",
    )
    t.add_argument("--num-processes", type=int, metavar="N", help="how many processes")
    t.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    t.add_argument(
        "--distributed",
        choices=["auto"],
        help="auto: several processes whose launch the environment describes (a Cloud "
        "TPU pod slice, SLURM, Open MPI): jax.distributed.initialize() without arguments",
    )
    set_arg(t, "model.* or train.*")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_writable(args.out, "--out", folder=True)  # before any data or device
    from usmlite_edu.scale import distributed  # lazy: imports jax; keeps --help fast

    # before anything touches a device: several processes become one run
    distributed.initialize(
        args.coordinator, args.num_processes, args.process_id, auto=args.distributed == "auto"
    )
    from usmlite_edu.training import train  # lazy: jax only after distributed.initialize

    r = train.train(
        args.preset,
        args.corpus,
        data_dir(args),
        args.out,
        spec=spec_arg(args),
        init=args.init,
        steps=args.steps,
        seed=args.seed,
        heldout_speaker=args.heldout_speaker,
        overrides=args.set,
        mesh_spec=args.mesh,
    )
    print(json.dumps(r, indent=2, default=str))
    return too_many_skipped(train.too_many_skipped(train.skip_counts(r)))
