"""The QAT training step with sub-channel groups: Eq. (1) regrouped against Eq. (1) literally.

    .venv/bin/python benchmarks/bench_subchannel.py [--preset an4] [--reps 7] [--seconds 3.0]
        [--specs int2 int2/gs24 int2/gs12 int2/gs8]

In the AN4 table (``results/an4/time.md``) the sub-channel rows E5-E7 (``int2/gs24``,
``/gs12``, ``/gs8``) stepped at 1.1-1.6 s against 0.6-0.7 s for E4 (``int2``, one group):
their float32 forward computed Eq. (1) literally, ``sum_g s_g (X_g @ q_g - z_g sum X_g)``,
as a dot batched over the ``g`` groups whose ``(..., g, J)`` partial products (``g`` times
the layer's output) were then scaled and summed. ``quant.native_matmul`` now applies the
scales to the weight first, ``X @ [s_g (q_g - z_g)]``: the same sums in another order, one
plain dot. This script compiles the whole training step (batch, bucket and model of the
preset; fake audio) of each spec both ways (the literal form is
``bench_train.native_matmul_grouped``, patched in while the step is traced), checks that
both give the same loss and gradients to float32 rounding, and times every step
interleaved (fastest of ``--reps`` rounds), with dense float as the reference. It prints
each step's time and its ratios; the numbers and the decision are in
``results/an4/README.md`` ("Time") and ``results/an4/checks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train  # noqa: E402

from usmlite_edu.deploy.infer import interleaved_min  # noqa: E402
from usmlite_edu.speech import model, presets, runs  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="an4")
    ap.add_argument("--specs", nargs="+", default=["int2", "int2/gs24", "int2/gs12", "int2/gs8"])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0, help="bucket length of the batch")
    args = ap.parse_args(argv)

    preset = presets.get_preset(args.preset)
    cfg = preset.model.replace(vocab_size=32)
    tcfg = preset.train.replace(batch_size=args.batch_size)
    batch = bench_train.fake_batch(cfg, args.batch_size, args.seconds)
    print(f"machine: {runs.machine_info()}, load {os.getloadavg()[0]:.2f} at the start")
    print(
        f"preset {args.preset}: {model.num_params(cfg):,} parameters, batch "
        f"{args.batch_size} x {args.seconds} s"
    )
    steps = dict(bench_train.variant_steps(cfg, tcfg, batch, "float", {"float": {}}))
    for spec in args.specs:
        both = bench_train.variant_steps(
            cfg,
            tcfg,
            batch,
            spec,
            {"regrouped": {}, "literal": {"grouped_matmul": True}},
        )  # asserts the same loss and gradients
        steps.update({f"{spec} {form}": v for form, v in both.items()})
    times = interleaved_min(steps, args.reps)
    base = times["float"]
    print(f"training steps, interleaved, fastest of {args.reps} rounds:")
    print(f"  {'float':22s} {base * 1e3:8.1f} ms")
    for spec in args.specs:
        new, old = times[f"{spec} regrouped"], times[f"{spec} literal"]
        print(
            f"  {spec:12s} regrouped {new * 1e3:8.1f} ms ({new / base:4.2f}x float)   "
            f"literal {old * 1e3:8.1f} ms ({old / base:4.2f}x float)   "
            f"regrouped / literal {new / old:4.2f}x"
        )
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
