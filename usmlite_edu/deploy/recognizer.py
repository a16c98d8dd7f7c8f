"""The :class:`Recognizer`: a trained model, forward only, ready to transcribe, evaluate
and export.

One object holds what inference needs and nothing of training: the compiled forward pass
(:class:`usmlite_edu.deploy.forward.Forward`: graph definition, spec or spec map, frontend
settings), the parameters and N:M masks, the tokenizer, and the evaluation settings of
the training config (bucket lengths, evaluation batch size, compute dtype). It comes from
a run directory (:meth:`Recognizer.from_run`), a packed ``.safetensors`` file
(:meth:`Recognizer.from_packed`) or a trainer's parameters
(:meth:`usmlite_edu.training.train.Trainer.recognizer`); transcription, ``eval``, the
explorer, the search and the mesh tour all run through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

from usmlite_edu.core import quant
from usmlite_edu.core.specs import CompressionSpec, Spec, SpecMap, as_spec
from usmlite_edu.deploy import export, forward, infer
from usmlite_edu.deploy.forward import Forward, get_forward
from usmlite_edu.speech import batching, model, runs
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig
from usmlite_edu.speech.presets import Preset
from usmlite_edu.speech.tokenizer import Tokenizer

__all__ = ["Recognizer", "open_model"]


class Recognizer:
    """A model ready to transcribe: a :class:`~usmlite_edu.deploy.forward.Forward` bound to
    its parameters, masks, tokenizer and evaluation settings.

    Attributes:
      forward: the compiled forward pass (graph, spec, frontend).
      params: the parameter dict (float arrays; a packed file's quantized kernels as
        :class:`~usmlite_edu.core.quant.QuantizedArray`, an integer ``arith``'s dense kernels
        as :class:`~usmlite_edu.core.quant.IntKernel`).
      masks: the N:M masks applied to ``params`` before each forward pass (``None``: dense,
        or already applied).
      tokenizer: turns token ids into text (``None``: :meth:`logits` only).
      train_config: the evaluation settings (``bucket_seconds``, ``eval_batch_size``,
        ``compute_dtype``); the model was trained with the same file's other fields.
      arith: the inference arithmetic of the dense layers (``None``: the run's own;
        :mod:`usmlite_edu.deploy.infer`).
      source_meta: where it came from (a run directory and its spec), written into an
        exported file's metadata.
    """

    def __init__(
        self,
        forward: Forward,
        params: Any,
        masks: Any = None,
        tokenizer: Tokenizer | None = None,
        train_config: TrainConfig | None = None,
        *,
        arith: str | None = None,
        source_meta: Mapping[str, str] | None = None,
    ):
        self.forward, self.params, self.masks = forward, params, masks
        self.tokenizer = tokenizer
        self.train_config = train_config if train_config is not None else TrainConfig()
        self.arith = arith
        self.source_meta = dict(source_meta or {})

    # -- what it is
    @property
    def config(self) -> ConformerConfig:
        """The model's architecture."""
        return self.forward.cfg

    @property
    def spec(self) -> CompressionSpec | SpecMap:
        """The compression its forward pass applies (an integer ``arith``: the spec whose
        integers it multiplies, :func:`usmlite_edu.deploy.infer.weight_spec`)."""
        return self.forward.spec

    # -- loading
    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike,
        spec: Spec | str | None = None,
        overrides: Iterable[str] | Mapping[str, object] = (),
        arith: str | None = None,
    ) -> Recognizer:
        """A run directory's final parameters under ``spec`` (default: its own; another
        spec is post-training compression: one-shot N:M masks, Eq. 3, and the spec's
        quantizer on the run's weights). ``overrides`` are ``train.*`` evaluation
        settings (batch size, buckets); ``arith`` the dense layers' arithmetic
        (:mod:`usmlite_edu.deploy.infer`)."""
        infer.check_arith(arith)
        run = runs.load_run(run_dir)
        _, tcfg, _ = runs.read_config(run_dir)
        tcfg = Preset("run", run.config, tcfg).override(overrides).train
        spec = as_spec(spec, run.spec)
        if isinstance(spec, SpecMap):  # refuse a map that does not fit before any mask is made
            model.resolve_specs(spec, run.config)
        masks = runs.load_masks(run_dir, run, spec)
        fwd, params, masks, tcfg = infer.prepare(
            run.config,
            spec,
            tcfg,
            run.params,
            masks,
            arith,
            lambda t: get_forward(run.config, spec, t),
        )
        source = {"source": str(run_dir), "source_spec": str(run.spec)}
        return cls(fwd, params, masks, run.tokenizer, tcfg, arith=arith, source_meta=source)

    @classmethod
    def from_packed(
        cls,
        path: str | os.PathLike,
        spec: Spec | str | None = None,
        overrides: Iterable[str] | Mapping[str, object] = (),
        arith: str | None = None,
    ) -> Recognizer:
        """A packed file of ``usmlite-edu export`` (:mod:`usmlite_edu.deploy.export`), which
        transcribes exactly as its run does under the spec it was exported with. A
        ``spec`` other than the file's is refused (its weights are already compressed),
        and so is a file without a tokenizer or training config."""
        infer.check_arith(arith)
        packed = export.read_packed(path, dequantize=False)
        if spec is not None and as_spec(spec) != packed.spec:
            spec = as_spec(spec)
            asked = (
                f"--spec-map {spec.source or 'FILE'}"
                if isinstance(spec, SpecMap)
                else f"--spec {spec}"
            )
            raise ValueError(
                f"{path} holds the model compressed with {packed.spec}; it cannot run "
                f"under {asked} (export the run again with {asked})"
            )
        if packed.train_config is None or packed.tokenizer is None:
            raise ValueError(
                f"{path} has no tokenizer or training config: export it from a run "
                "directory (usmlite-edu export --checkpoint RUN) to transcribe with it"
            )
        cfg = packed.config
        tcfg = Preset("packed", cfg, packed.train_config).override(overrides).train
        fwd, params, _, tcfg = infer.prepare(
            cfg,
            packed.spec,
            tcfg,
            packed.params,
            None,
            arith,
            lambda t: export.inference(packed._replace(train_config=t))[0],
        )
        return cls(fwd, params, None, packed.tokenizer, tcfg, arith=arith)

    @classmethod
    def open(
        cls,
        run_dir: str | os.PathLike | None,
        model: str | os.PathLike | None = None,
        spec: Spec | str | None = None,
        overrides: Iterable[str] | Mapping[str, object] = (),
        arith: str | None = None,
    ) -> Recognizer:
        """:meth:`from_run` of ``run_dir`` or :meth:`from_packed` of ``model`` (exactly one
        of them: the CLI's ``--checkpoint RUN`` / ``--model FILE``)."""
        if (run_dir is None) == (model is None):
            raise ValueError(
                "give a run directory (--checkpoint RUN) or a packed file (--model FILE)"
            )
        if model is not None:
            return cls.from_packed(model, spec, overrides, arith)
        return cls.from_run(run_dir, spec, overrides, arith)

    # -- running
    def logits(self, waveforms, lengths) -> tuple[jax.Array, jax.Array]:
        """CTC logits ``(B, T', V)`` and output mask of a padded waveform batch (jitted)."""
        return self.forward.logits(self.params, self.masks, waveforms, lengths)

    def transcribe_batch(self, batch: batching.Batch) -> list[list[int]]:
        """Greedy CTC token ids of every row of ``batch``."""
        return self.forward.transcribe_batch(self.params, self.masks, batch)

    def transcribe(self, audio: np.ndarray) -> str:
        """The text of one utterance (float32 samples at the model's sample rate).

        Audio up to the largest training bucket is padded to the smallest bucket that
        holds it (one compile per bucket, shared by every file). Longer audio is
        transcribed in overlapping windows of the largest bucket (:meth:`long_form_ids`),
        so memory does not grow with its length."""
        sr = self.config.sample_rate
        buckets = [int(s * sr) for s in self.train_config.bucket_seconds]
        if audio.size > buckets[-1]:
            return self._tokenizer().decode(self.long_form_ids(audio))
        n = next(b for b in buckets if audio.size <= b)
        wav = np.zeros((1, n), np.float32)
        wav[0, : audio.size] = audio
        batch = batching.Batch(
            wav,
            np.array([audio.size], np.int32),
            np.zeros((1, 1), np.int32),
            np.zeros(1, np.int32),
            np.ones(1, np.float32),
        )
        return self._tokenizer().decode(self.transcribe_batch(batch)[0])

    def _window_argmax(self, audio: np.ndarray, n: int) -> np.ndarray:
        """The frame-wise argmax of ``audio`` padded to ``n`` samples (the output frames
        of its real samples only)."""
        wav = np.zeros((1, n), np.float32)
        wav[0, : audio.size] = audio
        logits, omask = self.logits(wav, np.array([audio.size], np.int32))
        return np.asarray(logits[0]).argmax(-1)[np.asarray(omask[0], bool)]

    def long_form_ids(self, audio: np.ndarray) -> list[int]:
        """Greedy CTC ids of audio of any length, in bounded memory: chunked inference
        with overlap, and the CTC frames stitched from the middle of each window.

        Windows are the largest training bucket long (``W`` samples: a length the model
        was trained on and has compiled) and start every ``keep`` output frames (``4 *
        hop`` samples each, the encoder's frame rate), so consecutive windows overlap by
        ``2 * margin`` frames, ``margin = W_frames // 6`` (one sixth of a window on each
        side: 0.75 s of a 4.5 s bucket). Of each window's frames the first ``margin`` and
        the last ``margin`` are dropped (context cut at an edge the speech runs across),
        except at the start of the first window and the end of the last: every output
        frame of the audio is taken from exactly one window, the one where it is farthest
        from an edge. The stitched frame-wise argmax is then decoded as one utterance
        (merge repeats, drop blanks), so a token spanning a seam is not doubled. Each
        window's features are normalised over the window alone, as a training utterance
        of that length is.

        Memory: one batch of one window (what the largest bucket takes), the audio, and
        one argmax id per output frame; it does not grow with the audio's length beyond
        the audio itself (4 bytes a sample).
        """
        sr = self.config.sample_rate
        width = int(self.train_config.bucket_seconds[-1] * sr)
        step = 4 * self.forward.mel.hop_length  # samples per output frame
        frames = max(1, width // step)
        margin = frames // 6
        keep = max(1, frames - 2 * margin)
        stride = keep * step
        kept: list[np.ndarray] = []
        start = 0
        while True:
            chunk = audio[start : start + width]
            last = start + width >= audio.size
            best = self._window_argmax(chunk, width)
            lo = 0 if start == 0 else margin
            hi = best.size if last else min(best.size, margin + keep)
            kept.append(best[lo:hi])
            if last:
                break
            start += stride
        return _collapse(np.concatenate(kept))

    def evaluate(self, ds: batching.Dataset) -> dict:
        """WER and CER (%) over a prepared dataset, and every transcript
        (:func:`usmlite_edu.deploy.forward.evaluate`: ``wer``, ``cer``, ``utterances``,
        ``skipped``, ``transcripts``, ``examples``), in batches of
        ``train_config.eval_batch_size``.

        An utterance longer than the largest training bucket is decoded as
        :meth:`transcribe` decodes it: in overlapping windows of that bucket
        (:meth:`long_form_ids`), so that an evaluation set with long recordings needs no
        more memory than its longest bucket of ``eval_batch_size`` rows, and ``eval`` and
        ``transcribe`` give a file the same hypothesis. Shorter utterances are decoded
        whole, in batches, as before (no committed evaluation set has a longer one)."""
        limit = int(max(self.train_config.bucket_seconds) * self.config.sample_rate)
        return forward.evaluate(
            self.transcribe_batch,
            ds,
            self._tokenizer(),
            self.train_config.eval_batch_size,
            long_form=(limit, self.long_form_ids),
        )

    def export(self, path: str | os.PathLike) -> export.ExportInfo:
        """Write this model as a packed ``.safetensors`` file
        (:func:`usmlite_edu.deploy.export.write_packed`: its spec, parameters, masks,
        tokenizer and evaluation settings); from a run directory the file's bytes are those
        of ``usmlite-edu export --checkpoint RUN``. Float parameters only: a recognizer of a
        packed file or of an integer ``--arith`` holds compressed kernels already."""
        if self.arith is not None or _holds_integers(self.params):
            raise ValueError(
                "export: this model's kernels are already integers (a packed file or an "
                "integer --arith); export its run directory instead"
            )
        return export.write_packed(
            self.params,
            self.spec,
            path,
            config=self.config,
            tokenizer=self.tokenizer,
            train_config=self.train_config,
            masks=self.masks,
            source_meta=self.source_meta,
        )

    def _tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise ValueError("this recognizer has no tokenizer: it gives logits only")
        return self.tokenizer


def _collapse(best: np.ndarray, blank: int = 0) -> list[int]:
    """Greedy CTC of one frame-wise argmax: merge repeats, drop blanks."""
    if best.size == 0:
        return []
    keep = np.ones(best.size, bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(t) for t in best[keep] if t != blank]


def _holds_integers(params: Any) -> bool:
    leaves = jax.tree.leaves(
        params, is_leaf=lambda x: isinstance(x, (quant.QuantizedArray, quant.IntKernel))
    )
    return any(isinstance(x, (quant.QuantizedArray, quant.IntKernel)) for x in leaves)


def open_model(
    run_dir: str | os.PathLike | None,
    model: str | os.PathLike | None = None,
    spec: Spec | str | None = None,
    overrides: Iterable[str] | Mapping[str, object] = (),
    arith: str | None = None,
) -> Recognizer:
    """:meth:`Recognizer.open` (the name earlier versions gave it)."""
    return Recognizer.open(run_dir, model, spec, overrides, arith)
