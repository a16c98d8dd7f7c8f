"""Training and evaluation: USM-Lite Algorithm 1 with the recipe of section 4.2.

The loop around :class:`~usmlite_edu.training.step.TrainStep`, which holds one step of
Algorithm 1 (its loss, optimizer and jitted update; ``Trainer`` here is that class under
the name the notebooks use): data, checkpoints, resumption, logging and evaluation.

The model is a Flax NNX module, used functionally: ``nnx.split`` once gives its graph and a
plain pytree of parameters; the jitted step takes the parameters, merges them into the
graph, runs the forward pass and returns new parameters (:mod:`usmlite_edu.speech.model`).

A non-finite loss or gradient (which the data filters should make impossible) skips the
update (``optax.apply_if_finite``, whose counters live in the optimizer state and so in
the checkpoint); ``max_nonfinite`` skips in a row stop the run with an error.

A run killed at any moment resumes from its last checkpoint and ends with exactly the
parameters of an uninterrupted run (the data order, the dropout keys and XLA's CPU
arithmetic are all deterministic). Started again after it finished, a run trains and
evaluates nothing and returns its final record as it was. The run directory is described
in :mod:`usmlite_edu.speech.runs`.

Utterances that cannot train or be scored are skipped and reported (:mod:`usmlite_edu.
batching`); the final record counts them per split (``"train"``, ``"dev"``, ``"test"``:
``utterances`` kept, ``skipped``), and :func:`too_many_skipped` names every split that lost
more than :data:`MAX_SKIP_SHARE` of its utterances (the CLI then exits with a non-zero code).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from usmlite_edu.core import sparsity
from usmlite_edu.core.specs import CompressionSpec, Spec, SpecMap, as_spec
from usmlite_edu.deploy import export, infer
from usmlite_edu.deploy import forward as forwardlib
from usmlite_edu.deploy.recognizer import Recognizer
from usmlite_edu.scale import distributed
from usmlite_edu.scale import mesh as meshlib
from usmlite_edu.speech import batching, model, runs
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig
from usmlite_edu.speech.corpora import load_corpus
from usmlite_edu.speech.presets import Preset, get_preset
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training.step import TrainStep, ctc_per_token, make_optimizer, transformer_schedule

log = logging.getLogger(__name__)

__all__ = [
    "transformer_schedule",
    "make_optimizer",
    "ctc_per_token",
    "Trainer",
    "TrainStep",
    "get_trainer",
    "release_compiled",
    "train",
    "evaluate_run",
    "MAX_SKIP_SHARE",
    "too_many_skipped",
    "skip_counts",
]

#: The largest share of a split's utterances that may be skipped (unreadable, truncated,
#: too short or too long, ...) before ``usmlite-edu train`` and ``reproduce`` exit with an
#: error code (:data:`usmlite_edu.cli.EXIT_TOO_MANY_SKIPPED`) instead of 0: more than 5%
#: lost means the data on disk is not the corpus the numbers claim to be about.
MAX_SKIP_SHARE = 0.05


def too_many_skipped(
    counts: Mapping[str, tuple[int, int]], max_share: float = MAX_SKIP_SHARE
) -> list[str]:
    """One line per split that skipped more than ``max_share`` of its utterances.

    ``counts`` maps a split's name to ``(utterances kept, utterances skipped)``; the
    share is ``skipped / (kept + skipped)``. An empty list means every split is fine.
    """
    lines = []
    for name, (kept, skipped) in counts.items():
        total = int(kept) + int(skipped)
        if total and skipped / total > max_share:
            lines.append(
                f"{name}: skipped {skipped} of {total} utterances "
                f"({100 * skipped / total:.1f}% > {100 * max_share:g}%); the warnings "
                "above name each one and why"
            )
    return lines


def skip_counts(result: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``{split: (kept, skipped)}`` from :func:`train`'s or :func:`evaluate_run`'s result."""
    return {
        k: (int(v["utterances"]), int(v["skipped"]))
        for k, v in result.items()
        if isinstance(v, Mapping) and "utterances" in v and "skipped" in v
    }


#: The training step under the name the notebooks and earlier versions use.
Trainer = TrainStep


