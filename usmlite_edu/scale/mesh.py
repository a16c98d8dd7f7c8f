"""Device meshes and the sharding of the train state (issue 13, part 1).

A :class:`jax.sharding.Mesh` has the three axes :data:`AXES` = ``("data", "fsdp",
"tensor")``, built from a spec string such as ``"data=2,fsdp=4,tensor=1"`` (missing axes
are 1; no spec at all puts every device on ``fsdp``).

Every parameter declares *logical* axis names where the model creates it (flax's
``out_sharding`` metadata on its ``nnx.Param``; the model's
:func:`usmlite_edu.speech.model.param_table` lists them, and :func:`logical_axes` looks a
leaf up there), and one table, :data:`LOGICAL_RULES`, maps logical names to mesh axes: the batch over ``(data, fsdp)``, a kernel's model dimension (``embed``) over
``fsdp`` (ZeRO-3 style: each device holds a slice of every weight), its hidden / head /
vocabulary dimension (``mlp``, ``vocab``) over ``tensor``, and every vector (biases,
LayerNorm scales) replicated; the stacked blocks of the scan layout have a leading
``layers`` axis, replicated (every device holds its slice of every block).

A dimension that its mesh axes do not divide falls back to replication on those axes (for
a tuple of axes, the trailing axes are dropped until the rest divide the dimension)
instead of failing: e.g. ``frontend/conv1/kernel`` ``(3, 3, 1, 16)`` has one input
channel, which stays whole on every device.

The optimizer state (Adam moments, N:M masks, counters) is sharded by the same function
applied to its own leaves: a leaf's trailing path (``.../ffn1/dense1/kernel``) and shape are
those of its parameter, so moments and masks get their kernel's declared axes and follow
it; scalars (step counts, a dense leaf's ``True`` mask) are replicated. Quantization scales are not stored: they are
computed in the step from the (sharded) kernel, so they follow it.

Two traps in jax 0.10 / flax 0.12: ``with mesh:`` does not set the *abstract* mesh that
sharding constraints consult, so :func:`constrain` would silently do nothing; use
:func:`use_mesh` (``jax.set_mesh``). And concrete arrays (a PRNG key) made inside the mesh
context of compile-only devices fail: make them outside.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from usmlite_edu.core.sizes import ParamInfo

__all__ = [
    "AXES",
    "LOGICAL_RULES",
    "parse_mesh_spec",
    "make_mesh",
    "AxesTable",
    "logical_axes",
    "spec_for",
    "tree_specs",
    "param_specs",
    "shard_tree",
    "shard_train_state",
    "shard_batch",
    "process_rows",
    "global_batch",
    "to_host",
    "use_mesh",
    "constrain",
]

#: Mesh axis names, outermost first.
AXES: tuple[str, ...] = ("data", "fsdp", "tensor")

#: Logical axis name -> mesh axis (or tuple of axes, or None: replicated).
LOGICAL_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "embed": "fsdp",  # a kernel's model-dimension side
    "mlp": "tensor",  # a kernel's hidden / heads x head_dim side
    "heads": "tensor",
    "vocab": "tensor",
    "head_dim": None,
    "taps": None,  # convolution window
    "vector": None,  # biases, LayerNorm scales: small, replicated
    "length": None,
    "act_embed": None,  # an activation's feature dimension
    "layers": None,  # the stacked blocks' axis (scan layout): every device holds all blocks
}

#: What :func:`logical_axes` reads: the model's parameter table (rows with ``name`` and
#: ``axes``), or a mapping ``name -> axes``.
AxesTable = Sequence[ParamInfo] | Mapping[str, Sequence[str | None]]


# --------------------------------------------------------------------------- the mesh
def parse_mesh_spec(spec: str | None, n_devices: int) -> tuple[int, int, int]:
    """``"data=2,fsdp=4,tensor=1"`` -> ``(2, 4, 1)``; missing axes are 1, and ``None`` or
    ``""`` puts all ``n_devices`` on ``fsdp``. Raises ``ValueError`` naming the spec (and
    the bad part) for an unknown axis, a repeated axis, a size that is not a positive
    integer, or a product of sizes other than ``n_devices``."""
    if spec is None or not spec.strip():
        return (1, n_devices, 1)
    sizes: dict[str, int] = {}
    for part in spec.split(","):
        name, eq, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or name not in AXES:
            raise ValueError(
                f"mesh spec {spec!r}: {part.strip()!r} is not AXIS=SIZE with AXIS one of {AXES}"
            )
        if name in sizes:
            raise ValueError(f"mesh spec {spec!r}: axis {name!r} given twice")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(
                f"mesh spec {spec!r}: size {value!r} of axis {name!r} is not a positive integer"
            )
        sizes[name] = int(value)
    shape = tuple(sizes.get(a, 1) for a in AXES)
    if math.prod(shape) != n_devices:
        raise ValueError(
            f"mesh spec {spec!r}: {' x '.join(map(str, shape))} = {math.prod(shape)} devices, "
            f"but there are {n_devices}"
            + (
                " (a CPU simulates N devices when XLA_FLAGS="
                "--xla_force_host_platform_device_count=N is set before jax starts)"
                if n_devices < math.prod(shape)
                else ""
            )
        )
    return shape


def make_mesh(spec: str | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A mesh with axes :data:`AXES` over ``devices`` (default: every device) shaped by
    ``spec`` (:func:`parse_mesh_spec`). Axes are ``Auto``: the compiler propagates
    shardings between the annotated arrays."""
    devices = list(jax.devices() if devices is None else devices)
    shape = parse_mesh_spec(spec, len(devices))
    return Mesh(
        np.asarray(devices, dtype=object).reshape(shape),
        AXES,
        axis_types=(AxisType.Auto,) * len(AXES),
    )


