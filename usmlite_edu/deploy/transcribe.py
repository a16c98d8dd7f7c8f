"""Transcribe audio files with a trained run (``usmlite-edu transcribe``).

A file that cannot be used (unreadable, truncated, flat, NaN, or shorter than the model's
minimum, :func:`usmlite_edu.speech.audio.min_samples`) gives the text ``<error: REASON>``
(:data:`ERROR_PREFIX`, which no transcript can start with: the tokenizer writes only
``a-z``, ``'`` and spaces) and the other files go on; the CLI counts them and exits
non-zero when any failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from usmlite_edu.core.specs import CompressionSpec, SpecMap, as_spec
from usmlite_edu.speech import batching, runs
from usmlite_edu.speech import model as model_lib
from usmlite_edu.speech.audio import AudioError, load_audio
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig
from usmlite_edu.speech.tokenizer import Tokenizer
from usmlite_edu.training.train import get_trainer

__all__ = ["transcribe_files", "open_model", "Model", "is_error", "ERROR_PREFIX"]

#: how the text of a file that could not be transcribed starts
ERROR_PREFIX = "<error: "


def is_error(text: str) -> bool:
    """Whether a text from :func:`transcribe_files` reports a failure, not a transcript."""
    return text.startswith(ERROR_PREFIX)


def transcribe_files(
    run_dir: str | os.PathLike | None,
    files: Sequence[str],
    *,
    spec: str | CompressionSpec | None = None,
    model: str | os.PathLike | None = None,
    arith: str | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield ``(path, text)`` per file: any WAV/FLAC, any sample rate, mono or stereo.

    The model is a run directory (``run_dir``) or a packed file (``model``, written by
    ``usmlite-edu export``; :mod:`usmlite_edu.deploy.export`), which transcribes exactly as its
    run does under the spec it was exported with. ``spec`` (default: the run's own; a
    :class:`~usmlite_edu.core.specs.SpecMap` gives each layer its own) runs a run's
    weights through another compression (PTQ); a packed file holds one spec or map.
    ``arith`` (default: the run's own) chooses the inference arithmetic of the dense
    layers (:mod:`usmlite_edu.deploy.infer`: float32, bf16, w8, w4, w8a8).
    A file that cannot be used yields ``(path, "<error: ...>")`` (see :func:`is_error`)
    and the rest go on; audio too short for one CTC output frame of this model is such
    a file (:func:`usmlite_edu.speech.audio.min_samples` states the rule).
    Audio longer than the largest training bucket is transcribed in one padded pass of
    its own length (one extra compile for that length).
    """
    src = open_model(run_dir, model, spec, arith=arith)
    cfg, tcfg, tok, trainer, params, masks = src
    sr = cfg.sample_rate
    buckets = [int(s * sr) for s in tcfg.bucket_seconds]
    for path in files:
        try:
            audio = load_audio(path, sr, model=cfg)
        except (AudioError, OSError) as e:
            yield path, f"{ERROR_PREFIX}{e}>"
            continue
        n = next((b for b in buckets if audio.size <= b), audio.size)
        wav = np.zeros((1, n), np.float32)
        wav[0, : audio.size] = audio
        batch = batching.Batch(
            wav,
            np.array([audio.size], np.int32),
            np.zeros((1, 1), np.int32),
            np.zeros(1, np.int32),
            np.ones(1, np.float32),
        )
        ids = trainer.transcribe_batch(params, masks, batch)[0]
        yield path, tok.decode(ids)


class Model(NamedTuple):
    """A model ready to transcribe: what :func:`open_model` returns."""

    config: ConformerConfig
    train_config: TrainConfig
    tokenizer: Tokenizer
    trainer: Any
    params: Any
    masks: Any


def open_model(
    run_dir: str | os.PathLike | None,
    model: str | os.PathLike | None = None,
    spec: str | CompressionSpec | None = None,
    overrides: Iterable[str] | Mapping[str, object] = (),
    arith: str | None = None,
) -> Model:
    """A run directory (under ``spec``, default its own) or a packed file, ready to
    transcribe: ``(config, train_config, tokenizer, trainer, params, masks)``.

    ``overrides`` are ``train.*`` evaluation settings (batch size, buckets). A packed file
    with a ``spec`` other than its own is refused: its weights are already compressed.
    ``arith`` (default ``None``: the run's own) is the inference arithmetic of the dense
    layers, :mod:`usmlite_edu.deploy.infer`; with an integer arith the trainer's ``spec`` is the
    one whose integers it multiplies (:func:`usmlite_edu.deploy.infer.weight_spec`).
    """
    from usmlite_edu.deploy import export, infer
    from usmlite_edu.speech.presets import Preset

    if (run_dir is None) == (model is None):
        raise ValueError("give a run directory (--checkpoint RUN) or a packed file (--model FILE)")
    infer.check_arith(arith)
    if model is not None:
        packed = export.read_packed(model, dequantize=False)
        if spec is not None and as_spec(spec) != packed.spec:
            spec = as_spec(spec)
            asked = (
                f"--spec-map {spec.source or 'FILE'}"
                if isinstance(spec, SpecMap)
                else f"--spec {spec}"
            )
            raise ValueError(
                f"{model} holds the model compressed with {packed.spec}; it cannot run "
                f"under {asked} (export the run again with {asked})"
            )
        if packed.train_config is None or packed.tokenizer is None:
            raise ValueError(
                f"{model} has no tokenizer or training config: export it from a run "
                "directory (usmlite-edu export --checkpoint RUN) to transcribe with it"
            )
        cfg, tok, spec = packed.config, packed.tokenizer, packed.spec
        tcfg = Preset("packed", cfg, packed.train_config).override(overrides).train
        trainer, params, _, tcfg = infer.prepare(
            cfg,
            spec,
            tcfg,
            packed.params,
            None,
            arith,
            lambda t: export.inference(packed._replace(train_config=t))[0],
        )
        return Model(cfg, tcfg, tok, trainer, params, None)
    run = runs.load_run(run_dir)
    _, tcfg, _ = runs.read_config(run_dir)
    tcfg = Preset("run", run.config, tcfg).override(overrides).train
    spec = as_spec(spec, run.spec)
    if isinstance(spec, SpecMap):  # refuse a map that does not fit before any mask is made
        model_lib.resolve_specs(spec, run.config)
    masks = runs.load_masks(run_dir, run, spec)
    trainer, params, masks, tcfg = infer.prepare(
        run.config,
        spec,
        tcfg,
        run.params,
        masks,
        arith,
        lambda t: get_trainer(run.config, spec, t),
    )
    return Model(run.config, tcfg, run.tokenizer, trainer, params, masks)
