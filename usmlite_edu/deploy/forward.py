"""The compiled forward pass of one model: what transcription, evaluation, export checks,
the search and the trainer's evaluation all run.

A :class:`Forward` is the parameter-free half of a model: its NNX graph definition (the
module structure: architecture, spec, compute dtype, and for integer or packed inference
the kinds of its kernels), its log-mel frontend settings and one ``jax.jit`` of

    waveforms -> normalised log-mels -> N:M masks applied to the weights -> LSQ step sizes
    completed (:func:`usmlite_edu.speech.model.conform_lsq`) -> Conformer -> CTC logits

Parameters and masks are arguments, never stored here, so one compiled forward serves
every seed and run of its spec. :class:`usmlite_edu.deploy.recognizer.Recognizer` binds
one to a set of parameters, masks and a tokenizer.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu.core.specs import Spec, as_spec
from usmlite_edu.scale import mesh as meshlib
from usmlite_edu.speech import batching, frontend, model
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig
from usmlite_edu.speech.decoding import greedy_decode, wer_cer
from usmlite_edu.speech.tokenizer import Tokenizer

__all__ = ["Forward", "get_forward", "forward_cache_info", "clear_forward_cache", "evaluate"]


class Forward:
    """One model graph (architecture + spec + compute options) and its jitted forward pass.

    ``graphdef`` (default: the graph :func:`usmlite_edu.speech.model.abstract_model` builds for
    ``cfg`` under ``spec``) may be given: a graph whose dense kernels are stored integers
    (packed files, ``--arith``). ``model_options`` are the other
    :class:`usmlite_edu.speech.model.ModelOptions` fields (``compute_dtype``, ``remat``, ...).
    Building the default graph refuses an impossible spec (``ValueError`` naming the layer).
    """

    def __init__(
        self,
        cfg: ConformerConfig,
        spec: Spec | str,
        *,
        graphdef: Any = None,
        **model_options: Any,
    ):
        self.cfg, self.spec = cfg, as_spec(spec)
        self.model_options = model_options
        self.opts = model.ModelOptions(spec=self.spec, **model_options)
        if graphdef is None:
            graphdef = model.model_graph(cfg, self.spec, **model_options)
        self.graphdef = graphdef
        self.mel = frontend.LogMelConfig.from_model(cfg)
        self._forward = jax.jit(self._forward_impl)

    def features(self, waveforms: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Normalised log-mel features and frame mask of a padded waveform batch."""
        feats, mask = frontend.log_mel(waveforms, lengths, self.mel)
        return frontend.normalize(feats, mask), mask

    def _forward_impl(self, params, masks, waveforms, lengths):
        feats, mask = self.features(waveforms, lengths)
        p = model.apply_masks(params, masks)
        # LSQ: step sizes for a model that has none (PTQ of a float run: the min/max
        # initialisation of the pruned weights), none for a spec without lsq.
        p = model.conform_lsq(p, self.cfg, self.spec, compress_softmax=self.opts.compress_softmax)
        return model.forward(self.graphdef, p, feats, mask)

    def logits(self, params: Any, masks: Any, waveforms, lengths) -> tuple[jax.Array, jax.Array]:
        """CTC logits ``(B, T', V)`` and output mask of a padded waveform batch (jitted);
        ``masks`` are the N:M masks (``None`` for dense)."""
        return self._forward(params, masks, jnp.asarray(waveforms), jnp.asarray(lengths))

    def transcribe_batch(self, params: Any, masks: Any, batch: batching.Batch) -> list[list[int]]:
        """Greedy CTC token ids of every row of ``batch``."""
        logits, omask = self.logits(params, masks, batch.waveforms, batch.lengths)
        # spread over several processes: gathered (every process decodes the same batch)
        logits, omask = meshlib.to_host((logits, omask))
        return greedy_decode(logits, omask)

    def evaluate(
        self, params: Any, masks: Any, ds: batching.Dataset, tok: Tokenizer, batch_size: int
    ) -> dict:
        """:func:`evaluate` with this forward pass (every utterance in one piece)."""
        return evaluate(lambda b: self.transcribe_batch(params, masks, b), ds, tok, batch_size)


