"""Memory planned before the hardware exists: compile the real train step for a mesh of
devices and read the compiler's per-device memory figures.

:func:`plan_memory` builds the :class:`~usmlite_edu.training.step.TrainStep` of a preset and
spec (Algorithm 1: N:M masks in the optimizer state, fake-quantized forward), gives every
input an abstract value with its :mod:`usmlite_edu.scale.mesh` sharding (no array is
allocated), lowers and compiles it ahead of time, and reports what
``Compiled.memory_analysis()`` says one device holds: its shard of the arguments
(parameters, Adam moments, masks, the batch), the outputs not aliased to donated
arguments, and the temporaries of the step (activations kept for the backward pass, the
gradients, the collectives' buffers).

The devices come from one of two places:

* a **compile-only TPU topology** (``topology="v3:8x8"``): the ``libtpu`` package (an
  optional extra, ``pip install "usmlite-edu[tpu]"``) compiles for TPU on a machine that
  has none, so the figures are the TPU compiler's own;
* otherwise the **local devices** (``XLA_FLAGS=--xla_force_host_platform_device_count=8``
  simulates 8 on a CPU). XLA:CPU is a different compiler with other fusion and layout
  decisions: its figures show how sharding and rematerialisation scale memory, not what a
  TPU or GPU will allocate.

The step is compiled in the scan layout (:attr:`usmlite_edu.speech.model.ModelOptions.scan_layers`:
the blocks stacked and run by one ``lax.scan``, remat per block), so the compiler holds one
block however deep the model is.

The step is planned for the preset's *largest* bucket (``train.bucket_seconds[-1]``): the
padded length of the longest batch bounds the activations, and every bucket compiles its
own program, so the largest one is the one that must fit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from usmlite_edu.core.specs import as_spec
from usmlite_edu.scale import mesh
from usmlite_edu.speech import batching, model
from usmlite_edu.speech.presets import get_preset
from usmlite_edu.training.step import TrainStep

__all__ = ["DEVICE_MEMORY_GIB", "MemoryPlan", "plan_memory", "format_plan"]

#: High-bandwidth memory per JAX device of the TPU generations a topology names
#: (public specifications). v2/v3 expose each TensorCore as a device; later generations
#: one device per chip.
DEVICE_MEMORY_GIB: dict[str, float] = {
    "v2": 8.0,
    "v3": 16.0,
    "v4": 32.0,
    "v5e": 16.0,
    "v5litepod": 16.0,
    "v5p": 95.0,
    "v6e": 32.0,
}

_GIB = 2.0**30


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Per-device memory of one compiled train step (bytes), and what it was planned for."""

    preset: str
    spec: str
    devices: str  # "TPU v3 (compile-only), 128 devices" or "cpu, 8 devices"
    compiler: str  # "tpu" or "cpu"
    mesh: dict[str, int]
    global_batch: int
    grad_accum: int
    seconds: float
    remat: str
    compute_dtype: str | None
    parameters: int
    overrides: tuple[str, ...] = ()  # the preset's --set settings planned with
    argument_bytes: int | None = None
    output_bytes: int | None = None
    alias_bytes: int | None = None
    temp_bytes: int | None = None
    device_memory_bytes: int | None = None
    compile_s: float = 0.0
    error: str | None = None  # the compiler's message when it does not fit or fails

    @property
    def peak_bytes(self) -> int | None:
        """Arguments + outputs not aliased to donated arguments + temporaries: what the
        device holds at once while the step runs (an upper bound the compiler plans)."""
        if self.argument_bytes is None:
            return None
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes

    @property
    def fits(self) -> bool | None:
        if self.error is not None:
            return False
        if self.peak_bytes is None or self.device_memory_bytes is None:
            return None
        return self.peak_bytes <= self.device_memory_bytes


def _tpu_devices(topology: str) -> tuple[list[Any], float | None, str]:
    try:
        import libtpu  # noqa: F401
    except ImportError as e:
        raise RuntimeError(
            f"planning for the TPU topology {topology!r} needs the libtpu package (compile "
            'only, no TPU needed): pip install "usmlite-edu[tpu]"; or leave out --topology '
            "to plan on this machine's (simulated) devices"
        ) from e
    from jax.experimental import topologies

    gen = topology.split(":", 1)[0].lower()
    devices = list(topologies.get_topology_desc(topology, platform="tpu").devices)
    return devices, DEVICE_MEMORY_GIB.get(gen), f"TPU {gen} (compile-only), {len(devices)} devices"


