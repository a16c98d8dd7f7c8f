"""``usmlite-edu plan``: per-device memory of a train step on a mesh, compiled ahead of time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from usmlite_edu.cli.common import EXIT_DOES_NOT_COMPILE, preset_names, set_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    names = preset_names()
    pl = sub.add_parser(
        "plan",
        help="per-device memory of a train step on a mesh, compiled ahead of time",
        description="Compile the train step of a preset and spec for a mesh of devices "
        "without running it, and print the compiler's per-device memory (arguments, "
        "temporaries, peak) and whether it fits. --topology plans for a compile-only TPU "
        "topology (needs the libtpu package: pip install 'usmlite-edu[tpu]'); without it, "
        "for this machine's devices (XLA_FLAGS=--xla_force_host_platform_device_count=N "
        "simulates N CPU devices; the CPU compiler's figures differ from a TPU's). "
        "Exit status 5 when the step does not compile (e.g. out of memory).",
    )
    pl.add_argument("--preset", default="ci", metavar="PRESET", help=f"{names} (default ci)")
    pl.add_argument("--spec", default="float", metavar="SPEC", help="compression (default float)")
    pl.add_argument("--topology", metavar="NAME", help="TPU topology, e.g. v3:8x8, v5e:16x16")
    pl.add_argument("--mesh", metavar="AXIS=N,...", help="mesh spec (default: all on fsdp)")
    pl.add_argument("--global-batch", type=int, metavar="N", help="utterances per update")
    pl.add_argument("--grad-accum", type=int, metavar="K", help="micro-batches per update")
    pl.add_argument("--remat", choices=["none", "block", "dots"], help="block remat policy")
    pl.add_argument("--compute-dtype", choices=["float32", "bfloat16"], help="dense matmul dtype")
    pl.add_argument(
        "--seconds", type=float, metavar="S", help="utterance length (default: largest bucket)"
    )
    pl.add_argument("--json", metavar="FILE", help="also write the plan as JSON")
    set_arg(pl, "model.* or train.*")
    pl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from usmlite_edu.training import plan  # lazy: imports jax; keeps --help fast

    pl = plan.plan_memory(
        args.preset,
        args.spec,
        topology=args.topology,
        mesh_spec=args.mesh,
        global_batch=args.global_batch,
        grad_accum=args.grad_accum,
        remat=args.remat,
        compute_dtype="preset"
        if args.compute_dtype is None
        else (None if args.compute_dtype == "float32" else args.compute_dtype),
        seconds=args.seconds,
        overrides=args.set,
    )
    print(plan.format_plan(pl))
    if args.json:
        import dataclasses

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        rec = {**dataclasses.asdict(pl), "peak_bytes": pl.peak_bytes, "fits": pl.fits}
        Path(args.json).write_text(json.dumps(rec, indent=2) + "\n")
    return 0 if pl.error is None else EXIT_DOES_NOT_COMPILE
