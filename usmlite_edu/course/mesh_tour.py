"""A look at one sharded train step on simulated devices, for notebook 08.

A CPU shows JAX several devices only if ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
is set before JAX creates its CPU client, i.e. before the first array of the process. A
notebook kernel has made arrays long before (its set-up cell seeds JAX), so
:func:`tour` runs the sharded part in a fresh Python process (this module as a script)
with the flag set, and returns what that process measured as a dict:

* the mesh, and how one compressed weight (``encoder/blocks/0/ffn1/dense1/kernel``), its
  int4 per-channel scales (computed in a jitted function from the sharded kernel; how
  many all-reduces its compiled code has) and its
  2:4 mask (a leaf of the optimizer state) are laid out: the partition spec, each
  device's index ranges, and ``jax.debug.visualize_array_sharding``'s drawing;
* the bytes of the train state (parameters, Adam moments, masks) held by one device;
* ``steps`` train steps on the mesh against the same steps on one device (losses, the
  largest parameter difference, whether the masks are identical).

Run by hand: ``python -m usmlite_edu.course.mesh_tour --devices 8 --mesh data=2,fsdp=4``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["tour", "synthetic_batch", "WEIGHT_PATH"]

#: The weight the tour follows: the first feed-forward layer of block 0, ``(d, 4d)``.
WEIGHT_PATH = ("encoder", "blocks", 0, "ffn1", "dense1", "kernel")

_PREFIX = "TOUR "
# Compile faster in the child (the one-device and mesh runs use the same flags).
_FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def tour(
    devices: int = 8,
    mesh_spec: str = "data=2,fsdp=4",
    spec: str = "int4+2:4",
    *,
    preset: str = "ci",
    layers: int = 1,
    steps: int = 2,
    timeout: float = 600,
) -> dict[str, Any]:
    """Run the tour in a child process with ``devices`` simulated CPU devices (see the
    module docstring); raises ``RuntimeError`` with the child's stderr if it fails."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={int(devices)} {_FAST_XLA}"
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    argv = [
        sys.executable, "-m", "usmlite_edu.course.mesh_tour", "--devices", str(devices),
        "--mesh", mesh_spec, "--spec", spec, "--preset", preset,
        "--layers", str(layers), "--steps", str(steps),
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the mesh tour failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(_PREFIX) :])


def synthetic_batch(b: int = 8, samples: int = 8000, labels: int = 6):
    """A fixed random training batch (seeded): ``b`` waveforms of up to ``samples``
    samples (the first one full length), ``labels`` token ids below 32 each."""
    import numpy as np

    from usmlite_edu.speech import batching  # JAX: imported only where arrays are made

    rng = np.random.default_rng(0)
    lengths = rng.integers(samples // 2, samples + 1, b).astype(np.int32)
    lengths[0] = samples
    return batching.Batch(
        (0.1 * rng.standard_normal((b, samples))).astype(np.float32),
        lengths,
        rng.integers(1, 32, (b, labels)).astype(np.int32),
        rng.integers(2, labels + 1, b).astype(np.int32),
        np.ones(b, np.float32),
    )


# --------------------------------------------------------------------------- the child
def _layout(x) -> dict[str, Any]:
    """Partition spec, per-device index ranges and shard shape of a 1-D or 2-D array."""
    import jax

    ranges = {}
    for d, idx in x.sharding.devices_indices_map(x.shape).items():
        ranges[str(d.id)] = [
            [0 if s.start is None else s.start, n if s.stop is None else s.stop]
            for s, n in zip(idx, x.shape, strict=True)
        ]
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        jax.debug.visualize_array_sharding(x, use_color=False)
    return {
        "shape": list(x.shape),
        "spec": str(x.sharding.spec),
        "shard_shape": list(x.addressable_shards[0].data.shape),
        "ranges": ranges,
        "drawing": text.getvalue(),
    }


def _child(args) -> dict[str, Any]:
    import jax
    import numpy as np

    # The child process's entry: JAX (which these import) must start after XLA_FLAGS.
    from usmlite_edu.core import quant, sparsity  # child only: after XLA_FLAGS
    from usmlite_edu.scale import mesh  # child only: after XLA_FLAGS
    from usmlite_edu.speech import presets  # child only: after XLA_FLAGS
    from usmlite_edu.training.step import TrainStep  # child only: after XLA_FLAGS

    p = presets.get_preset(args.preset)
    cfg = p.model.replace(num_layers=args.layers)
    trainer = TrainStep(cfg, args.spec, p.train)
    batch = synthetic_batch(b=p.train.batch_size)
    key = jax.random.key(0)  # concrete: made outside the mesh context

    def leaf(tree):
        for k in WEIGHT_PATH:
            tree = tree[k]
        return tree

    def run(m):
        params = trainer.init_params(0)
        opt_state = trainer.setup_optimizer(params)
        b, ctx = batch, contextlib.nullcontext()
        if m is not None:
            params, opt_state = mesh.shard_train_state(params, opt_state, m, trainer.param_table)
            b, ctx = mesh.shard_batch(batch, m), mesh.use_mesh(m)
        before = (params, opt_state)
        out = {}
        if m is not None:  # the layout and memory of the state before any step
            kernel = leaf(params)
            masks = sparsity.masks_from_state(opt_state)
            bits = trainer.spec.bits or 8
            scale_fn = jax.jit(lambda w: quant.quantize(w, bits).scale[0])
            scales = scale_fn(kernel)
            hlo = scale_fn.lower(kernel).compile().as_text()
            out["scales_all_reduces"] = hlo.count("all-reduce(") + hlo.count("all-reduce-start(")
            out["kernel"] = _layout(kernel)
            out["scales"] = _layout(scales)
            out["mask"] = _layout(leaf(masks)) if masks is not None else None
            state = jax.tree.leaves(before)
            out["state_bytes_total"] = int(sum(x.nbytes for x in state))
            out["state_bytes_device0"] = int(
                sum(x.addressable_shards[0].data.nbytes for x in state)
            )
        losses = []
        with ctx:
            for i in range(args.steps):
                params, opt_state, loss, _ = trainer.step(params, opt_state, b, key, i)
                losses.append(float(loss))
        return params, opt_state, losses, out

    ref_params, ref_state, ref_losses, _ = run(None)
    m = mesh.make_mesh(args.mesh)
    params, state, losses, out = run(m)
    ref_masks, masks = sparsity.masks_from_state(ref_state), sparsity.masks_from_state(state)
    out.update(
        devices=jax.device_count(),
        mesh=dict(m.shape),
        device_grid=[[int(d.id) for d in row] for row in m.devices.reshape(m.devices.shape[0], -1)],
        spec=str(trainer.spec),
        losses_one_device=ref_losses,
        losses_mesh=losses,
        max_param_diff=max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params), strict=True)
        ),
        max_abs_param=max(float(np.max(np.abs(x))) for x in jax.tree.leaves(ref_params)),
        masks_equal=ref_masks is None
        or all(
            np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in zip(jax.tree.leaves(ref_masks), jax.tree.leaves(masks), strict=True)
        ),
    )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--mesh", default="data=2,fsdp=4")
    ap.add_argument("--spec", default="int4+2:4")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    print(_PREFIX + json.dumps(_child(args)), flush=True)


if __name__ == "__main__":
    main()