# Keep only a few trainers: every compiled XLA:CPU executable holds its own memory
# mappings, and a sweep over all of Tables 1-3 that kept every spec's train and eval
# steps alive hit the kernel's limit (vm.max_map_count, 65530) and died mid-compilation
# with "LLVM ERROR: Unable to allocate section memory". A trainer dropped from the cache
# frees its executables once it is garbage-collected.
@functools.lru_cache(maxsize=4)
def _cached_trainer(cfg: ConformerConfig, spec: CompressionSpec, tcfg: TrainConfig) -> Trainer:
    gc.collect()  # collect the trainer the cache just evicted, if any
    return Trainer(cfg, spec, tcfg)


def get_trainer(cfg: ConformerConfig, spec: Spec | str, tcfg: TrainConfig) -> Trainer:
    """A cached :class:`Trainer`: runs that share the model, spec and optimizer settings
    (seeds, step counts, resumed runs) reuse its compiled step instead of recompiling.
    At most four are kept (least recently used dropped; see the comment on memory maps)."""
    key = tcfg.replace(steps=1, checkpoint_every=0, log_every=0, eval_every=0)
    return _cached_trainer(cfg, as_spec(spec), key)


def trainer_cache_info():
    """Hits, misses and size of the trainer cache (``functools.lru_cache`` statistics)."""
    return _cached_trainer.cache_info()


def release_compiled() -> None:
    """Drop every cached :class:`Trainer` and forward pass (float, packed, integer) and
    JAX's compilation caches (frees their memory and memory mappings; the next use of a
    spec compiles it again)."""
    _cached_trainer.cache_clear()
    forwardlib.clear_forward_cache()
    export.packed_forward.cache_clear()
    infer.int_forward.cache_clear()
    jax.clear_caches()
    gc.collect()


def _progress(total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        disable=os.environ.get("USMLITE_NO_PROGRESS") == "1",
    )


# --------------------------------------------------------------------------- the loop
_RESUME_FREE = ("steps", "checkpoint_every", "log_every", "eval_every")


def _same_data_dir(old: Any, new: Any) -> bool:
    """Whether two recorded ``data_dir`` values name the same corpus folder: equal as
    written, or both paths that resolve to the same folder (``None``, the corpus's
    default, equals only ``None``)."""
    old, new = str(old), str(new)
    if old == new:
        return True
    if "None" in (old, new):
        return False
    return Path(old).resolve() == Path(new).resolve()


def _check_same_run(path: Path, meta: dict) -> None:
    """Refuse to resume a run directory that holds a different run."""
    old = json.loads(path.read_text())
    for k in ("preset", "spec", "corpus", "seed", "heldout_speaker", "init"):
        if str(old.get(k)) != str(meta[k]):
            raise ValueError(
                f"{path.parent} holds a run with {k}={old.get(k)!r}, not "
                f"{meta[k]!r}; use a new --out directory or delete the old one"
            )
    if "data_dir" in old and not _same_data_dir(old["data_dir"], meta["data_dir"]):
        was, now = (
            "the corpus's default folder" if str(d) == "None" else f"--data {d}"
            for d in (old["data_dir"], meta["data_dir"])
        )
        raise ValueError(
            f"{path.parent} holds a run trained on {was}, not {now}; resume it with the "
            "same --data, or use a new --out directory"
        )
    new = json.loads(json.dumps(meta, default=runs.json_default))
    # A field added after the old run was written (e.g. train.specaug_*) ran with its
    # default then: compare a field the old file lacks as that default.
    defaults = json.loads(
        json.dumps(
            {"model_config": ConformerConfig(), "train_config": TrainConfig()},
            default=runs.json_default,
        )
    )
    for section in ("model_config", "train_config"):
        a, b = {**defaults[section], **old.get(section, {})}, new[section]
        diff = sorted(k for k in set(a) | set(b) if k not in _RESUME_FREE and a.get(k) != b.get(k))
        if diff:
            raise ValueError(
                f"{path.parent} holds a run with other settings "
                f"({section}: {', '.join(f'{k} {a.get(k)!r} -> {b.get(k)!r}' for k in diff)}); "
                "use a new --out directory or the same --set options"
            )


