"""Transcribe audio files with a trained run (``usmlite-edu transcribe``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from usmlite_edu import batching, train
from usmlite_edu.audio import AudioError, load_audio
from usmlite_edu.compress import CompressionSpec


def transcribe_files(run_dir: str | os.PathLike, files: Sequence[str], *,
                     spec: str | CompressionSpec | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(path, text)`` per file: any WAV/FLAC, any sample rate, mono or stereo.

    A file that cannot be read yields ``(path, "<error: ...>")`` and the rest go on.
    Audio longer than the largest training bucket is transcribed in one padded pass of
    its own length (one extra compile for that length).
    """
    cfg, run_spec, tok, params, meta = train.load_run(run_dir)
    spec = run_spec if spec is None else (spec if isinstance(spec, CompressionSpec)
                                          else CompressionSpec.parse(spec))
    tcfg = train.TrainConfig(bucket_seconds=tuple(meta["train_config"]["bucket_seconds"]))
    trainer = train.Trainer(cfg, spec, tcfg)
    masks = None
    if spec.sparse:
        mask_dir = Path(run_dir) / "masks"
        masks = (train.load_params(mask_dir) if spec == run_spec and mask_dir.exists()
                 else train.one_shot_masks(params, spec, trainer.opts))
    buckets = [int(s * cfg.sample_rate) for s in tcfg.bucket_seconds]
    for path in files:
        try:
            audio = load_audio(path, cfg.sample_rate)
        except (AudioError, OSError) as e:
            yield path, f"<error: {e}>"
            continue
        n = next((b for b in buckets if audio.size <= b), audio.size)
        wav = np.zeros((1, n), np.float32)
        wav[0, :audio.size] = audio
        batch = batching.Batch(wav, np.array([audio.size], np.int32), np.zeros((1, 1), np.int32),
                               np.zeros(1, np.int32), np.ones(1, np.float32))
        ids = trainer.transcribe_batch(params, masks, batch)[0]
        yield path, tok.decode(ids)
