"""Transcribe audio files with a trained run (``usmlite-edu transcribe``).

A file that cannot be used (unreadable, truncated, flat, NaN, or shorter than the model's
minimum, :func:`usmlite_edu.audio.min_samples`) gives the text ``<error: REASON>``
(:data:`ERROR_PREFIX`, which no transcript can start with: the tokenizer writes only
``a-z``, ``'`` and spaces) and the other files go on; the CLI counts them and exits
non-zero when any failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np

from usmlite_edu import batching, runs
from usmlite_edu.audio import AudioError, load_audio
from usmlite_edu.compress import CompressionSpec, as_spec
from usmlite_edu.train import get_trainer

__all__ = ["transcribe_files", "is_error", "ERROR_PREFIX"]

#: how the text of a file that could not be transcribed starts
ERROR_PREFIX = "<error: "


def is_error(text: str) -> bool:
    """Whether a text from :func:`transcribe_files` reports a failure, not a transcript."""
    return text.startswith(ERROR_PREFIX)


def transcribe_files(
    run_dir: str | os.PathLike, files: Sequence[str], *, spec: str | CompressionSpec | None = None
) -> Iterator[tuple[str, str]]:
    """Yield ``(path, text)`` per file: any WAV/FLAC, any sample rate, mono or stereo.

    ``spec`` (default: the run's own) runs the weights through another compression (PTQ).
    A file that cannot be used yields ``(path, "<error: ...>")`` (see :func:`is_error`)
    and the rest go on; audio too short for one CTC output frame of this model is such
    a file (:func:`usmlite_edu.audio.min_samples` states the rule).
    Audio longer than the largest training bucket is transcribed in one padded pass of
    its own length (one extra compile for that length).
    """
    run = runs.load_run(run_dir)
    _, tcfg, _ = runs.read_config(run_dir)
    spec = as_spec(spec, run.spec)
    trainer = get_trainer(run.config, spec, tcfg)
    masks = runs.load_masks(run_dir, run, spec)
    sr = run.config.sample_rate
    buckets = [int(s * sr) for s in tcfg.bucket_seconds]
    for path in files:
        try:
            audio = load_audio(path, sr, model=run.config)
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
        ids = trainer.transcribe_batch(run.params, masks, batch)[0]
        yield path, run.tokenizer.decode(ids)
