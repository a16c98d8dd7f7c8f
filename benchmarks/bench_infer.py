"""Inference speed of each arithmetic of ``--arith`` (:mod:`usmlite_edu.deploy.infer`) on this
machine, beside its matmul peaks (printed, never asserted).

From one run, interleaved so that every variant sees the same background load (fastest
of ``--reps`` rounds; other jobs only ever add time):

* the matmul peaks: a 1024 x 1024 x 1024 product in float32, bfloat16 (float32
  accumulation) and int8 x int8 -> int32 (``jax.lax.dot_general`` with
  ``preferred_element_type=int32``), in GFLOP/s (GOP/s for int8), and each as a ratio
  to float32: the most any arithmetic can gain on a matmul-bound model;
* the encoder forward time (the Conformer blocks on a ``(B, T', D)`` input, inference
  mode) and the whole model's forward (subsampling convolutions + encoder + softmax, on
  precomputed log-mel features) of the ``--preset`` model, at batch 1 and 32 of
  ``--seconds`` audio, for ``float32``, ``bf16``, ``w8``, ``w4`` and ``w8a8``, as ratios
  to float32 (> 1 is faster);
* one dense layer of the encoder at the batch-32 shape (the first feed-forward matrix,
  ``(B T', D) x (D, 4D)``): the float32 dot, the QAT forward of int4 weights
  (:func:`usmlite_edu.core.quant.qat_matmul`: quantize, convert to float, float32 dot), the
  same with ``compute_dtype=bfloat16``, the bfloat16 dot, weight-only int8, and W8A8
  including the activations' quantization: why the QAT forward keeps a float dot.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_infer.py [--preset cpu] [--seconds 3.5]
        [--reps 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu.core import quant
from usmlite_edu.deploy import infer
from usmlite_edu.speech import frontend, model, presets, runs

ARITHS = infer.ARITHS


def layer_fns(rows: int, d_in: int, d_out: int):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((rows, d_in)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((d_in, d_out)) / np.sqrt(d_in), jnp.float32)
    q8 = quant.quantize(w, 8)
    k8 = quant.IntKernel.from_quantized(q8, "w8")
    k88 = quant.IntKernel.from_quantized(q8, "w8a8")
    f32 = lambda x, w: jnp.matmul(x, w)  # noqa: E731
    bf16 = lambda x, w: jnp.matmul(  # noqa: E731
        x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32
    )
    return {
        "float32 dot": (jax.jit(f32), (x, w)),
        "QAT int4 forward (float32 dot)": (jax.jit(lambda x, w: quant.qat_matmul(x, w, 4)), (x, w)),
        "QAT int4 forward, compute bf16": (
            jax.jit(lambda x, w: quant.qat_matmul(x, w, 4, compute_dtype=jnp.bfloat16)),
            (x, w),
        ),
        "bfloat16 dot": (jax.jit(bf16), (x, w)),
        "w8 weight-only (int8 -> bf16 dot)": (jax.jit(lambda x, k: k.matmul(x)), (x, k8)),
        "w8a8 (quantize x + s8 dot)": (jax.jit(lambda x, k: k.matmul(x)), (x, k88)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seconds", type=float, default=3.5, help="audio length of each utterance")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    args = ap.parse_args()

    cfg = presets.get_preset(args.preset).model
    machine = runs.machine_info()
    print(f"processor: {machine['processor']}  flags: {' '.join(machine['cpu_flags'])}")
    print(f"jax {machine['jax']}, {machine['cpus']} CPUs, backend {machine['jax_backend']}")
    print("command: " + " ".join(["benchmarks/bench_infer.py", *sys.argv[1:]]))
    record: dict = {"machine": machine, "preset": args.preset, "seconds": args.seconds}

    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "int8": jnp.int8}
    peaks = {n: v / 1e9 for n, v in infer.matmul_peaks(dtypes, reps=args.reps).items()}
    record["peaks_gops"] = peaks
    print("\nmatmul peaks (1024^3):")
    for n, v in peaks.items():
        print(f"  {n:9s} {v:7.1f} GOP/s   x{v / peaks['float32']:.2f} float32")

    params = model.init_params(cfg, seed=0)
    record["forward_s"] = {}
    for b in args.batches:
        t = infer.time_forward(cfg, params, b, args.seconds, reps=args.reps)
        print(f"\nbatch {b} x {args.seconds} s: forward time (ms) and speed vs float32")
        print(f"  {'arith':8s} {'encoder':>9s} {'ratio':>6s} {'model':>9s} {'ratio':>6s}")
        e0, m0 = t["float32"]["encoder"], t["float32"]["model"]
        for a in ARITHS:
            e, m = t[a]["encoder"], t[a]["model"]
            print(f"  {a:8s} {1e3 * e:9.2f} {e0 / e:6.2f} {1e3 * m:9.2f} {m0 / m:6.2f}")
        record["forward_s"][str(b)] = t

    frames = int(frontend.num_frames(int(args.seconds * cfg.sample_rate), cfg))
    tokens = max(args.batches) * int(frontend.subsampled_lengths(frames))  # the encoder's rows
    d, f = cfg.model_dim, cfg.ffn_dim
    lt = infer.interleaved_min(layer_fns(tokens, d, f), args.reps)
    print(f"\none dense layer ({tokens} x {d}) @ ({d} x {f}): time and speed vs float32 dot")
    for k, v in lt.items():
        print(f"  {k:36s} {1e6 * v:9.1f} us  x{lt['float32 dot'] / v:.2f}")
    record["layer_s"] = {"shape": [tokens, d, f], **lt}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
