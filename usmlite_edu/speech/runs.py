"""A run directory on disk: what ``usmlite-edu train`` writes and everything else reads.

::

    RUN/config.json        preset, resolved model and training configs, spec, corpus, seed,
                           overrides, machine
    RUN/tokenizer/         the sentencepiece model
    RUN/checkpoints/       Orbax: params, optimizer + mask state, data position
    RUN/params/            final parameters (what ``--init``, ``eval`` and ``transcribe`` read)
    RUN/masks/             final N:M masks of a sparse run
    RUN/metrics.jsonl      one JSON object per logged step and per evaluation
    RUN/train.lock         the advisory lock of the process writing the run, and its PID

Also here: the machine a result was measured on (XLA's CPU code depends on it) and the
git commit, recorded with every result.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from usmlite_edu.core.specs import CompressionSpec, Spec, as_spec
from usmlite_edu.speech import linen_migration, model
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig, config_from_dict
from usmlite_edu.speech.tokenizer import Tokenizer

__all__ = [
    "RunLocked",
    "writer_lock",
    "Run",
    "load_run",
    "read_config",
    "read_metrics",
    "load_params",
    "save_params",
    "load_masks",
    "write_json",
    "json_default",
    "checkpoint_manager",
    "restore_latest",
    "save_checkpoint",
    "average_checkpoints",
    "machine_info",
    "git_commit",
]


_LOG = logging.getLogger(__name__)
#: the lock file inside a run directory (:func:`writer_lock`)
LOCK_NAME = "train.lock"


# --------------------------------------------------------------------------- one writer
class RunLocked(RuntimeError):
    """Another process holds a run directory's writer lock (:func:`writer_lock`)."""


class writer_lock:  # noqa: N801 - used as a context manager, like open()
    """The one-writer lock of a run directory: an exclusive ``fcntl.flock`` on
    ``RUN/train.lock``, held from ``__enter__`` to ``__exit__``.

    A second writer (another process, or another ``writer_lock`` of this process) is
    refused with :class:`RunLocked`, whose message names the directory and the holder's
    PID (written into the lock file by the holder). The lock is advisory and the kernel
    drops it when its holder's file is closed, so a writer killed with ``kill -9`` leaves
    the file behind but not the lock: the next ``train`` on the directory resumes. The
    directory is created if needed.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> writer_lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(
                f"{self.path.parent} is being written by another training process "
                f"(PID {holder}, holding {self.path}); wait for it to end, or use "
                "another --out"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the flock
            self._fd = None


# --------------------------------------------------------------------------- JSON
def json_default(o: Any) -> Any:
    """JSON for what runs record: dataclasses, NumPy scalars, anything else as ``str``."""
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=json_default))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- arrays
def save_params(path: Path, tree: Any) -> None:
    """Save a pytree of arrays (parameters or masks) with Orbax, replacing ``path``."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    if path.exists():
        shutil.rmtree(path)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, tree)


def load_params(path: Path, target: Any | None = None) -> Any:
    """Restore a pytree saved by :func:`save_params`.

    With ``target`` (arrays or ``jax.ShapeDtypeStruct``), shapes and dtypes are checked and
    the tree comes back with ``target``'s structure. Without it, Orbax returns the dict it
    stored, where the integer keys of the model's block list have become strings: pass the
    result through :func:`usmlite_edu.speech.linen_migration.params_from_checkpoint`.
    """
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(
            f"no parameters at {path}: train a model first "
            "(usmlite-edu train ...) or point to its run directory"
        )
    with ocp.StandardCheckpointer() as ckptr:
        if target is None:
            return ckptr.restore(path)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), target)
        return ckptr.restore(path, abstract)


def checkpoint_manager(run_dir: Path):
    """Orbax manager of ``RUN/checkpoints`` (the last two kept; synchronous saves, so a
    killed run never leaves a half-written checkpoint as its latest)."""
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=2, create=True, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager((Path(run_dir) / "checkpoints").absolute(), options=options)


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)