def _abstract(tree: Any, m: jax.sharding.Mesh, table: mesh.AxesTable) -> Any:
    """``tree`` (arrays or shape structs) as ShapeDtypeStructs carrying their mesh
    shardings (:func:`usmlite_edu.scale.mesh.tree_specs`, axes from the model's ``table``)."""
    specs = mesh.tree_specs(tree, m, table)
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=NamedSharding(m, s)),
        tree,
        specs,
    )


def plan_memory(
    preset: str,
    spec: str = "float",
    *,
    topology: str | None = None,
    mesh_spec: str | None = None,
    global_batch: int | None = None,
    grad_accum: int | None = None,
    remat: str | None = None,
    compute_dtype: str | None = "preset",
    seconds: float | None = None,
    label_tokens: int | None = None,
    overrides: Sequence[str] = (),
) -> MemoryPlan:
    """Compile the train step of ``preset`` under ``spec`` for a mesh and read its memory.

    Args:
      topology: a TPU topology name such as ``"v3:8x8"`` (needs ``libtpu``); ``None``
        plans on the local devices.
      mesh_spec: :func:`usmlite_edu.scale.mesh.parse_mesh_spec` (default: all devices on fsdp).
      global_batch: utterances per update (default: the preset's ``train.batch_size``).
      grad_accum: micro-batches per update (``train.grad_accum``); each device then holds
        the activations of ``global_batch / grad_accum`` utterances at a time.
      remat: ``"none"``, ``"block"`` or ``"dots"`` (``train.remat``; default the preset's).
      compute_dtype: dense matmul dtype (``None`` float32, ``"bfloat16"``; default the
        preset's).
      seconds: padded utterance length (default the preset's largest bucket).
      label_tokens: padded label length (default: one word piece per 40 ms, generous for
        speech at about 3 words per second).
      overrides: ``section.field=value`` settings of the preset (as ``--set``).

    Returns a :class:`MemoryPlan`; a compile that runs out of memory (or fails) is a plan
    with ``error`` set to the compiler's message, not an exception. Refuses (ValueError)
    settings that do not fit together before compiling anything.
    """
    p = get_preset(preset).override(list(overrides)) if overrides else get_preset(preset)
    tcfg = p.train
    fields: dict[str, Any] = {}
    if global_batch is not None:
        fields["batch_size"] = int(global_batch)
    if grad_accum is not None:
        fields["grad_accum"] = int(grad_accum)
    if remat is not None:
        fields["remat"] = remat
    if compute_dtype != "preset":
        fields["compute_dtype"] = compute_dtype
    tcfg = tcfg.replace(**fields)  # validates (grad_accum divides the batch, ...)
    spec_obj = as_spec(spec)
    cfg = p.model
    model.check_spec(cfg, model.ModelOptions(spec=spec_obj))
    seconds = float(seconds if seconds is not None else tcfg.bucket_seconds[-1])
    samples = int(round(seconds * cfg.sample_rate))
    labels = int(label_tokens if label_tokens is not None else max(8, round(seconds / 0.04)))

    if topology:
        devices, gib, where = _tpu_devices(topology)
        compiler = "tpu"
    else:
        devices, gib = jax.devices(), None
        where = f"{devices[0].platform}, {len(devices)} devices"
        compiler = devices[0].platform
    m = mesh.make_mesh(mesh_spec, devices)
    batch_axes = m.shape["data"] * m.shape["fsdp"]
    micro = tcfg.batch_size // tcfg.grad_accum
    if micro % batch_axes:
        raise ValueError(
            f"a micro-batch of {micro} utterances (global batch {tcfg.batch_size} / "
            f"grad_accum {tcfg.grad_accum}) does not split over data x fsdp = {batch_axes} "
            "devices; choose a batch or mesh where it does"
        )

    # The scan layout (ModelOptions.scan_layers): the compiler sees one Conformer block,
    # so compile time and the compiler's memory do not grow with the number of blocks
    # (unrolled, the 32-block usm_2b step ran this machine out of memory).
    trainer = TrainStep(cfg, spec_obj, tcfg, scan_layers=True)
    abstract_params = model.split_model(
        model.abstract_model(cfg, spec_obj, **trainer.model_options)
    )[1]
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_params))
    abstract_state = jax.eval_shape(trainer.setup_optimizer, abstract_params)
    table = trainer.param_table
    params = _abstract(abstract_params, m, table)
    state = _abstract(abstract_state, m, table)
    b = tcfg.batch_size
    batch_spec = NamedSharding(m, PartitionSpec(("data", "fsdp")))
    batch = batching.Batch(
        jax.ShapeDtypeStruct((b, samples), jnp.float32, sharding=batch_spec),
        jax.ShapeDtypeStruct((b,), jnp.int32, sharding=batch_spec),
        jax.ShapeDtypeStruct((b, labels), jnp.int32, sharding=batch_spec),
        jax.ShapeDtypeStruct((b,), jnp.int32, sharding=batch_spec),
        jax.ShapeDtypeStruct((b,), jnp.float32, sharding=batch_spec),
    )
    replicated = NamedSharding(m, PartitionSpec())
    # abstract key and step: concrete arrays cannot be made on compile-only devices
    key_shape = jax.eval_shape(lambda: jax.random.key(0))
    key = jax.ShapeDtypeStruct(key_shape.shape, key_shape.dtype, sharding=replicated)
    step = jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)

    common = dict(
        preset=p.name,
        spec=str(spec_obj),
        devices=where,
        compiler=compiler,
        mesh=dict(m.shape),
        global_batch=b,
        grad_accum=tcfg.grad_accum,
        seconds=seconds,
        remat=tcfg.remat,
        compute_dtype=tcfg.compute_dtype,
        parameters=int(n_params),
        overrides=tuple(overrides),
        device_memory_bytes=int(gib * _GIB) if gib else None,
    )
    t0 = time.time()
    try:
        with mesh.use_mesh(m):
            compiled = trainer._step.lower(params, state, batch, key, step).compile()
        ma = compiled.memory_analysis()
    except Exception as e:  # the compiler's out-of-memory (or other) message is the answer
        return MemoryPlan(**common, compile_s=time.time() - t0, error=f"{type(e).__name__}: {e}")
    return MemoryPlan(
        **common,
        argument_bytes=int(ma.argument_size_in_bytes),
        output_bytes=int(ma.output_size_in_bytes),
        alias_bytes=int(ma.alias_size_in_bytes),
        temp_bytes=int(ma.temp_size_in_bytes),
        compile_s=time.time() - t0,
    )


