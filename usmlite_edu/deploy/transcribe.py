"""Transcribe audio files with a trained run (``usmlite-edu transcribe``).

A file that cannot be used (unreadable, truncated, flat, NaN, or shorter than the model's
minimum, :func:`usmlite_edu.speech.audio.min_samples`) gives the text ``<error: REASON>``
(:data:`ERROR_PREFIX`, which no transcript can start with: the tokenizer writes only
``a-z``, ``'`` and spaces) and the other files go on; the CLI counts them and exits
non-zero when any failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from usmlite_edu.core.specs import Spec
from usmlite_edu.deploy.recognizer import Recognizer, open_model
from usmlite_edu.speech.audio import AudioError, load_audio

__all__ = ["transcribe_files", "open_model", "Recognizer", "is_error", "ERROR_PREFIX"]

#: how the text of a file that could not be transcribed starts
ERROR_PREFIX = "<error: "


def is_error(text: str) -> bool:
    """Whether a text from :func:`transcribe_files` reports a failure, not a transcript."""
    return text.startswith(ERROR_PREFIX)


def transcribe_files(
    run_dir: str | os.PathLike | None,
    files: Sequence[str],
    *,
    spec: Spec | str | None = None,
    model: str | os.PathLike | None = None,
    arith: str | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield ``(path, text)`` per file: any WAV/FLAC, any sample rate, mono or stereo.

    The model is a run directory (``run_dir``) or a packed file (``model``, written by
    ``usmlite-edu export``; :mod:`usmlite_edu.deploy.export`), which transcribes exactly as its
    run does under the spec it was exported with (:meth:`Recognizer.open`). ``spec``
    (default: the run's own; a :class:`~usmlite_edu.core.specs.SpecMap` gives each layer
    its own) runs a run's weights through another compression (PTQ); a packed file holds
    one spec or map. ``arith`` (default: the run's own) chooses the inference arithmetic of
    the dense layers (:mod:`usmlite_edu.deploy.infer`: float32, bf16, w8, w4, w8a8).
    A file that cannot be used yields ``(path, "<error: ...>")`` (see :func:`is_error`)
    and the rest go on; audio too short for one CTC output frame of this model is such
    a file (:func:`usmlite_edu.speech.audio.min_samples` states the rule).
    Audio longer than the largest training bucket is transcribed in overlapping windows of
    that bucket, the CTC frames stitched from the middle of each window
    (:meth:`Recognizer.long_form_ids`): memory stays that of one window plus the audio
    itself (4 bytes a sample), whatever the length.
    """
    rec = Recognizer.open(run_dir, model, spec, arith=arith)
    for path in files:
        try:
            audio = load_audio(path, rec.config.sample_rate, model=rec.config)
        except (AudioError, OSError) as e:
            yield path, f"{ERROR_PREFIX}{e}>"
            continue
        yield path, rec.transcribe(audio)