def restore_latest(mngr: Any, like: Any) -> tuple[int, Any] | None:
    """``(step, state)`` of the latest checkpoint of ``mngr`` (:func:`checkpoint_manager`),
    or ``None`` when there is none yet: the resume of every loop that checkpoints (training,
    the supernet search).

    ``like`` is a state of the same tree (the loop's freshly initialised one): each saved
    array comes back with its shape and dtype, on its placement (a jax array's sharding,
    whatever mesh or device wrote the checkpoint: Orbax reshards on read; a NumPy value as
    a host array)."""
    import orbax.checkpoint as ocp  # heavy: loaded by the loops that checkpoint only

    step = mngr.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(_abstract, like)
    return int(step), mngr.restore(step, args=ocp.args.StandardRestore(abstract))


def save_checkpoint(mngr: Any, step: int, state: Any) -> None:
    """Save ``state`` as checkpoint ``step`` of ``mngr`` and wait until it is on disk (a
    killed loop resumes from the last whole one: :func:`restore_latest`)."""
    import orbax.checkpoint as ocp  # heavy: loaded by the loops that checkpoint only

    mngr.save(step, args=ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()


def average_checkpoints(checkpoints: Sequence[str | os.PathLike]) -> Any:
    """The element-wise mean of the ``params`` of several training checkpoints (each a
    ``RUN/checkpoints/<step>`` folder of :func:`save_checkpoint`, or a copy of one):
    checkpoint averaging, as ESPnet's recipes average their last or best epochs. The
    checkpoints must hold the same parameter tree; the mean is accumulated in float64 and
    returned in each leaf's dtype, as the stored (string-keyed) tree, which
    :func:`save_params` writes and :func:`load_run` reads back."""
    import orbax.checkpoint as ocp  # heavy: loaded by the loops that checkpoint only

    if not checkpoints:
        raise ValueError("average_checkpoints: no checkpoint given")
    total, dtypes, structure = None, None, None
    with ocp.StandardCheckpointer() as ckptr:
        for c in checkpoints:
            path = Path(c).absolute() / "default"
            if not path.is_dir():
                raise FileNotFoundError(f"{Path(c)} is not a training checkpoint (no default/)")
            params = ckptr.restore(path)["params"]
            leaves, treedef = jax.tree.flatten(params)
            if structure is None:
                structure, dtypes = treedef, [np.asarray(x).dtype for x in leaves]
                total = [np.asarray(x, np.float64) for x in leaves]
            elif treedef != structure:
                raise ValueError(f"{Path(c)} holds another parameter tree than {checkpoints[0]}")
            else:
                total = [t + np.asarray(x, np.float64) for t, x in zip(total, leaves)]
    n = len(checkpoints)
    return jax.tree.unflatten(structure, [(t / n).astype(d) for t, d in zip(total, dtypes)])


# --------------------------------------------------------------------------- runs
class Run(NamedTuple):
    """A finished run, as :func:`load_run` reads it (unpacks as a 5-tuple)."""

    config: ConformerConfig
    spec: CompressionSpec
    tokenizer: Tokenizer
    params: Any
    meta: dict


def read_config(run_dir: str | os.PathLike) -> tuple[ConformerConfig, TrainConfig, dict]:
    """``(model config, training config, config.json)`` of a run directory."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} is not a run directory (no config.json); pass "
            "the --out directory of `usmlite-edu train`"
        )
    meta = json.loads(path.read_text())
    try:
        cfg = config_from_dict(ConformerConfig, meta["model_config"])
        tcfg = config_from_dict(TrainConfig, meta["train_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path} does not describe a model this version can build ({e}); "
            "it may come from another version of usmlite_edu"
        ) from None
    return cfg, tcfg, meta


def load_run(run_dir: str | os.PathLike) -> Run:
    """The model config, spec, tokenizer, final parameters and ``config.json`` of a run.

    Parameters saved by the Flax Linen model of earlier versions (``results/cpu/b0``) are
    converted to the NNX layout on the way in (:func:`usmlite_edu.speech.linen_migration.params_from_linen`).
    """
    run_dir = Path(run_dir)
    cfg, _, meta = read_config(run_dir)
    tok = Tokenizer.load(run_dir / "tokenizer")
    params = linen_migration.params_from_checkpoint(load_params(run_dir / "params"), cfg)
    return Run(cfg, as_spec(meta["spec"]), tok, params, meta)


def load_masks(
    run_dir: str | os.PathLike, run: Run, spec: Spec | str | None = None, **model_options
) -> Any | None:
    """The N:M masks to evaluate ``run`` under ``spec`` (default: the run's own spec).

    ``None`` for a dense spec; the masks the run trained with when ``spec`` is its own and
    it saved them; otherwise one-shot masks, Eq. (3) on the run's weights (post-training
    pruning).
    """
    spec = as_spec(spec, run.spec)
    if not spec.sparse:
        return None
    mask_dir = Path(run_dir) / "masks"
    if spec == run.spec and mask_dir.exists():
        return linen_migration.params_from_checkpoint(
            load_params(mask_dir)
        )  # scalars on dense leaves
    return model.one_shot_masks(run.params, spec, run.config, **model_options)


def read_metrics(
    run_dir: str | os.PathLike, *, repair: bool = False
) -> tuple[list[dict], dict | None]:
    """``(logged steps, final result)`` of ``RUN/metrics.jsonl``.

    Each logged step is ``{"step", "loss", "steps_per_sec", "elapsed_s", ...}`` (every
    ``train.log_every`` steps, in order; a resumed run appends, so a step may repeat);
    the final result is the last ``{"final": ...}`` record, or ``None`` before the run ends.

    A last line that is not JSON (torn: the writer was killed while appending it) is
    dropped with a warning naming the file; with ``repair=True`` it is also cut from the
    file, so that the next record starts on a line of its own (what a resuming ``train``
    does). A line that is not JSON before the last one is damage, not a torn write:
    ``ValueError`` naming the file and the line.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a run directory?")
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as e:
            if any(rest.strip() for rest in lines[i + 1 :]):
                raise ValueError(
                    f"{path}: line {i + 1} is not JSON ({e}); the file is damaged: "
                    "fix or delete that line"
                ) from None
            _LOG.warning(
                "%s: its last line is torn (%d bytes, not JSON: the writer was stopped "
                "while appending it); dropped",
                path,
                len(line.encode()),
            )
            if repair:
                keep = "".join(f"{x}\n" for x in lines[:i])
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text(keep, encoding="utf-8")
                os.replace(tmp, path)
            break
    final = next((r["final"] for r in reversed(records) if "final" in r), None)
    return [r for r in records if "step" in r], final


# --------------------------------------------------------------------------- provenance
def _cpu_model() -> tuple[str, list[str]]:
    """CPU model name and the matmul-relevant ISA flags (AMX, AVX-512), from /proc/cpuinfo.

    Recorded because XLA's CPU code generation depends on them: the same seed gives
    bit-identical runs on one kind of processor, but a host with other matmul kernels
    sums in another order (and then may decode one word differently)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = sorted(
        f
        for f in fields.get("flags", "").split()
        if f.startswith(("amx", "avx512f", "avx512_bf16", "avx512_vnni"))
    )
    ids = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)
    return fields.get("model name", platform.machine()) + (f" ({ids})" if ids else ""), flags


def machine_info() -> dict:
    """Where a result was measured: platform, CPU model and flags, JAX backend and devices."""
    model_name, flags = _cpu_model()
    return {
        "platform": platform.platform(),
        "processor": model_name,
        "cpu_flags": flags,
        "cpus": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
    }


def git_commit(where: str | os.PathLike | None = None) -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes to tracked files), or
    ``"unknown"`` outside a git checkout (an installed wheel)."""
    repo = Path(where) if where else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "") if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
