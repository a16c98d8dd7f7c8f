"""Training and evaluation: USM-Lite Algorithm 1 with the recipe of section 4.2.

One step (Algorithm 1, lines 4-10):

1. the N:M masks, which live in the optimizer state (:func:`usmlite_edu.sparsity.nm_masked`),
   were refreshed from the current weights while ``step < T_p``;
2. prune: ``W * M`` on every compressible kernel (Eq. 4);
3. quantize each pruned kernel and run the native int8 matmul (Eqs. 1-2, STE backward);
4. CTC loss (``optax.ctc_loss``) over the log-mel -> Conformer -> softmax output;
5. Adam with the transformer learning-rate schedule, two parameter groups (frontend +
   encoder: multiplier 0.5, long warm-up; softmax: multiplier 2.0, short warm-up), global
   gradient clipping, and the update masked so pruned weights never move.

A non-finite loss or gradient (which the data filters should make impossible) skips the
update and is counted, so one bad batch never turns the parameters into NaN.

Run directory::

    RUN/config.json        preset, model config, spec, training settings, corpus
    RUN/tokenizer/         the sentencepiece model (saved with the checkpoint)
    RUN/checkpoints/       Orbax: params, optimizer + mask state, data position, RNG
    RUN/params/            final parameters (what ``--init`` and ``eval`` read)
    RUN/metrics.jsonl      one JSON object per logged step and per evaluation

A run killed at any moment resumes from its last checkpoint and ends with exactly the
parameters of an uninterrupted run (the data order, the dropout keys and XLA's CPU
arithmetic are all deterministic).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from usmlite_edu import batching, frontend, sparsity
from usmlite_edu.compress import CompressionSpec
from usmlite_edu.configs import ConformerConfig, get_config
from usmlite_edu.corpora import load_corpus
from usmlite_edu.model import ModelOptions, apply_masks, build_model, compressible_mask_tree
from usmlite_edu.tokenizer import Tokenizer

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TRAIN_PRESETS", "transformer_schedule", "make_optimizer",
           "Trainer", "train", "evaluate_run", "greedy_decode", "load_run", "wer_cer"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (the paper's in comments; presets scale them down).

    Attributes:
      steps: total optimizer steps (paper: 200k).
      batch_size: utterances per step (paper: 2,048).
      peak_lr: learning rate at the end of warm-up, before the multipliers.
      encoder_lr_mult / softmax_lr_mult: 0.5 / 2.0 (paper).
      encoder_warmup / softmax_warmup: warm-up steps, 5,000 / 1,500 (paper).
      clip_norm: global gradient-norm clipping.
      bucket_seconds: padded lengths of the batches (one compile each).
      vocab_size: requested word-piece vocabulary (the tokenizer may give fewer).
      checkpoint_every / log_every / eval_every: in steps (0 = only at the end).
      compute_dtype: dense matmul dtype (None = float32, "bfloat16").
      schedule_offset: steps the learning-rate schedule has already run. Fine-tuning from a
        trained model sets it to the model's steps, so the schedule continues its decay
        instead of restarting the warm-up at the peak (which knocks a converged model off).
      rewarm_steps: with an offset, a short linear ramp to the continued rate, because the
        fresh Adam moments make the first updates full-size.
    """

    steps: int = 1000
    batch_size: int = 16
    peak_lr: float = 2e-3
    encoder_lr_mult: float = 0.5
    softmax_lr_mult: float = 2.0
    encoder_warmup: int = 100
    softmax_warmup: int = 30
    clip_norm: float = 5.0
    bucket_seconds: tuple[float, ...] = (2.0, 4.0, 8.0)
    vocab_size: int = 64
    checkpoint_every: int = 100
    log_every: int = 10
    eval_every: int = 0
    eval_batch_size: int = 32
    compute_dtype: str | None = None
    schedule_offset: int = 0
    rewarm_steps: int = 0

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **kw)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    "ci": TrainConfig(steps=500, batch_size=16, peak_lr=5e-3, encoder_warmup=60,
                      softmax_warmup=20, bucket_seconds=(3.0,), vocab_size=48,
                      checkpoint_every=100, log_every=10),
    "cpu": TrainConfig(steps=600, batch_size=32, peak_lr=2e-3, encoder_warmup=100,
                       softmax_warmup=30, bucket_seconds=(2.0, 3.5, 5.0, 7.0), vocab_size=32,
                       checkpoint_every=100, log_every=10),
    "small": TrainConfig(steps=50_000, batch_size=64, peak_lr=1e-3, encoder_warmup=5000,
                         softmax_warmup=1500, bucket_seconds=(5.0, 10.0, 17.5), vocab_size=256,
                         checkpoint_every=1000, log_every=50, compute_dtype="bfloat16"),
    "usm_2b": TrainConfig(steps=200_000, batch_size=2048, peak_lr=1e-3, encoder_warmup=5000,
                          softmax_warmup=1500, bucket_seconds=(5.0, 10.0, 20.0),
                          vocab_size=16384, checkpoint_every=1000, log_every=100,
                          compute_dtype="bfloat16"),
}