def evaluate(
    transcribe_batch,
    ds: batching.Dataset,
    tok: Tokenizer,
    batch_size: int,
    long_form: tuple[int, Callable[[np.ndarray], list[int]]] | None = None,
) -> dict:
    """WER and CER (%) over a prepared dataset, and every transcript.

    ``transcribe_batch(batch)`` gives each row's token ids; the dataset is read with
    :func:`usmlite_edu.speech.batching.eval_batches` (``batch_size`` rows a batch, padding
    rows dropped). ``long_form=(max_samples, ids_of)``: an utterance of more than
    ``max_samples`` samples is decoded alone by ``ids_of(audio)`` (windowed long-form
    decoding, :meth:`usmlite_edu.deploy.recognizer.Recognizer.long_form_ids`) after the
    batches, instead of in a bucket of its own length. Returns ``wer``, ``cer``, ``utterances`` (how many were scored),
    ``skipped`` (how many the dataset could not prepare), ``transcripts`` (every utterance
    as ``{"id", "ref", "hyp"}``: normalised reference and greedy hypothesis, in the order
    decoded, so that the WER can be recomputed and compared utterance by utterance, see
    :mod:`usmlite_edu.core.stats`) and ``examples`` (the first 20 as ``{"uid", "ref",
    "hyp"}``, for display).
    """
    refs, hyps, uids = [], [], []
    long = (
        [i for i, e in enumerate(ds.examples) if e.audio.size > long_form[0]] if long_form else []
    )
    for batch, idx in batching.eval_batches(ds, batch_size, skip=long):
        ids = transcribe_batch(batch)
        for row, i in enumerate(idx):
            e = ds.examples[i]
            refs.append(tok.normalize(e.text))
            hyps.append(tok.decode(ids[row]))
            uids.append(e.uid)
    for i in long:
        e = ds.examples[i]
        refs.append(tok.normalize(e.text))
        hyps.append(tok.decode(long_form[1](e.audio)))
        uids.append(e.uid)
    wer, cer = wer_cer(refs, hyps)
    return {
        "wer": wer,
        "cer": cer,
        "utterances": len(refs),
        "skipped": len(ds.skipped),
        "transcripts": [{"id": u, "ref": r, "hyp": h} for u, r, h in zip(uids, refs, hyps)],
        "examples": [
            {"uid": u, "ref": r, "hyp": h} for u, r, h in list(zip(uids, refs, hyps))[:20]
        ],
    }


# Keep only a few: every compiled XLA:CPU executable holds its own memory mappings, and a
# sweep over all of Tables 1-3 that kept every spec's executables alive hit the kernel's
# limit (vm.max_map_count) mid-compilation. One dropped from the cache frees its
# executables once it is garbage-collected.
@functools.lru_cache(maxsize=4)
def _cached_forward(
    cfg: ConformerConfig, spec: Spec, compute_dtype: str | None, remat: str
) -> Forward:
    gc.collect()  # collect the forward the cache just evicted, if any
    return Forward(cfg, spec, compute_dtype=compute_dtype, remat=remat)


def get_forward(cfg: ConformerConfig, spec: Spec | str, tcfg: TrainConfig) -> Forward:
    """A cached float :class:`Forward` of ``cfg`` under ``spec`` with ``tcfg``'s compute
    options (``compute_dtype``, ``remat``): evaluations of runs that share them reuse one
    compiled forward. At most four are kept (least recently used dropped)."""
    return _cached_forward(cfg, as_spec(spec), tcfg.compute_dtype, tcfg.remat)


def forward_cache_info():
    """Hits, misses and size of the forward cache (``functools.lru_cache`` statistics)."""
    return _cached_forward.cache_info()


def clear_forward_cache() -> None:
    """Drop every cached :class:`Forward` (their compiled executables go with them)."""
    _cached_forward.cache_clear()
