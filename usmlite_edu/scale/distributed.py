"""Several processes, one training run (issue 13, part 3).

A run on several hosts (a TPU pod slice, several GPU machines, or several processes on
one machine) starts one Python process per host; :func:`initialize` connects them with
:func:`jax.distributed.initialize` *before* JAX touches a device. After that,
``jax.devices()`` lists every process's devices, a :class:`jax.sharding.Mesh` spans them
all, and the same jitted train step runs on every process (SPMD), each one feeding its
own devices:

* each process builds only the rows of each batch that its devices hold
  (:func:`usmlite_edu.scale.mesh.process_rows`, :class:`usmlite_edu.speech.batching.BatchStream`'s
  ``rows``), and :func:`usmlite_edu.scale.mesh.global_batch` assembles the global batch with
  :func:`jax.make_array_from_process_local_data`;
* Orbax checkpoints are written by all processes together (each writes its shards) and
  restore onto any mesh;
* files that are not arrays (the tokenizer, ``config.json``, ``metrics.jsonl``) are
  written by process 0 alone (:func:`is_primary`), the others wait at :func:`barrier`.

On CPUs the processes exchange data through the gloo collectives
(``jax_cpu_collectives_implementation``), which :func:`initialize` selects; TPU and GPU
backends use their own interconnect and ignore that setting.
"""

from __future__ import annotations

import jax

__all__ = ["initialize", "is_primary", "barrier", "describe"]


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
) -> bool:
    """Connect this process to the others; returns whether it did anything.

    ``coordinator="HOST:PORT"`` with ``num_processes`` and ``process_id``: an explicit
    launch (process 0 listens on ``PORT`` of ``HOST``; every process gets the same
    coordinator and count and its own id). ``auto=True``: the environment says (a Cloud
    TPU pod slice, SLURM, Open MPI): :func:`jax.distributed.initialize` with no
    arguments. Neither: a single process, nothing to do.

    Must run before any JAX computation or device query in the process. Raises
    ``ValueError`` naming the bad value for an incomplete or inconsistent explicit launch.
    """
    explicit = (coordinator, num_processes, process_id)
    if auto and any(v is not None for v in explicit):
        raise ValueError(
            "--distributed auto reads the launch from the environment: "
            "do not also give --coordinator, --num-processes or --process-id"
        )
    if not auto and all(v is None for v in explicit):
        return False
    if not auto:
        if any(v is None for v in explicit):
            raise ValueError(
                "a multi-process launch needs all of --coordinator HOST:PORT, "
                f"--num-processes N and --process-id I (got coordinator={coordinator!r}, "
                f"num_processes={num_processes!r}, process_id={process_id!r})"
            )
        host, _, port = str(coordinator).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--coordinator {coordinator!r} is not HOST:PORT (e.g. 10.0.0.2:1234)")
        if int(num_processes) < 1:
            raise ValueError(f"--num-processes {num_processes} must be at least 1")
        if not 0 <= int(process_id) < int(num_processes):
            raise ValueError(
                f"--process-id {process_id} must be in 0..{int(num_processes) - 1} "
                f"(--num-processes {num_processes})"
            )
    # CPU processes need a collectives implementation to talk to each other; accelerators
    # ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if auto:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=int(num_processes),
            process_id=int(process_id),
        )
    return True


def is_primary() -> bool:
    """Whether this is process 0, the one that writes the run's non-array files."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def describe() -> str:
    """One line: this process's index, the process count and the device counts."""
    return (
        f"process {jax.process_index()} of {jax.process_count()}: "
        f"{jax.local_device_count()} local of {jax.device_count()} devices "
        f"({jax.devices()[0].platform})"
    )