# --------------------------------------------------------------------------- optimizer
def transformer_schedule(peak: float, warmup: int, offset: int = 0,
                         rewarm: int = 0) -> Callable[[jax.Array], jax.Array]:
    """Vaswani et al.'s schedule, normalised to reach ``peak`` at ``warmup``:
    ``peak * min(t / warmup, sqrt(warmup / t))`` (linear rise, inverse-sqrt decay).

    ``offset`` shifts the step (``t = count + 1 + offset``): a fine-tuning run continues the
    schedule where its initial model stopped. ``rewarm`` then ramps linearly from 0 to that
    continued rate over its first ``rewarm`` steps.
    """
    warmup, offset, rewarm = max(int(warmup), 1), max(int(offset), 0), max(int(rewarm), 0)

    def schedule(count):
        c = count.astype(jnp.float32)
        t = jnp.maximum(c + 1.0 + offset, 1.0)
        lr = peak * jnp.minimum(t / warmup, jnp.sqrt(warmup / t))
        if rewarm:
            lr = lr * jnp.minimum((c + 1.0) / rewarm, 1.0)
        return lr

    return schedule


def _param_group(params: Any) -> Any:
    return {k: jax.tree.map(lambda _: "softmax" if k == "softmax" else "encoder", v)
            for k, v in params.items()}


def make_optimizer(tcfg: TrainConfig, spec: CompressionSpec, params: Any,
                   opts: ModelOptions) -> optax.GradientTransformation:
    """Adam with two transformer schedules, gradient clipping, and N:M masks if sparse."""
    groups = optax.multi_transform(
        {"encoder": optax.adam(transformer_schedule(
            tcfg.peak_lr * tcfg.encoder_lr_mult, tcfg.encoder_warmup,
            tcfg.schedule_offset, tcfg.rewarm_steps)),
         "softmax": optax.adam(transformer_schedule(
             tcfg.peak_lr * tcfg.softmax_lr_mult, tcfg.softmax_warmup,
             tcfg.schedule_offset, tcfg.rewarm_steps))},
        _param_group)
    tx = optax.chain(optax.clip_by_global_norm(tcfg.clip_norm), groups)
    if spec.sparse:
        tx = sparsity.nm_masked(tx, spec.n, spec.m, update_steps=spec.mask_update_steps,
                                where=compressible_mask_tree(params, opts),
                                sr_ste_decay=2e-4 if spec.sr_ste else None)
    return tx


def one_shot_masks(params: Any, spec: CompressionSpec, opts: ModelOptions) -> Any | None:
    """Masks from the given weights (Eq. 3) on every compressible kernel: PTQ of N:M."""
    if not spec.sparse:
        return None
    where = compressible_mask_tree(params, opts)
    return jax.tree.map(lambda w, p: sparsity.nm_mask(w, spec.n, spec.m) if p else jnp.ones((), bool),
                        params, where)


# --------------------------------------------------------------------------- run files
def _json_default(o):
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