def train(
    preset: str | Preset,
    corpus: str,
    data_dir: str | None,
    out_dir: str | os.PathLike,
    *,
    spec: Spec | str = "float",
    init: str | os.PathLike | None = None,
    steps: int | None = None,
    seed: int = 0,
    heldout_speaker: str | None = None,
    overrides: Iterable[str] | Mapping[str, object] = (),
    eval_splits: Sequence[str] = ("dev", "test"),
    stop_after: int | None = None,
    mesh_spec: str | None = None,
) -> dict:
    """Train (or fine-tune from ``init``) one model; resumes if ``out_dir`` has a checkpoint.

    Args:
      preset: a preset name or :class:`~usmlite_edu.speech.presets.Preset` (model + training).
      corpus, data_dir: where the speech is (see :func:`usmlite_edu.speech.corpora.load_corpus`).
      out_dir: run directory (see :mod:`usmlite_edu.speech.runs`).
      spec: compression applied during training (Algorithm 1).
      init: run directory of a dense model to fine-tune from (its model config and
        tokenizer are reused). The learning-rate schedule then continues from the init
        run's last step, ramping up over the first 10% of steps (override with
        ``train.schedule_offset`` / ``train.rewarm_steps``).
      steps: shorthand for ``train.steps``.
      overrides: ``section.field=value`` settings (:func:`usmlite_edu.speech.presets.apply_overrides`).
      stop_after: stop (as if killed) after this many steps of *this* call; for tests.
      mesh_spec: train on a device mesh (:func:`usmlite_edu.scale.mesh.make_mesh`), e.g.
        ``"data=2,fsdp=4"``: parameters, Adam moments and N:M masks are sharded by the
        logical-axis rules of :mod:`usmlite_edu.scale.mesh`, each batch along ``(data, fsdp)``,
        and the step runs under :func:`usmlite_edu.scale.mesh.use_mesh`. ``None`` (default):
        one device, no mesh, the computation of earlier versions. A checkpoint restores
        onto whatever mesh (or single device) the resuming call uses.

    Several processes (after :func:`usmlite_edu.scale.distributed.initialize`): every process
    calls this with the same arguments; the mesh spans every process's devices (no
    ``mesh_spec``: all of them on ``fsdp``); each process builds only its rows of each
    batch (:func:`usmlite_edu.scale.mesh.process_rows`) and the global batch is assembled
    with :func:`usmlite_edu.scale.mesh.global_batch`; checkpoints, parameters and masks are
    written by all processes together (Orbax), the tokenizer, ``config.json`` and
    ``metrics.jsonl`` by process 0. Every process still loads and prepares the whole
    corpus index (bucketing needs every utterance's length).

    Returns the final metrics dict (also in ``metrics.jsonl``).
    """
    spec = as_spec(spec)
    p, cfg, tcfg, init_run, overrides = _settings(preset, overrides, steps, init)
    # Refuse an impossible spec or mesh before loading any data.
    model.check_spec(cfg, model.ModelOptions(spec=spec))
    if mesh_spec is None and jax.process_count() > 1:
        mesh_spec = ""  # several processes: one mesh over all their devices, all on fsdp
    dmesh = meshlib.make_mesh(mesh_spec) if mesh_spec is not None else None
    out = Path(out_dir)

    splits = {
        s: load_corpus(
            corpus,
            data_dir,
            s,
            seed=seed,
            sample_rate=cfg.sample_rate,
            heldout_speaker=heldout_speaker,
        )
        for s in ("train", *eval_splits)
    }
    # One writer per run directory (refused naming the holder's PID); the kernel drops
    # the lock of a killed writer, so a run killed with -9 still resumes.
    out.mkdir(parents=True, exist_ok=True)
    lock = runs.writer_lock(out) if distributed.is_primary() else contextlib.nullcontext()
    with lock:
        tok = _run_tokenizer(out, splits["train"], tcfg, seed, init_run)
        cfg = cfg.replace(vocab_size=tok.vocab_size)
        meta = _run_meta(
            p, cfg, spec, tcfg, overrides, corpus, data_dir, seed, heldout_speaker, init, mesh_spec
        )
        _write_run_config(out, meta, spec)

        datasets = _prepare_datasets(splits, tok, cfg, tcfg)
        train_data = {
            "utterances": len(datasets["train"].examples),
            "skipped": len(datasets["train"].skipped),
        }

        trainer = get_trainer(cfg, spec, tcfg)
        params, opt_state = _initial_state(trainer, seed, init_run)
        key = jax.random.key(seed)  # concrete: made before any mesh context
        if dmesh is not None:
            params, opt_state = meshlib.shard_train_state(
                params, opt_state, dmesh, trainer.param_table
            )
            print(f"mesh {dict(dmesh.shape)} over {dmesh.devices.size} devices", flush=True)

        mngr = runs.checkpoint_manager(out)
        params, opt_state, step, position = _resume(mngr, params, opt_state, out)

        metrics_path = out / "metrics.jsonl"
        logged, previous = (
            runs.read_metrics(out, repair=distributed.is_primary())
            if metrics_path.exists()
            else ([], None)
        )
        if (
            step >= tcfg.steps
            and previous is not None
            and previous.get("step") == step
            and all(s in previous for s in eval_splits)
            and (out / "params").exists()
        ):
            # Started again after it finished: nothing to train or evaluate. Its final record
            # is the answer, as it was (not a new one with no losses and no time).
            print(
                f"{out} finished at step {step} already: nothing to train or evaluate", flush=True
            )
            result = {"train": train_data, **previous}
            _warn_skipped(result)
            return result

        # This process's rows of every batch: all of them with one process.
        rows = meshlib.process_rows(dmesh, tcfg.batch_size) if dmesh is not None else None
        if jax.process_count() > 1:
            print(f"{distributed.describe()}; batch rows {rows[0]}:{rows[1]}", flush=True)
        stream = batching.BatchStream(datasets["train"], tcfg.batch_size, seed, position, rows)
        loop = _Loop(trainer, tcfg, out, mngr, stream, dmesh, key)
        t0 = time.time()
        done = loop.run(params, opt_state, step, stop_after)
        if done is None:
            return {"stopped_at": loop.step}
        params, opt_state, step, losses = done
        _save_tree(out / "params", params)
        masks = sparsity.masks_from_state(opt_state)
        if losses:
            final_loss = float(np.nanmean(losses[-tcfg.log_every :]))
        else:  # no step ran in this call: the loss logged at this step is the same number
            final_loss = next((r["loss"] for r in reversed(logged) if r.get("step") == step), None)
        result = {
            "step": step,
            "train_time_s": time.time() - t0,
            "nonfinite_skipped": int(opt_state.total_notfinite),
            "final_loss": final_loss,
            "train": train_data,
        }
        # evaluation: the forward-only model of the final parameters
        evaluations = _evaluate(trainer.recognizer(params, masks, tok), datasets, eval_splits)
        result.update(evaluations)
        loop.log({"final": result})
        if masks is not None:
            _save_tree(out / "masks", masks)
        _warn_skipped(result)
        return result