# --------------------------------------------------------------------------- logical axes
def _key_name(k) -> str:
    return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))


def _as_mapping(table: AxesTable) -> Mapping[str, tuple[str | None, ...]]:
    if isinstance(table, Mapping):
        return table
    return {row.name: tuple(row.axes) for row in table}


def logical_axes(
    path: Sequence[Any], shape: Sequence[int], table: AxesTable
) -> tuple[str | None, ...]:
    """Logical axis names of the leaf at ``path`` (jax key path or names) with ``shape``,
    as its parameter declares them in ``table`` (the model's
    :func:`~usmlite_edu.speech.model.param_table`).

    The leaf is the parameter whose name is the longest trailing part of ``path``, so an
    optimizer-state leaf (``.../mu/encoder/blocks/0/ffn1/dense1/kernel``) gets its
    parameter's axes. A leaf that names no parameter, or whose rank differs from the
    declared one (a scalar mask, a counter), is replicated.
    """
    axes_of = _as_mapping(table)
    names = [_key_name(k) for k in path]
    for j in range(len(names)):
        axes = axes_of.get("/".join(names[j:]))
        if axes is not None:
            if len(axes) == len(shape):
                return tuple(axes)
            break
    return (None,) * len(shape)


def _mesh_axes_for(
    logical: Sequence[str | None],
    shape: Sequence[int],
    mesh_shape: Mapping[str, int],
    rules: Mapping[str, Any],
) -> PartitionSpec:
    used: set[str] = set()
    out = []
    for name, dim in zip(logical, shape, strict=True):
        axes = rules.get(name) if name is not None else None
        if axes is None:
            out.append(None)
            continue
        axes = [a for a in ((axes,) if isinstance(axes, str) else tuple(axes)) if a not in used]
        # Fallback: drop trailing axes until the rest divide the dimension (all dropped:
        # replicated on them).
        while axes and dim % math.prod(mesh_shape[a] for a in axes):
            axes.pop()
        axes = [a for a in axes if mesh_shape[a] > 1]  # size-1 axes shard nothing
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else tuple(axes))
    return PartitionSpec(*out)


def spec_for(
    logical: Sequence[str | None],
    shape: Sequence[int],
    mesh: Mesh | Any,
    rules: Mapping[str, Any] = LOGICAL_RULES,
) -> PartitionSpec:
    """The :class:`PartitionSpec` of an array with ``shape`` and ``logical`` axis names on
    ``mesh`` (concrete or abstract). A dimension its mesh axes do not divide is
    replicated on them (see the module docstring); a mesh axis is used at most once."""
    return _mesh_axes_for(logical, shape, dict(mesh.shape), rules)


def tree_specs(
    tree: Any, mesh: Mesh, table: AxesTable, rules: Mapping[str, Any] = LOGICAL_RULES
) -> Any:
    """A :class:`PartitionSpec` for every array leaf of ``tree`` (params or an optimizer
    state) from the axes its parameter declares in ``table`` (:func:`logical_axes`)."""
    table = _as_mapping(table)

    def one(path, leaf):
        shape = np.shape(leaf)
        return spec_for(logical_axes(path, shape, table), shape, mesh, rules)

    return jax.tree_util.tree_map_with_path(one, tree)


def param_specs(
    params: Any, mesh: Mesh, table: AxesTable, rules: Mapping[str, Any] = LOGICAL_RULES
) -> Any:
    """The :class:`PartitionSpec` pytree of ``params`` (the dict of
    :func:`usmlite_edu.speech.model.split_model`; arrays or ``ShapeDtypeStruct``)."""
    return tree_specs(params, mesh, table, rules)