def _cpu_model() -> tuple[str, list[str]]:
    """CPU model name and the matmul-relevant ISA flags (AMX, AVX-512), from /proc/cpuinfo.

    Recorded because XLA's CPU code generation depends on them: the same seed gives
    bit-identical runs on one machine, but a host with other matmul kernels can round
    differently (and then, say, decode one word differently)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = sorted(f for f in fields.get("flags", "").split()
                   if f.startswith(("amx", "avx512f", "avx512_bf16", "avx512_vnni")))
    ids = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)
    return fields.get("model name", platform.machine()) + (f" ({ids})" if ids else ""), flags


def machine_info() -> dict:
    model_name, flags = _cpu_model()
    return {"platform": platform.platform(), "processor": model_name, "cpu_flags": flags,
            "cpus": os.cpu_count(), "jax_backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()], "jax": jax.__version__}


def _checkpointer(run_dir: Path):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager((run_dir / "checkpoints").absolute(), options=options)


def save_params(path: Path, params: Any) -> None:
    import orbax.checkpoint as ocp

    path = path.absolute()
    if path.exists():
        import shutil
        shutil.rmtree(path)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, params)


def load_params(path: Path, target: Any | None = None) -> Any:
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"no parameters at {path}: train a model first "
                                "(usmlite-edu train ...) or point to its run directory")
    with ocp.StandardCheckpointer() as ckptr:
        if target is None:
            return ckptr.restore(path)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target)
        return ckptr.restore(path, abstract)


def load_run(run_dir: str | os.PathLike) -> tuple[ConformerConfig, CompressionSpec, Tokenizer, Any, dict]:
    """``(model config, spec, tokenizer, final params, config.json)`` of a finished run."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json); "
                                "pass the --out directory of `usmlite-edu train`")
    meta = json.loads(cfg_path.read_text())
    mc = dict(meta["model_config"])
    mc["subsample_channels"] = tuple(mc["subsample_channels"])
    cfg = ConformerConfig(**mc)
    spec = CompressionSpec.parse(meta["spec"])
    tok = Tokenizer.load(run_dir / "tokenizer")
    params = load_params(run_dir / "params")
    return cfg, spec, tok, params, meta


# --------------------------------------------------------------------------- decoding
def greedy_decode(logits: np.ndarray, mask: np.ndarray, blank: int = 0) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    best = np.asarray(logits).argmax(-1)
    out = []
    for row, m in zip(best, np.asarray(mask)):
        row = row[m.astype(bool)]
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append([int(t) for t in row[keep] if t != blank])
    return out