def _resume(mngr: Any, params: Any, opt_state: Any, out: Path) -> tuple[Any, Any, int, tuple]:
    """``(params, opt_state, step, data position)``: the latest checkpoint's, restored onto
    this call's placement (the mesh's shardings, or one device, whatever mesh wrote it), or
    the given state at step 0."""
    like = {
        "params": params,
        "opt_state": opt_state,
        "position": np.zeros(2, np.int64),
        "step": np.zeros((), np.int64),
    }
    resumed = runs.restore_latest(mngr, like)
    if resumed is None:
        return params, opt_state, 0, (0, 0)
    _, restored = resumed
    step = int(restored["step"])
    print(f"resumed from {out / 'checkpoints'} at step {step}", flush=True)
    position = tuple(int(v) for v in restored["position"])
    return restored["params"], restored["opt_state"], step, position


def _evaluate(
    rec: Recognizer, datasets: Mapping[str, batching.Dataset], splits: Sequence[str]
) -> dict[str, dict]:
    """``{split: {wer, cer, utterances, skipped}}`` of the final model, one line printed each."""
    out = {}
    for s in splits:
        r = rec.evaluate(datasets[s])
        out[s] = {k: r[k] for k in ("wer", "cer", "utterances", "skipped")}
        print(
            f"{s}: WER {r['wer']:.2f}%  CER {r['cer']:.2f}%  ({r['utterances']} utterances)",
            flush=True,
        )
    return out