def shard_tree(
    tree: Any, mesh: Mesh, table: AxesTable, rules: Mapping[str, Any] = LOGICAL_RULES
) -> Any:
    """``tree`` placed on ``mesh`` with the NamedShardings of :func:`tree_specs`.

    With several processes, every process must hold the same ``tree`` (e.g. the same
    seed's initial parameters): each one places only the shards of its own devices,
    from host copies of the leaves."""
    shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), tree_specs(tree, mesh, table, rules))
    if jax.process_count() > 1:
        tree = jax.tree.map(np.asarray, tree)
    return jax.device_put(tree, shardings)


def shard_train_state(
    params: Any,
    opt_state: Any,
    mesh: Mesh,
    table: AxesTable,
    rules: Mapping[str, Any] = LOGICAL_RULES,
) -> tuple[Any, Any]:
    """``(params, opt_state)`` placed on ``mesh``: each kernel, its Adam moments and its
    N:M mask with the kernel's sharding (its axes in ``table``, the model's
    :func:`~usmlite_edu.speech.model.param_table`); vectors and counters replicated."""
    table = _as_mapping(table)
    return shard_tree(params, mesh, table, rules), shard_tree(opt_state, mesh, table, rules)


def shard_batch(batch: Any, mesh: Mesh, rules: Mapping[str, Any] = LOGICAL_RULES) -> Any:
    """Every leaf of ``batch`` (e.g. a :class:`usmlite_edu.speech.batching.Batch`) placed with its
    leading axis on ``rules["batch"]`` (``(data, fsdp)``), the other axes whole; a batch
    size those axes do not divide falls back as in :func:`spec_for`."""

    def one(x):
        shape = np.shape(x)
        spec = spec_for(("batch",) + (None,) * (len(shape) - 1), shape, mesh, rules)
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(one, batch)


def _batch_sharding(shape: Sequence[int], mesh: Mesh, rules: Mapping[str, Any]) -> NamedSharding:
    return NamedSharding(
        mesh, spec_for(("batch",) + (None,) * (len(shape) - 1), shape, mesh, rules)
    )


def process_rows(
    mesh: Mesh, batch_size: int, rules: Mapping[str, Any] = LOGICAL_RULES
) -> tuple[int, int]:
    """The rows ``(lo, hi)`` of a global batch of ``batch_size`` that this process's
    devices hold when the batch is sharded as in :func:`shard_batch`: what this process
    must read. One process: ``(0, batch_size)``. A batch dimension replicated across
    processes (the fallback of :func:`spec_for`) gives several processes the same rows.
    Raises ``ValueError`` if this process's rows are not one contiguous range (a mesh
    whose devices are not ordered process by process)."""
    sharding = _batch_sharding((batch_size,), mesh, rules)
    spans = sorted(
        {(idx[0].start or 0, batch_size if idx[0].stop is None else idx[0].stop)
         for idx in sharding.addressable_devices_indices_map((batch_size,)).values()}
    )  # fmt: skip
    lo, hi = spans[0][0], spans[0][1]
    for a, b in spans[1:]:
        if a > hi:
            raise ValueError(
                f"process {jax.process_index()} holds rows {spans} of the batch, not one "
                "range: build the mesh from jax.devices() in their order"
            )
        hi = max(hi, b)
    return lo, hi


def global_batch(
    local: Any, mesh: Mesh, batch_size: int, rules: Mapping[str, Any] = LOGICAL_RULES
) -> Any:
    """The global batch (sharded as in :func:`shard_batch`) assembled from every
    process's rows :func:`process_rows` (``local``: a pytree whose leaves have those
    rows) with :func:`jax.make_array_from_process_local_data`. With one process this
    places the whole batch, as :func:`shard_batch` does."""

    def one(x):
        x = np.asarray(x)
        shape = (batch_size,) + x.shape[1:]
        return jax.make_array_from_process_local_data(_batch_sharding(shape, mesh, rules), x, shape)

    return jax.tree.map(one, local)


def to_host(tree: Any) -> Any:
    """Every leaf as a NumPy array holding its global value; an array spread over several
    processes is gathered (a collective: every process must call this)."""
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


# --------------------------------------------------------------------------- context
@contextlib.contextmanager
def use_mesh(mesh: Mesh):
    """Run the enclosed code with ``mesh`` as the current (concrete and abstract) mesh,
    so :func:`constrain` takes effect. Uses ``jax.set_mesh``: under jax 0.10 ``with mesh:``
    does not set the abstract mesh and the constraints would silently do nothing. Make
    concrete arrays (PRNG keys) before entering it when the devices are compile-only."""
    with jax.set_mesh(mesh):
        yield mesh


def constrain(x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
    """``x`` with a sharding constraint from its ``logical`` axis names, under the mesh of
    :func:`use_mesh`; unchanged (no constraint, the same computation) when no mesh with
    :data:`AXES` is set, e.g. on one device."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or tuple(mesh.axis_names) != AXES or math.prod(mesh.axis_sizes) == 1:
        return x
    spec = spec_for(tuple(logical), x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, spec)
