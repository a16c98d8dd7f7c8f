"""The subsampler's 3x3 stride-2 convolution: XLA's form against rewrites.

    .venv/bin/python benchmarks/bench_subsampler.py [--preset an4] [--reps 15]

Issue 25 (item 6) named the stride-2 convolution's backward (the input gradient as a
base-dilated convolution, its layout copy, the weight gradient) as the most expensive
single instructions of the ``cpu`` step for its FLOPs, and suggested a space-to-depth or
patches-plus-dot form. This script measures, at the preset's training shapes (batch,
largest-but-one bucket, mel bins, ``subsample_channels``), each convolution of the
subsampler in five forms, interleaved (fastest of ``--reps`` rounds), after checking that
all give the same outputs and gradients (to float32 rounding) on odd and even shapes.
For each form it times, jitted, with a fixed cotangent: the forward and both gradients,
the input gradient alone and the kernel gradient alone (training needs both of conv2's
but only conv1's kernel gradient: the features are not differentiated).

* ``conv``: ``lax.conv_general_dilated`` with stride 2 (``model.conv_s2``);
* ``patches``: the nine strided slices of the padded input concatenated, one dot;
* ``space-to-depth``: the input folded into 2x2 blocks (4x the channels), a 2x2 stride-1
  convolution with the kernel zero-padded to 4x4 and folded the same way
  (``model.conv_s2_space_to_depth``);
* ``parity gradient``: XLA's forward and weight gradient, and the input gradient written
  by hand as its four output-parity phases (each a sum of shifted dots), through a
  ``jax.custom_vjp``;
* ``model``: what ``model.QConv`` runs, ``model.conv3x3_stride2``: XLA's forward and
  kernel gradient, the input gradient of the space-to-depth form.

It prints each time and its ratio to ``conv``; the decisions with the numbers are in
``docs/training.md``.
"""

from __future__ import annotations

import argparse
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu.deploy.infer import interleaved_min
from usmlite_edu.speech import frontend, model
from usmlite_edu.speech.presets import get_preset

conv = model.conv_s2  # what the model's forward and kernel gradient run
space_to_depth = model.conv_s2_space_to_depth  # what its input gradient runs


def patches(x: jax.Array, k: jax.Array) -> jax.Array:
    """The same as nine strided slices (taps ``(i, j)``, channels last) and one dot."""
    _, t, f, c = x.shape
    to, fo = (t + 1) // 2, (f + 1) // 2
    xp = jnp.pad(x, ((0, 0), (1, 2), (1, 2), (0, 0)))
    cols = [xp[:, i : i + 2 * to : 2, j : j + 2 * fo : 2, :] for i in range(3) for j in range(3)]
    return jnp.concatenate(cols, axis=-1) @ k.reshape(9 * c, -1)


def input_grad_by_parity(ct: jax.Array, k: jax.Array, xshape: tuple[int, ...]) -> jax.Array:
    """The input gradient of :func:`conv`: input row ``u = 2a + p`` received tap ``i = 1``
    of output row ``a`` (``p = 0``), or taps ``i = 2`` of row ``a`` and ``i = 0`` of row
    ``a + 1`` (``p = 1``); likewise along frequency. Four phases, interleaved."""
    b, t, f, c = xshape
    to, fo = ct.shape[1], ct.shape[2]
    cte = jnp.pad(ct, ((0, 0), (0, 1), (0, 1), (0, 0)))
    taps = {0: ((0, 1),), 1: ((0, 2), (1, 0))}  # phase -> (output row shift, tap)
    phases = []
    for p in (0, 1):
        row = []
        for q in (0, 1):
            acc = 0.0
            for di, i in taps[p]:
                for dj, j in taps[q]:
                    acc = acc + cte[:, di : di + to, dj : dj + fo, :] @ k[i, j].T
            row.append(acc)
        phases.append(jnp.stack(row, axis=3))
    return jnp.stack(phases, axis=2).reshape(b, 2 * to, 2 * fo, c)[:, :t, :f, :]


#: :func:`conv` whose input gradient is :func:`input_grad_by_parity`
parity_gradient = model.conv_s2_with_input_grad(
    lambda x, k, ct: input_grad_by_parity(ct, k, x.shape)
)

FORMS = {
    "conv": conv,
    "patches": patches,
    "space-to-depth": space_to_depth,
    "parity gradient": parity_gradient,
    "model": model.conv3x3_stride2,
}


def check_same(shape: tuple[int, int, int, int], out: int, seed: int = 0) -> None:
    """Every form's output and both gradients equal :func:`conv`'s (float32 rounding)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, shape[-1], out)), jnp.float32)
    y0, vjp0 = jax.vjp(conv, x, k)
    ct = jnp.asarray(rng.standard_normal(y0.shape), jnp.float32)
    g0 = vjp0(ct)
    for name, f in FORMS.items():
        y, vjp = jax.vjp(f, x, k)
        np.testing.assert_allclose(y, y0, atol=1e-4, rtol=1e-4, err_msg=name)
        for a, b in zip(vjp(ct), g0):
            np.testing.assert_allclose(a, b, atol=1e-2, rtol=1e-4, err_msg=name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="an4")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    p = get_preset(args.preset)
    cfg, tcfg = p.model, p.train
    for shape, out in (((2, 27, 9, 1), 4), ((2, 26, 10, 8), 6), ((3, 51, 17, 5), 3)):
        check_same(shape, out)
    secs = (
        sorted(tcfg.bucket_seconds)[-2] if len(tcfg.bucket_seconds) > 1 else tcfg.bucket_seconds[0]
    )
    t = int(frontend.num_frames(int(secs * cfg.sample_rate), frontend.LogMelConfig.from_model(cfg)))
    c1, c2 = cfg.subsample_channels
    shapes = {
        "conv1": ((tcfg.batch_size, t, cfg.num_mels, 1), c1),
        "conv2": ((tcfg.batch_size, (t + 1) // 2, (cfg.num_mels + 1) // 2, c1), c2),
    }
    print(
        f"preset {p.name}: batch {tcfg.batch_size}, {secs:g} s bucket ({t} frames), "
        f"{cfg.num_mels} mel; {platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}; forms agree on odd and even shapes"
    )
    rng = np.random.default_rng(0)
    for layer, (shape, out) in shapes.items():
        x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        k = jnp.asarray(rng.standard_normal((3, 3, shape[-1], out)), jnp.float32)
        ct = jnp.asarray(rng.standard_normal(jax.eval_shape(conv, x, k).shape), jnp.float32)
        parts = {
            "fwd + both grads": lambda f, x, k, ct: jax.vjp(f, x, k)[1](ct),
            "input grad": lambda f, x, k, ct: jax.vjp(lambda x_: f(x_, k), x)[1](ct),
            "kernel grad": lambda f, x, k, ct: jax.vjp(lambda k_: f(x, k_), k)[1](ct),
        }
        fns = {
            (name, part): (jax.jit(lambda x, k, ct, f=f, g=g: g(f, x, k, ct)), (x, k, ct))
            for name, f in FORMS.items()
            for part, g in parts.items()
        }
        times = interleaved_min(fns, args.reps)
        print(f"{layer} {shape} -> {out} channels, ms (x conv's), fastest of {args.reps}:")
        print(f"  {'':16s}" + "".join(f"{part:>22s}" for part in parts))
        for name in FORMS:
            cells = "".join(
                f"{times[name, part] * 1e3:13.2f} ({times[name, part] / times['conv', part]:4.2f}x)"
                for part in parts
            )
            print(f"  {name:16s}{cells}")


if __name__ == "__main__":
    main()
