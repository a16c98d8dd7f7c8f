"""One training step of USM-Lite Algorithm 1: the loss, the optimizer and the jitted update.

:class:`TrainStep` holds one model (architecture + compression spec) with its loss
(:meth:`TrainStep.loss`), optimizer (:func:`make_optimizer`) and jitted update
(:meth:`TrainStep.step`), and nothing else: no data, no checkpoints, no run directory.
The training loop (:func:`usmlite_edu.training.train.train`) drives it; the memory plan
(:mod:`usmlite_edu.training.plan`) compiles its update ahead of time without a loop;
evaluation is the forward-only :class:`~usmlite_edu.deploy.recognizer.Recognizer` it hands
out (:meth:`TrainStep.recognizer`). ``usmlite_edu.training.train.Trainer`` is this class
under the name the notebooks use.

One step (Algorithm 1, lines 4-10), as :meth:`TrainStep._step_impl` runs it under ``jax.jit``:

1. the N:M masks, which live in the optimizer state (:func:`usmlite_edu.core.sparsity.nm_masked`),
   were refreshed from the current weights while ``step < T_p``;
2. prune: ``W * M`` on every compressible kernel (Eq. 4);
3. quantize each pruned kernel and run the native int8 matmul (Eqs. 1-2, STE backward);
4. CTC loss (``optax.ctc_loss``) over the log-mel -> Conformer -> softmax output;
5. Adam with the transformer learning-rate schedule, two parameter groups (frontend +
   encoder: multiplier 0.5, long warm-up; softmax: multiplier 2.0, short warm-up), global
   gradient clipping, and the update masked so pruned weights never move.

A non-finite loss, gradient or updated parameter skips the update (``optax.apply_if_finite``, whose counters
live in the optimizer state and so in the checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from usmlite_edu.core import sparsity
from usmlite_edu.core.specs import CompressionSpec, Spec, as_spec
from usmlite_edu.deploy import forward as forwardlib
from usmlite_edu.deploy.recognizer import Recognizer
from usmlite_edu.speech import augment, batching, frontend, model
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig
from usmlite_edu.speech.tokenizer import Tokenizer

__all__ = ["transformer_schedule", "make_optimizer", "ctc_per_token", "TrainStep"]


# --------------------------------------------------------------------------- optimizer
def transformer_schedule(
    peak: float, warmup: int, offset: int = 0, rewarm: int = 0
) -> Callable[[jax.Array], jax.Array]:
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


def _all_finite(tree: Any) -> jax.Array:
    """Whether every floating-point leaf of ``tree`` is finite (a scalar bool)."""
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _counted_skip(state: Any) -> Any:
    """``optax.apply_if_finite``'s state after one more skipped step: inner state as it
    was, the consecutive and total counts one higher, ``last_finite`` false."""
    return state._replace(
        notfinite_count=state.notfinite_count + 1,
        last_finite=jnp.asarray(False),
        total_notfinite=state.total_notfinite + 1,
    )


def _param_group(params: Any) -> Any:
    return {
        k: jax.tree.map(lambda _, g="softmax" if k == "softmax" else "encoder": g, v)
        for k, v in params.items()
    }


def make_optimizer(
    tcfg: TrainConfig, spec: CompressionSpec, compressible: Any
) -> optax.GradientTransformation:
    """Adam with two transformer schedules and gradient clipping; N:M masks on the
    ``compressible`` leaves (a pytree of bools, or of :class:`usmlite_edu.core.sparsity.Pattern`
    where layers differ: :func:`usmlite_edu.speech.model.nm_pattern_tree`) if ``spec`` is sparse;
    the whole update skipped when any gradient is not finite."""
    groups = optax.multi_transform(
        {
            "encoder": optax.adam(
                transformer_schedule(
                    tcfg.peak_lr * tcfg.encoder_lr_mult,
                    tcfg.encoder_warmup,
                    tcfg.schedule_offset,
                    tcfg.rewarm_steps,
                )
            ),
            "softmax": optax.adam(
                transformer_schedule(
                    tcfg.peak_lr * tcfg.softmax_lr_mult,
                    tcfg.softmax_warmup,
                    tcfg.schedule_offset,
                    tcfg.rewarm_steps,
                )
            ),
        },
        _param_group,
    )
    tx = optax.chain(optax.clip_by_global_norm(tcfg.clip_norm), groups)
    if spec.sparse:
        one = isinstance(spec, CompressionSpec)  # else a per-layer map: patterns in the tree
        tx = sparsity.nm_masked(
            tx,
            spec.n if one else None,
            spec.m if one else None,
            update_steps=spec.mask_update_steps,
            where=compressible,
            axis=-2,  # the input dimension, also of stacked (scan-layout) kernels
            sr_ste_decay=2e-4 if spec.sr_ste else None,
        )
    # Outermost, so a skipped step leaves every inner state (Adam moments, mask schedule)
    # exactly as it was. The loop raises before optax would apply the K+1-th bad update.
    return optax.apply_if_finite(tx, max_consecutive_errors=tcfg.max_nonfinite)


# --------------------------------------------------------------------------- the trainer
# fold_in tags of the SpecAugment and weight-noise keys, derived from the step's dropout
# key. nnx.Rngs draws dropout keys as fold_in(key, 0), fold_in(key, 1), ... (one per
# dropout call), so the tags sit far above any count a model reaches.
_SPECAUG_STREAM = 0x5EC0_0001
_NOISE_STREAM = 0x5EC0_0002


def ctc_per_token(logits: jax.Array, omask: jax.Array, batch: batching.Batch) -> jax.Array:
    """Mean CTC loss per label token of a batch (blank 0; padding utterances weigh 0)."""
    label_pad = (jnp.arange(batch.labels.shape[1])[None, :] >= batch.label_lengths[:, None]).astype(
        jnp.float32
    )
    per = optax.ctc_loss(
        logits.astype(jnp.float32),
        (~omask).astype(jnp.float32),
        batch.labels,
        label_pad,
        blank_id=0,
    )
    w = batch.weights
    return jnp.sum(per * w) / jnp.maximum(jnp.sum(batch.label_lengths * w), 1.0)


class TrainStep:
    """One model (architecture + spec) with its loss, optimizer and jitted train step.

    Parameters and masks are plain pytrees passed in and out, never stored here, so one
    instance serves every seed and run of its spec. Evaluation is the forward-only
    :class:`~usmlite_edu.deploy.recognizer.Recognizer`'s (:meth:`recognizer`), on this
    trainer's graph (:attr:`forward`).
    """

    def __init__(self, cfg: ConformerConfig, spec: Spec | str, tcfg: TrainConfig, **model_options):
        self.cfg, self.spec, self.tcfg = cfg, as_spec(spec), tcfg
        # the model options the training config decides (remat changes no parameter)
        model_options = {"compute_dtype": tcfg.compute_dtype, "remat": tcfg.remat, **model_options}
        self.model_options = model_options
        self.opts = model.ModelOptions(spec=self.spec, **model_options)
        # Refuses an impossible spec (e.g. groups that do not divide a layer) up front.
        self.graphdef, abstract = model.split_model(
            model.abstract_model(cfg, self.spec, **model_options)
        )
        # graphdef: the module structure (static); abstract: shapes of the params pytree
        self.compressible = model.compressible_mask_tree(abstract, cfg, self.opts)
        self.mel = frontend.LogMelConfig.from_model(cfg)
        # Regularisers of the training loss only (augment.py; see TrainStep.loss).
        self.specaug = augment.SpecAugmentConfig.from_train(tcfg)
        self.noise_targets = augment.noise_targets(abstract, cfg)
        self.tx = make_optimizer(tcfg, self.spec, model.nm_pattern_tree(abstract, cfg, self.opts))
        self._step = jax.jit(self._step_impl, donate_argnums=(0, 1))
        # the evaluation forward pass: the same graph, compiled on its first use
        self.forward = forwardlib.Forward(
            cfg, self.spec, graphdef=self.graphdef, **self.model_options
        )

    # -- model pieces
    def features(self, waveforms, lengths):
        """Normalised log-mel features and frame mask of a padded waveform batch."""
        return self.forward.features(waveforms, lengths)

    @property
    def param_table(self) -> tuple:
        """The model's parameters as it declares them (path, shape, role, compressible,
        logical axes): :func:`usmlite_edu.speech.model.param_table`; what the mesh reads."""
        return model.param_table(self.cfg, self.spec, **self.model_options)

    def init_params(self, seed: int) -> Any:
        """Freshly initialised parameters (a pure pytree) for ``seed``."""
        return model.init_params(self.cfg, self.spec, seed=seed, **self.model_options)

    def loss(self, params, masks, batch, dropout_key, deterministic=False, step=None):
        """Mean CTC loss per label token of a batch (padding utterances weigh 0).

        With ``deterministic=False`` (training) the regularisers of ``tcfg`` run, each
        skipped at trace time when it is off, so a run without them computes exactly
        what it did before they existed:

        * dropout (``cfg.dropout``) with keys drawn from ``dropout_key`` itself;
        * SpecAugment (:func:`usmlite_edu.speech.augment.spec_augment`) on the normalised
          log-mels, keyed by ``fold_in(dropout_key, _SPECAUG_STREAM)``;
        * weight noise (:func:`usmlite_edu.speech.augment.weight_noise`) on every kernel, keyed by
          ``fold_in(dropout_key, _NOISE_STREAM)``, from ``step >= weight_noise_start``
          (``step=None``: always), added to the float weights *before* the N:M masks and
          the quantizer, so prune-then-quantize sees the noisy weights while the gradient
          goes to the clean ones.

        ``deterministic=True`` is the loss of the evaluation forward pass: none of them.
        """
        feats, mask = self.features(batch.waveforms, batch.lengths)
        if not deterministic and self.specaug.enabled:
            skey = jax.random.fold_in(dropout_key, _SPECAUG_STREAM)
            feats = augment.spec_augment(feats, mask, skey, self.specaug)
        if not deterministic and self.tcfg.weight_noise_std > 0:
            nkey = jax.random.fold_in(dropout_key, _NOISE_STREAM)
            noisy = augment.weight_noise(
                params, nkey, self.tcfg.weight_noise_std, self.noise_targets
            )
            if step is not None and self.tcfg.weight_noise_start > 0:
                on = step >= self.tcfg.weight_noise_start
                noisy = jax.tree.map(lambda a, b: jnp.where(on, a, b), noisy, params)
            params = noisy
        p = model.apply_masks(params, masks, straight_through=self.spec.sr_ste)
        logits, omask = model.forward(
            self.graphdef, p, feats, mask, deterministic=deterministic, dropout_key=dropout_key
        )
        return ctc_per_token(logits, omask, batch)

    def _accumulated_grads(self, params, masks, batch, dkey, step):
        """Loss and gradient of the whole batch from ``tcfg.grad_accum`` micro-batches
        run in sequence (``lax.scan``): each contributes ``loss_i * tokens_i`` and its
        gradient, and the sums are divided by the batch's token count, which is what
        :meth:`loss` computes on the whole batch at once. Micro-batch ``i`` draws its
        dropout / SpecAugment / noise keys from ``fold_in(dkey, i)``."""
        k = self.tcfg.grad_accum
        micro = jax.tree.map(lambda x: x.reshape((k, x.shape[0] // k) + x.shape[1:]), batch)

        def one(carry, xs):
            i, mb = xs
            tokens = jnp.sum(mb.label_lengths * mb.weights)

            def scaled(p):
                key = jax.random.fold_in(dkey, i)
                return self.loss(p, masks, mb, key, step=step) * jnp.maximum(tokens, 1.0)

            num, g = jax.value_and_grad(scaled)(params)
            # a micro-batch without tokens has loss 0 * 1: contributes nothing
            num = jnp.where(tokens > 0, num, 0.0)
            g = jax.tree.map(lambda a: jnp.where(tokens > 0, a, 0.0), g)
            acc_num, acc_g, acc_tok = carry
            return (acc_num + num, jax.tree.map(jnp.add, acc_g, g), acc_tok + tokens), None

        zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params), 0.0)
        (num, grads, tokens), _ = jax.lax.scan(one, zero, (jnp.arange(k), micro))
        denom = jnp.maximum(tokens, 1.0)
        return num / denom, jax.tree.map(lambda g: g / denom, grads)

    # -- optimizer + step
    def setup_optimizer(self, params) -> Any:
        """The optimizer state for ``params`` (Adam moments, N:M masks, skip counters)."""
        return self.tx.init(params)

    def _step_impl(self, params, opt_state, batch, key, step):
        masks = sparsity.masks_from_state(opt_state)
        dkey = jax.random.fold_in(key, step)
        if self.tcfg.grad_accum == 1:
            loss, grads = jax.value_and_grad(self.loss)(params, masks, batch, dkey, step=step)
        else:
            loss, grads = self._accumulated_grads(params, masks, batch, dkey, step)
        # A non-finite loss with finite gradients still means a broken batch: skip it too.
        grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
        updates, new_state = self.tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        # Finite gradients can still give a non-finite update (a learning rate that
        # overflows float32, Adam moments that do): such a step is skipped and counted
        # like a non-finite gradient, parameters and optimizer state left as they were.
        ok = jnp.logical_and(new_state.last_finite, _all_finite(new_params))
        new_params, new_state = jax.lax.cond(
            ok,
            lambda: (new_params, new_state),
            lambda: (params, _counted_skip(opt_state)),
        )
        return new_params, new_state, loss, ok

    def step(self, params, opt_state, batch, key, step):
        """One jitted update; returns ``(params, opt_state, loss, applied)``. The inputs
        ``params`` and ``opt_state`` are donated (do not use them afterwards)."""
        b = batching.Batch(*(jnp.asarray(x) for x in batch))
        return self._step(params, opt_state, b, key, jnp.asarray(step, jnp.int32))

    # -- evaluation: the Recognizer's
    def recognizer(self, params, masks, tok: Tokenizer | None = None) -> Recognizer:
        """The forward-only model of ``params`` and N:M ``masks`` (``None``: dense), on this
        trainer's graph and evaluation settings (``tcfg.eval_batch_size``, buckets)."""
        return Recognizer(self.forward, params, masks, tok, self.tcfg)

    def logits(self, params, masks, waveforms, lengths) -> tuple[jax.Array, jax.Array]:
        """CTC logits ``(B, T', V)`` and output mask of a padded waveform batch (jitted):
        :meth:`usmlite_edu.deploy.forward.Forward.logits`."""
        return self.forward.logits(params, masks, waveforms, lengths)

    def transcribe_batch(self, params, masks, batch) -> list[list[int]]:
        """Greedy CTC token ids of every row of ``batch``."""
        return self.forward.transcribe_batch(params, masks, batch)

    def evaluate(self, params, masks, ds: batching.Dataset, tok: Tokenizer) -> dict:
        """WER and CER (%) over a prepared dataset, and every transcript:
        :meth:`usmlite_edu.deploy.recognizer.Recognizer.evaluate` of :meth:`recognizer`."""
        return self.recognizer(params, masks, tok).evaluate(ds)