def format_plan(pl: MemoryPlan) -> str:
    """A few lines for a terminal: the setting, then per-device GiB and the verdict."""

    def gib(x: int | None) -> str:
        return "-" if x is None else f"{x / _GIB:.2f} GiB"

    mesh_txt = ",".join(f"{k}={v}" for k, v in pl.mesh.items())
    lines = [
        f"plan: {pl.preset} ({pl.parameters / 1e6:.1f}M parameters), spec {pl.spec}, "
        f"global batch {pl.global_batch} x {pl.seconds:g} s"
        + (f" in {pl.grad_accum} micro-batches" if pl.grad_accum > 1 else "")
        + f", remat {pl.remat}, compute {pl.compute_dtype or 'float32'}"
        + (f"; with {' '.join(pl.overrides)}" if pl.overrides else ""),
        f"devices: {pl.devices}; mesh {mesh_txt}; compiled in {pl.compile_s:.0f} s",
    ]
    if pl.compiler != "tpu":
        lines.append(
            f"note: figures from the {pl.compiler.upper()} compiler; a TPU or GPU compiler "
            "fuses and lays out differently (plan with --topology and libtpu for TPU figures)"
        )
    if pl.error is not None:
        lines.append(f"does not compile: {pl.error.splitlines()[0][:2000]}")
        return "\n".join(lines)
    lines.append(
        f"per device: arguments {gib(pl.argument_bytes)}, outputs {gib(pl.output_bytes)} "
        f"(aliased to donated arguments {gib(pl.alias_bytes)}), temporaries "
        f"{gib(pl.temp_bytes)}; peak {gib(pl.peak_bytes)}"
    )
    if pl.device_memory_bytes is not None:
        verdict = "fits" if pl.fits else "does NOT fit"
        lines.append(f"device memory {gib(pl.device_memory_bytes)}: {verdict}")
    return "\n".join(lines)