def wer_cer(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, float]:
    """Corpus WER and CER in percent (jiwer)."""
    import jiwer

    refs = [r if r.strip() else "<empty>" for r in refs]
    return 100.0 * jiwer.wer(list(refs), list(hyps)), 100.0 * jiwer.cer(list(refs), list(hyps))


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """Holds a model, its jitted step and eval functions, for one spec."""

    def __init__(self, cfg: ConformerConfig, spec: CompressionSpec, tcfg: TrainConfig,
                 **model_options):
        self.cfg, self.spec, self.tcfg = cfg, spec, tcfg
        self.model = build_model(cfg, spec, compute_dtype=tcfg.compute_dtype, **model_options)
        self.opts = self.model.opts
        self.mel = frontend.LogMelConfig.from_model(cfg)
        self.tx: optax.GradientTransformation | None = None
        self._step = None
        self._forward = jax.jit(self._forward_impl)
        self._init = jax.jit(self.model.init)

    # -- model pieces
    def features(self, waveforms, lengths):
        feats, mask = frontend.log_mel(waveforms, lengths, self.mel)
        return frontend.normalize(feats, mask), mask

    def init_params(self, seed: int) -> Any:
        n = self.tcfg.bucket_seconds[0] * self.cfg.sample_rate
        wav = jnp.zeros((1, int(n)), jnp.float32)
        feats, mask = self.features(wav, jnp.array([wav.shape[1]]))
        return self._init(jax.random.key(seed), feats, mask)["params"]

    def _forward_impl(self, params, masks, waveforms, lengths):
        feats, mask = self.features(waveforms, lengths)
        p = apply_masks(params, masks)
        return self.model.apply({"params": p}, feats, mask, deterministic=True)

    def loss(self, params, masks, batch, dropout_key, deterministic=False):
        feats, mask = self.features(batch.waveforms, batch.lengths)
        p = apply_masks(params, masks, straight_through=self.spec.sr_ste)
        logits, omask = self.model.apply({"params": p}, feats, mask,
                                         deterministic=deterministic,
                                         rngs={"dropout": dropout_key})
        label_pad = (jnp.arange(batch.labels.shape[1])[None, :]
                     >= batch.label_lengths[:, None]).astype(jnp.float32)
        per = optax.ctc_loss(logits.astype(jnp.float32), (~omask).astype(jnp.float32),
                             batch.labels, label_pad, blank_id=0)
        w = batch.weights
        return jnp.sum(per * w) / jnp.maximum(jnp.sum(batch.label_lengths * w), 1.0)

    # -- optimizer + step
    def setup_optimizer(self, params):
        """The optimizer state for ``params``; the optimizer and its compiled step are
        built once per trainer (the parameter tree's structure is fixed by the config)."""
        if self.tx is None:
            self.tx = make_optimizer(self.tcfg, self.spec, params, self.opts)
            self._step = jax.jit(self._step_impl, donate_argnums=(0, 1))
        return self.tx.init(params)

    def _step_impl(self, params, opt_state, batch, key, step):
        masks = sparsity.masks_from_state(opt_state)
        dkey = jax.random.fold_in(key, step)
        loss, grads = jax.value_and_grad(self.loss)(params, masks, batch, dkey)
        updates, new_state = self.tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & jnp.all(jnp.array(
            [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        return keep(new_params, params), keep(new_state, opt_state), loss, finite

    def step(self, params, opt_state, batch, key, step):
        b = batching.Batch(*(jnp.asarray(x) for x in batch))
        return self._step(params, opt_state, b, key, jnp.asarray(step, jnp.int32))

    # -- evaluation
    def logits(self, params, masks, waveforms, lengths) -> tuple[jax.Array, jax.Array]:
        """CTC logits ``(B, T', V)`` and output mask of a padded waveform batch (jitted);
        ``masks`` are the N:M masks (``None`` for dense)."""
        return self._forward(params, masks, jnp.asarray(waveforms), jnp.asarray(lengths))

    def transcribe_batch(self, params, masks, batch) -> list[list[int]]:
        logits, omask = self.logits(params, masks, batch.waveforms, batch.lengths)
        return greedy_decode(np.asarray(logits), np.asarray(omask))

    def evaluate(self, params, masks, ds: batching.Dataset, tok: Tokenizer) -> dict:
        refs, hyps, uids = [], [], []
        for batch, idx in batching.eval_batches(ds, self.tcfg.eval_batch_size):
            ids = self.transcribe_batch(params, masks, batch)
            for row, i in enumerate(idx):
                e = ds.examples[i]
                refs.append(tok.normalize(e.text))
                hyps.append(tok.decode(ids[row]))
                uids.append(e.uid)
        wer, cer = wer_cer(refs, hyps)
        return {"wer": wer, "cer": cer, "utterances": len(refs), "skipped": len(ds.skipped),
                "examples": [{"uid": u, "ref": r, "hyp": h}
                             for u, r, h in list(zip(uids, refs, hyps))[:20]]}


_TRAINERS: dict = {}


def get_trainer(cfg: ConformerConfig, spec: CompressionSpec, tcfg: TrainConfig) -> Trainer:
    """A cached :class:`Trainer`: runs that share the model, spec and optimizer settings
    (seeds, step counts, resumed runs) reuse its compiled step instead of recompiling."""
    key = (cfg, spec, tcfg.replace(steps=0, checkpoint_every=0, log_every=0, eval_every=0))
    if key in _TRAINERS:
        _TRAINERS[key] = _TRAINERS.pop(key)         # most recently used goes last
    else:
        # Keep only a few: every compiled XLA:CPU executable holds its own memory
        # mappings, and a sweep over all of Tables 1-3 that kept every spec's train and
        # eval steps alive hit the kernel's limit (vm.max_map_count, 65530) and died
        # mid-compilation with "LLVM ERROR: Unable to allocate section memory". Dropping
        # a trainer frees its executables once it is collected.
        while len(_TRAINERS) >= _MAX_TRAINERS:
            _TRAINERS.pop(next(iter(_TRAINERS)))    # least recently used
        gc.collect()
        _TRAINERS[key] = Trainer(cfg, spec, tcfg)
    return _TRAINERS[key]


_MAX_TRAINERS = 4


def release_compiled() -> None:
    """Drop every cached :class:`Trainer` and JAX's compilation caches (frees their memory
    and memory mappings; the next use of a spec compiles it again)."""
    _TRAINERS.clear()
    jax.clear_caches()
    gc.collect()


def _progress(total: int, initial: int):
    try:
        from tqdm.auto import tqdm
        return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                    mininterval=1.0, disable=os.environ.get("USMLITE_NO_PROGRESS") == "1")
    except ImportError:  # pragma: no cover
        return None


def train(preset: str, corpus: str, data_dir: str | None, out_dir: str | os.PathLike, *,
          spec: str | CompressionSpec = "float", init: str | os.PathLike | None = None,
          steps: int | None = None, seed: int = 0, heldout_speaker: str | None = None,
          train_overrides: dict | None = None, model_overrides: dict | None = None,
          eval_splits: Sequence[str] = ("dev", "test"), stop_after: int | None = None) -> dict:
    """Train (or fine-tune from ``init``) one model; resumes if ``out_dir`` has a checkpoint.

    Args:
      preset: model/training preset (``ci``, ``cpu``, ``small``, ``usm_2b``).
      corpus, data_dir: where the speech is (see :func:`usmlite_edu.corpora.load_corpus`).
      out_dir: run directory.
      spec: compression applied during training (Algorithm 1).
      init: run directory of a dense model to fine-tune from (its tokenizer is reused). The
        learning-rate schedule then continues from the init run's last step, ramping up over
        the first 10% of steps (override with ``schedule_offset`` / ``rewarm_steps`` in
        ``train_overrides``).
      steps: override the preset's number of steps.
      stop_after: stop (as if killed) after this many steps of *this* call; for tests.

    Returns the final metrics dict (also in ``metrics.jsonl``).
    """
    spec = spec if isinstance(spec, CompressionSpec) else CompressionSpec.parse(spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tcfg = TRAIN_PRESETS[preset] if preset in TRAIN_PRESETS else TrainConfig()
    tcfg = tcfg.replace(**(train_overrides or {}))
    if steps is not None:
        tcfg = tcfg.replace(steps=int(steps))
    if tcfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {tcfg.steps}")
    cfg = get_config(preset).replace(**(model_overrides or {}))
    # Refuse an impossible spec before loading any data.
    build_model(cfg, spec)

    # -- tokenizer: from the init run, a previous attempt of this run, or trained anew
    splits = {s: load_corpus(corpus, data_dir, s, seed=seed, sample_rate=cfg.sample_rate,
                             heldout_speaker=heldout_speaker) for s in ("train", *eval_splits)}
    init_dir = Path(init) if init else None
    if init_dir is not None:
        init_cfg, _, tok, init_params, init_meta = load_run(init_dir)
        cfg = init_cfg
        # Fine-tuning continues the initial model's learning-rate schedule (after a short
        # re-warm-up for the fresh Adam moments) unless the caller set its own.
        given = train_overrides or {}
        itc = init_meta.get("train_config", {})
        if "schedule_offset" not in given:
            tcfg = tcfg.replace(schedule_offset=int(itc.get("schedule_offset", 0))
                                + int(itc.get("steps", 0)))
        if "rewarm_steps" not in given:
            tcfg = tcfg.replace(rewarm_steps=max(tcfg.steps // 10, 1))
    elif (out / "tokenizer" / "tokenizer.model").exists():
        tok = Tokenizer.load(out / "tokenizer")
    else:
        tok = Tokenizer.train([u.text for u in splits["train"]], tcfg.vocab_size, None, seed=seed)
    tok.save(out / "tokenizer")
    cfg = cfg.replace(vocab_size=tok.vocab_size)

    meta = {"preset": preset, "model_config": cfg, "spec": str(spec), "train_config": tcfg,
            "corpus": corpus, "data_dir": str(data_dir), "seed": seed,
            "heldout_speaker": heldout_speaker, "init": str(init_dir) if init_dir else None}
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        for k in ("preset", "spec", "corpus", "seed"):
            if str(old.get(k)) != str(meta[k]):
                raise ValueError(f"{out} holds a run with {k}={old.get(k)!r}, not {meta[k]!r}; "
                                 "use a new --out directory or delete the old one")
    _write_json(cfg_path, meta)

    datasets = {s: batching.prepare(sp, tok, cfg, tcfg.bucket_seconds, keep_long=s != "train")
                for s, sp in splits.items()}
    for d in datasets.values():
        print(d.summary(), flush=True)

    trainer = get_trainer(cfg, spec, tcfg)
    params = init_params if init_dir is not None else trainer.init_params(seed)
    opt_state = trainer.setup_optimizer(params)
    key = jax.random.key(seed)
    step, position = 0, (0, 0)

    mngr = _checkpointer(out)
    import orbax.checkpoint as ocp
    if mngr.latest_step() is not None:
        target = {"params": params, "opt_state": opt_state,
                  "position": np.zeros(2, np.int64), "step": np.zeros((), np.int64)}
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
                                if not isinstance(x, jax.Array) else
                                jax.ShapeDtypeStruct(x.shape, x.dtype), target)
        restored = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore(abstract))
        params, opt_state = restored["params"], restored["opt_state"]
        position = tuple(int(v) for v in restored["position"])
        step = int(restored["step"])
        print(f"resumed from {out / 'checkpoints'} at step {step}", flush=True)

    stream = batching.BatchStream(datasets["train"], tcfg.batch_size, seed, position)
    metrics_path = out / "metrics.jsonl"

    def log_metrics(obj):
        with open(metrics_path, "a") as f:
            f.write(json.dumps(obj, default=_json_default) + "\n")

    def save(step_):
        state = {"params": params, "opt_state": opt_state,
                 "position": np.asarray(stream.position, np.int64),
                 "step": np.asarray(step_, np.int64)}
        mngr.save(step_, args=ocp.args.StandardSave(state), force=True)
        mngr.wait_until_finished()

    bar = _progress(tcfg.steps, step)
    t0, t_last, s_last, nonfinite = time.time(), time.time(), step, 0
    losses: list[float] = []
    ran = 0
    while step < tcfg.steps:
        batch = next(stream)
        params, opt_state, loss, finite = trainer.step(params, opt_state, batch, key, step)
        step += 1
        ran += 1
        if not bool(finite):
            nonfinite += 1
            log.warning("step %d: non-finite loss/gradient, update skipped", step)
        losses.append(float(loss))
        if bar is not None:
            bar.update(1)
        if step % tcfg.log_every == 0 or step == tcfg.steps:
            now = time.time()
            sps = (step - s_last) / max(now - t_last, 1e-9)
            t_last, s_last = now, step
            rec = {"step": step, "loss": float(np.mean(losses[-tcfg.log_every:])),
                   "steps_per_sec": sps, "elapsed_s": now - t0, "nonfinite_skipped": nonfinite,
                   "epoch": stream.position[0]}
            log_metrics(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.3f}", sps=f"{sps:.2f}")
        if tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0:
            save(step)
        if stop_after is not None and ran >= stop_after:
            if bar is not None:
                bar.close()
            return {"stopped_at": step}
    if bar is not None:
        bar.close()
    if mngr.latest_step() != step:
        save(step)
    save_params(out / "params", params)

    masks = sparsity.masks_from_state(opt_state)
    result = {"step": step, "train_time_s": time.time() - t0, "nonfinite_skipped": nonfinite,
              "final_loss": float(np.mean(losses[-tcfg.log_every:])) if losses else None}
    for s in eval_splits:
        r = trainer.evaluate(params, masks, datasets[s], tok)
        result[s] = {k: r[k] for k in ("wer", "cer", "utterances", "skipped")}
        print(f"{s}: WER {r['wer']:.2f}%  CER {r['cer']:.2f}%  ({r['utterances']} utterances)",
              flush=True)
    log_metrics({"final": result})
    if masks is not None:
        save_params(out / "masks", masks)
    return result


def evaluate_run(run_dir: str | os.PathLike, corpus: str, data_dir: str | None, split: str, *,
                 spec: str | CompressionSpec | None = None, seed: int = 0,
                 heldout_speaker: str | None = None, batch_size: int = 32) -> dict:
    """WER/CER of a finished run on ``split``.

    ``spec`` (default: the run's own) evaluates the run's weights through another
    compression: post-training quantization (PTQ) of a dense checkpoint, or one-shot N:M
    masks computed from its weights.
    """
    cfg, run_spec, tok, params, meta = load_run(run_dir)
    spec = run_spec if spec is None else (spec if isinstance(spec, CompressionSpec)
                                          else CompressionSpec.parse(spec))
    tcfg = TrainConfig(**{**{k: v for k, v in meta["train_config"].items()
                             if k in {f.name for f in dataclasses.fields(TrainConfig)}},
                          "bucket_seconds": tuple(meta["train_config"]["bucket_seconds"]),
                          "eval_batch_size": batch_size})
    trainer = get_trainer(cfg, spec, tcfg)
    masks = None
    if spec.sparse:
        mask_dir = Path(run_dir) / "masks"
        if spec == run_spec and mask_dir.exists():
            masks = load_params(mask_dir)
        else:
            masks = one_shot_masks(params, spec, trainer.opts)
    split_data = load_corpus(corpus, data_dir, split, seed=seed, sample_rate=cfg.sample_rate,
                             heldout_speaker=heldout_speaker)
    ds = batching.prepare(split_data, tok, cfg, tcfg.bucket_seconds, keep_long=True)
    r = trainer.evaluate(params, masks, ds, tok)
    r["spec"] = str(spec)
    return r
