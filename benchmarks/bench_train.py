"""Training-step speed of the `cpu` preset on this machine (printed, never asserted).

Prints, from one run (ratios are measured side by side because these machines are noisy):

* steps per second of dense float training (batch 32, one bucket);
* model FLOPs per step from XLA's cost analysis, achieved FLOP/s, and that as a fraction
  of a float32 matmul peak measured in the same run (1024x1024 matmul; also bf16 and
  int8 x int8 -> int32 for reference);
* the step time of int4 + 2:4 QAT relative to dense float;
* peak memory: XLA's temp allocation of the step, and the process's max RSS.

    .venv/bin/python benchmarks/bench_train.py [--steps 20] [--seconds 3.5] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu import batching, configs, presets, runs, train


def matmul_peak(dtype, n=1024, reps=50) -> float:
    a = jnp.ones((n, n), dtype)
    b = jnp.ones((n, n), dtype)
    if dtype == jnp.int8:
        f = jax.jit(
            lambda a, b: jax.lax.dot_general(
                a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.int32
            )
        )
    else:
        f = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    f(a, b).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a, b)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def fake_batch(cfg, batch_size, seconds, label_len=16, seed=0) -> batching.Batch:
    rng = np.random.default_rng(seed)
    n = int(seconds * cfg.sample_rate)
    wav = (0.1 * rng.standard_normal((batch_size, n))).astype(np.float32)
    lengths = rng.integers(n // 2, n + 1, batch_size).astype(np.int32)
    labels = rng.integers(1, cfg.vocab_size, (batch_size, label_len)).astype(np.int32)
    return batching.Batch(
        wav,
        lengths,
        labels,
        np.full(batch_size, label_len, np.int32),
        np.ones(batch_size, np.float32),
    )


def time_steps(spec: str, cfg, tcfg, batch, steps: int):
    tr = train.Trainer(cfg, spec, tcfg)
    params = tr.init_params(0)
    state = tr.setup_optimizer(params)
    key = jax.random.key(0)
    b = batching.Batch(*(jnp.asarray(x) for x in batch))
    compiled = tr._step.lower(params, state, b, key, jnp.asarray(0, jnp.int32)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    mem = compiled.memory_analysis()
    params, state, loss, _ = tr.step(params, state, batch, key, 0)  # warm-up
    jax.block_until_ready(loss)
    t = time.perf_counter()
    for s in range(steps):
        params, state, loss, _ = tr.step(params, state, batch, key, s + 1)
    jax.block_until_ready(loss)
    dt = (time.perf_counter() - t) / steps
    return dt, float(cost.get("flops", float("nan"))), getattr(mem, "temp_size_in_bytes", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.5, help="bucket length of the batch")
    ap.add_argument("--dtype", default=None, help="dense matmul dtype, e.g. bfloat16")
    ap.add_argument("--specs", nargs="+", default=["float", "int4+2:4"])
    args = ap.parse_args()

    preset = presets.get_preset(args.preset)
    cfg = preset.model.replace(vocab_size=32)
    tcfg = preset.train.replace(batch_size=args.batch_size, compute_dtype=args.dtype)
    batch = fake_batch(cfg, args.batch_size, args.seconds)
    print(f"machine: {runs.machine_info()}")
    print(
        f"preset {args.preset}: {configs.num_params(cfg):,} parameters, batch "
        f"{args.batch_size} x {args.seconds} s, matmul dtype {args.dtype or 'float32'}"
    )

    peaks = {
        name: matmul_peak(dt)
        for name, dt in (
            ("float32", jnp.float32),
            ("bfloat16", jnp.bfloat16),
            ("int8->int32", jnp.int8),
        )
    }
    for name, p in peaks.items():
        print(f"matmul peak (1024^3) {name:12s}: {p / 1e9:8.1f} GFLOP/s")

    results = {}
    for spec in args.specs:
        dt, flops, temp = time_steps(spec, cfg, tcfg, batch, args.steps)
        results[spec] = dt
        print(
            f"{spec:10s}: {1 / dt:6.2f} steps/s  ({dt * 1e3:7.1f} ms/step), "
            f"{flops / 1e9:7.2f} GFLOP/step -> {flops / dt / 1e9:6.1f} GFLOP/s = "
            f"{100 * flops / dt / peaks['float32']:5.1f}% of the float32 peak"
            + (f", XLA temp memory {temp / 2**20:.0f} MiB" if temp else "")
        )
    base = results.get("float")
    for spec, dt in results.items():
        if base and spec != "float":
            print(f"step time {spec} / float: {dt / base:.2f}x")
    print(
        f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