def _settings(
    preset: str | Preset,
    overrides: Iterable[str] | Mapping[str, object],
    steps: int | None,
    init: str | os.PathLike | None,
) -> tuple[Preset, ConformerConfig, TrainConfig, runs.Run | None, Any]:
    """``(preset, model config, training config, init run, overrides)`` of a call of
    :func:`train`: the preset with the overrides; fine-tuning (``init``) keeps the init
    run's model (only ``model.dropout`` may change) and continues its schedule."""
    overrides = dict(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
    given = (
        set(overrides)
        if isinstance(overrides, dict)
        else {o.split("=", 1)[0].strip() for o in overrides}
    )
    p = get_preset(preset).override(overrides)
    if steps is not None:
        p = p.override({"train.steps": int(steps)})
    cfg, tcfg = p.model, p.train
    if not init:
        return p, cfg, tcfg, None, overrides
    init_dir = Path(init)
    init_run = runs.load_run(init_dir)
    # The model is the init run's: only settings that do not reshape it may change.
    reshaping = sorted(k for k in given if k.startswith("model.") and k != "model.dropout")
    if reshaping:
        raise ValueError(
            f"--init {init_dir} fixes the model; {', '.join(reshaping)} "
            "cannot change when fine-tuning (only model.dropout can)"
        )
    cfg = init_run.config.replace(
        **{f: getattr(p.model, f) for f in ("dropout",) if f"model.{f}" in given}
    )
    itc = init_run.meta.get("train_config", {})
    if "train.schedule_offset" not in given:
        tcfg = tcfg.replace(
            schedule_offset=int(itc.get("schedule_offset", 0)) + int(itc.get("steps", 0))
        )
    if "train.rewarm_steps" not in given:
        tcfg = tcfg.replace(rewarm_steps=max(tcfg.steps // 10, 1))
    return p, cfg, tcfg, init_run, overrides


def _run_meta(
    p: Preset,
    cfg: ConformerConfig,
    spec: Spec,
    tcfg: TrainConfig,
    overrides: Any,
    corpus: str,
    data_dir: str | None,
    seed: int,
    heldout_speaker: str | None,
    init: str | os.PathLike | None,
    mesh_spec: str | None,
) -> dict:
    """The run's ``config.json``: what it is (compared when it resumes) and where it ran."""
    init_dir = Path(init) if init else None
    return {
        "preset": p.name,
        "model_config": cfg,
        "spec": str(spec),
        "train_config": tcfg,
        "overrides": sorted(f"{k}={v}" for k, v in overrides.items())
        if isinstance(overrides, dict)
        else list(overrides),
        "corpus": corpus,
        "data_dir": str(data_dir),
        "seed": seed,
        "heldout_speaker": heldout_speaker,
        "init": str(init_dir) if init_dir else None,
        "machine": runs.machine_info(),
        "git_commit": runs.git_commit(),
        # the last call's mesh and processes (a run may resume on others; not compared)
        "mesh": mesh_spec,
        "processes": jax.process_count(),
    }


def _run_tokenizer(
    out: Path, train_split: Any, tcfg: TrainConfig, seed: int, init_run: runs.Run | None
) -> Tokenizer:
    """The run's tokenizer, saved in ``out/tokenizer``: the init run's when fine-tuning,
    else the one already there (a resumed run), else one trained on the train split by
    process 0 and read by every process."""
    primary = distributed.is_primary()
    if init_run is not None:
        if primary:
            init_run.tokenizer.save(out / "tokenizer")
        return init_run.tokenizer
    if primary and not (out / "tokenizer" / "tokenizer.model").exists():
        tok = Tokenizer.train([u.text for u in train_split], tcfg.vocab_size, None, seed=seed)
        tok.save(out / "tokenizer")
    distributed.barrier("tokenizer")  # the others read what process 0 wrote
    return Tokenizer.load(out / "tokenizer")


def _write_run_config(out: Path, meta: dict, spec: Spec) -> None:
    """``config.json`` (and ``spec_map.json`` of a per-layer spec), after checking that a
    ``config.json`` already there describes the same run (a resumed one)."""
    cfg_path = out / "config.json"
    if cfg_path.exists():
        _check_same_run(cfg_path, meta)
    distributed.barrier("config-checked")  # every process read the old one
    if distributed.is_primary():
        runs.write_json(cfg_path, meta)
        if isinstance(spec, SpecMap):  # the per-layer specs, readable beside config.json
            spec.save(out / "spec_map.json")


def _prepare_datasets(
    splits: Mapping[str, Any], tok: Tokenizer, cfg: ConformerConfig, tcfg: TrainConfig
) -> dict[str, batching.Dataset]:
    """Every split bucketed and tokenised (:func:`usmlite_edu.speech.batching.prepare`): the
    train split with its speed perturbation and without over-long utterances, the
    evaluation splits whole."""
    datasets = {
        s: batching.prepare(
            sp,
            tok,
            cfg,
            tcfg.bucket_seconds,
            keep_long=s != "train",
            speed_factors=tcfg.speed_perturb if s == "train" else (),
        )
        for s, sp in splits.items()
    }
    for d in datasets.values():
        print(d.summary(), flush=True)
    return datasets


def _initial_state(trainer: Trainer, seed: int, init_run: runs.Run | None) -> tuple[Any, Any]:
    """``(params, optimizer state)`` at step 0: fresh parameters for ``seed``, or the init
    run's; an /lsq spec gets step sizes from the init run's (pruned) weights, Eq. 2's scale,
    another spec none (an LSQ run fine-tuned under min/max scales)."""
    if init_run is None:
        params = trainer.init_params(seed)
    else:
        spec, cfg = trainer.spec, trainer.cfg
        first_masks = model.one_shot_masks(init_run.params, spec, cfg) if spec.lsq else None
        params = model.conform_lsq(
            init_run.params, cfg, spec, first_masks, compress_softmax=trainer.opts.compress_softmax
        )
    return params, trainer.setup_optimizer(params)


class _Loop:
    """The training loop of one :func:`train` call: steps, logs to ``metrics.jsonl`` (process
    0), checkpoints, a progress bar, and the stop on ``max_nonfinite`` skips in a row."""

    def __init__(
        self,
        trainer: Trainer,
        tcfg: TrainConfig,
        out: Path,
        mngr: Any,
        stream: batching.BatchStream,
        dmesh: Any,
        key: jax.Array,
    ):
        self.trainer, self.tcfg, self.out, self.mngr = trainer, tcfg, out, mngr
        self.stream, self.dmesh, self.key = stream, dmesh, key
        self.step = 0

    def log(self, obj: dict) -> None:
        """Append one record to ``metrics.jsonl`` (process 0 only)."""
        if distributed.is_primary():
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(obj, default=runs.json_default) + "\n")

    def _save(self, params: Any, opt_state: Any) -> None:
        state = {
            "params": params,
            "opt_state": opt_state,
            "position": np.asarray(self.stream.position, np.int64),
            "step": np.asarray(self.step, np.int64),
        }
        runs.save_checkpoint(self.mngr, self.step, state)

    def _one_step(self, params: Any, opt_state: Any) -> tuple[Any, Any, float]:
        batch = next(self.stream)
        if self.dmesh is not None:
            batch = meshlib.global_batch(batch, self.dmesh, self.tcfg.batch_size)
        on_mesh = meshlib.use_mesh(self.dmesh) if self.dmesh is not None else None
        with on_mesh or contextlib.nullcontext():
            params, opt_state, loss, applied = self.trainer.step(
                params, opt_state, batch, self.key, self.step
            )
        self.step += 1
        if not bool(applied):
            log.warning("step %d: non-finite loss/gradient/update, update skipped", self.step)
            if int(opt_state.notfinite_count) >= self.tcfg.max_nonfinite:
                raise RuntimeError(
                    f"{self.tcfg.max_nonfinite} updates in a row had a non-finite loss or "
                    f"gradient (step {self.step}); lower train.peak_lr or check the data. The "
                    f"last good state is in {self.out / 'checkpoints'}"
                )
        return params, opt_state, float(loss)

    def run(
        self, params: Any, opt_state: Any, step: int, stop_after: int | None
    ) -> tuple[Any, Any, int, list[float]] | None:
        """Train from ``step`` to ``tcfg.steps``; ``(params, opt_state, step, losses of
        this call)``, checkpointed at the end; ``None`` when ``stop_after`` steps of this
        call stopped it first (as if killed)."""
        tcfg = self.tcfg
        self.step = step
        bar = _progress(tcfg.steps, step)
        t0, t_last, s_last = time.time(), time.time(), step
        losses: list[float] = []
        ran = 0
        try:
            while self.step < tcfg.steps:
                params, opt_state, loss = self._one_step(params, opt_state)
                ran += 1
                losses.append(loss)
                bar.update(1)
                if self.step % tcfg.log_every == 0 or self.step == tcfg.steps:
                    now = time.time()
                    sps = (self.step - s_last) / max(now - t_last, 1e-9)
                    t_last, s_last = now, self.step
                    rec = {
                        "step": self.step,
                        "loss": float(np.nanmean(losses[-tcfg.log_every :])),
                        "steps_per_sec": sps,
                        "elapsed_s": now - t0,
                        "nonfinite_skipped": int(opt_state.total_notfinite),
                        "epoch": self.stream.position[0],
                    }
                    self.log(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", sps=f"{sps:.2f}")
                if tcfg.checkpoint_every and self.step % tcfg.checkpoint_every == 0:
                    self._save(params, opt_state)
                if stop_after is not None and ran >= stop_after:
                    return None
        finally:
            bar.close()
        if self.mngr.latest_step() != self.step:
            self._save(params, opt_state)
        return params, opt_state, self.step, losses


def _save_tree(path: Path, tree: Any) -> None:
    """:func:`usmlite_edu.speech.runs.save_params` of ``tree``'s global values as host arrays,
    from one process or several (process 0 removes an old copy first). Host arrays,
    not the sharded ones: Orbax records a sharded array's devices and will not restore
    it without a target where those devices do not exist (``eval`` on one device of a
    run trained on 8); the checkpoints keep the sharded state."""
    tree = meshlib.to_host(tree)
    if jax.process_count() > 1:
        if distributed.is_primary() and path.exists():
            import shutil

            shutil.rmtree(path)
        distributed.barrier(f"save {path.name}")
    runs.save_params(path, tree)


def _warn_skipped(result: Mapping[str, Any]) -> None:
    for line in too_many_skipped(skip_counts(result)):
        log.warning("too many utterances skipped: %s", line)


def evaluate_run(
    run_dir: str | os.PathLike | None,
    corpus: str,
    data_dir: str | None,
    split: str,
    *,
    spec: Spec | str | None = None,
    seed: int = 0,
    heldout_speaker: str | None = None,
    overrides: Iterable[str] | Mapping[str, object] = (),
    model: str | os.PathLike | None = None,
    arith: str | None = None,
) -> dict:
    """WER/CER of a finished run on ``split``.

    ``spec`` (default: the run's own) evaluates the run's weights through another
    compression: post-training quantization (PTQ) of a dense checkpoint, or one-shot N:M
    masks computed from its weights. ``overrides`` may change ``train.*`` evaluation
    settings (``train.eval_batch_size``, ``train.bucket_seconds``); the model is the run's.
    ``model`` (instead of ``run_dir``) evaluates a packed file of ``usmlite-edu export``
    (:mod:`usmlite_edu.deploy.export`), which scores exactly as its run under its spec.
    ``arith`` is the dense layers' inference arithmetic (:mod:`usmlite_edu.deploy.infer`).
    """
    keys = (
        overrides.keys()
        if isinstance(overrides, Mapping)
        else [o.split("=", 1)[0].strip() for o in overrides]
    )
    if any(not k.startswith("train.") for k in keys):
        raise ValueError(
            "evaluation takes only train.* overrides (e.g. train.eval_batch_size=8); "
            "the model is fixed by the checkpoint"
        )
    rec = Recognizer.open(run_dir, model, spec, overrides, arith=arith)
    split_data = load_corpus(
        corpus,
        data_dir,
        split,
        seed=seed,
        sample_rate=rec.config.sample_rate,
        heldout_speaker=heldout_speaker,
    )
    ds = batching.prepare(
        split_data, rec.tokenizer, rec.config, rec.train_config.bucket_seconds, keep_long=True
    )
    r = rec.evaluate(ds)
    r["spec"] = str(rec.spec)
    r["arith"] = arith
    return r
