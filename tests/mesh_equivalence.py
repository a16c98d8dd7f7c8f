"""Child process of tests/test_mesh.py: three train steps of the ``ci`` preset (one block)
on one device and on the 8-device meshes; prints one JSON line of the comparisons.

Run as ``python tests/mesh_equivalence.py SPEC``; sets ``XLA_FLAGS`` before jax loads.
"""

import contextlib
import json
import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8"
    # compile faster (both runs under the same flags, so the comparison is unaffected)
    + " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from usmlite_edu.core import sparsity
from usmlite_edu.course.mesh_tour import synthetic_batch  # noqa: E402
from usmlite_edu.scale import mesh  # noqa: E402
from usmlite_edu.speech import presets
from usmlite_edu.training import train

MESHES = ("data=2,fsdp=4,tensor=1", "data=1,fsdp=8,tensor=1", "data=1,fsdp=4,tensor=2")
STEPS = 3


def run(trainer, batch, key, spec):
    params = trainer.init_params(0)
    opt_state = trainer.setup_optimizer(params)
    ctx = contextlib.nullcontext()
    if spec is not None:
        m = mesh.make_mesh(spec)
        params, opt_state = mesh.shard_train_state(params, opt_state, m, trainer.param_table)
        batch = mesh.shard_batch(batch, m)
        ctx = mesh.use_mesh(m)
    losses = []
    with ctx:
        for i in range(STEPS):
            params, opt_state, loss, _ = trainer.step(params, opt_state, batch, key, i)
            losses.append(float(loss))
    return params, opt_state, losses


def main(spec_name: str) -> None:
    p = presets.get_preset("ci")
    cfg = p.model.replace(num_layers=1)  # the ci blocks, one of them: half the compile time
    trainer = train.Trainer(cfg, spec_name, p.train)
    batch = synthetic_batch()
    key = jax.random.key(0)  # made outside any mesh context
    ref_params, ref_state, ref_losses = run(trainer, batch, key, None)
    ref_masks = sparsity.masks_from_state(ref_state)
    out = {
        "devices": jax.device_count(),
        "ref_losses": ref_losses,
        "max_abs_param": max(float(np.max(np.abs(x))) for x in jax.tree.leaves(ref_params)),
        "meshes": {},
    }
    for spec in MESHES:
        params, state, losses = run(trainer, batch, key, spec)
        masks = sparsity.masks_from_state(state)
        kernel = params["encoder"]["blocks"][0]["ffn1"]["dense1"]["kernel"]
        mask_sharding = None
        if masks is not None:
            mk = masks["encoder"]["blocks"][0]["ffn1"]["dense1"]["kernel"]
            mask_sharding = str(mk.sharding.spec)
        out["meshes"][spec] = {
            "losses": losses,
            "max_param_diff": max(
                float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(ref_params), jax.tree.leaves(params), strict=True)
            ),
            "masks_equal": masks is None
            or all(
                np.array_equal(np.asarray(a), np.asarray(b))
                for a, b in zip(jax.tree.leaves(ref_masks), jax.tree.leaves(masks), strict=True)
            ),
            "has_masks": masks is not None,
            "kernel_spec": str(kernel.sharding.spec),
            "kernel_replicated": kernel.sharding.is_fully_replicated,
            "kernel_shard_shape": list(kernel.addressable_shards[0].data.shape),
            "kernel_shape": list(kernel.shape),
            "mask_spec": mask_sharding,
        }
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
