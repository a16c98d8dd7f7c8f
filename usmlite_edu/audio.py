"""Reading and writing audio files: one function in, one function out.

Every corpus loader goes through :func:`load_audio`, so the model always sees the same
thing: float32, mono, in ``[-1, 1]``, at the sample rate the caller asked for. Broken
files raise :class:`AudioError` (a ``ValueError``) naming the file, so a loader can
report it and skip it instead of stopping a whole run on one bad recording.

Resampling uses ``scipy.signal.resample_poly`` with the exact rational factor
``target / source`` (reduced by their gcd): 8 kHz -> 16 kHz is ``up=2, down=1``,
22.05 kHz -> 16 kHz is ``up=320, down=441``. Its default Kaiser anti-aliasing filter is
good enough for speech features and needs no extra dependency.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

__all__ = ["AudioError", "load_audio", "resample", "write_audio", "WRITE_FORMATS"]

#: file suffix -> (libsndfile format, default subtype) for :func:`write_audio`
WRITE_FORMATS: dict[str, tuple[str, str]] = {
    ".flac": ("FLAC", "PCM_16"),
    ".wav": ("WAV", "PCM_16"),
}

PathLike = str | os.PathLike[str]


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the fix."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"cannot use audio file {self.path}: {reason}. "
            "Re-download or regenerate this file, or delete it so loaders skip it."
        )


def resample(x: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D signal by the exact rational factor ``target_rate / source_rate``."""
    if source_rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {source_rate} -> {target_rate}")
    if source_rate == target_rate:
        return np.asarray(x, dtype=np.float32)
    g = math.gcd(int(source_rate), int(target_rate))
    up, down = int(target_rate) // g, int(source_rate) // g
    y = resample_poly(np.asarray(x, dtype=np.float64), up, down)
    return y.astype(np.float32)


def load_audio(path: PathLike, sample_rate: int) -> np.ndarray:
    """Read a WAV/FLAC file as float32 mono in ``[-1, 1]`` at ``sample_rate``.

    Stereo (or more channels) is mixed down by the mean of the channels. Raises
    :class:`AudioError` for a missing, unreadable or empty file, or one whose samples
    decode to NaN/inf (a float WAV written from a diverged computation); digital
    silence (all zeros) is valid audio and is returned as is.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(p, "no such file")
    if p.stat().st_size == 0:
        raise AudioError(p, "the file is empty (0 bytes)")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError, EOFError) as e:
        # libsndfile says "Format not recognised" / "unknown format" etc.
        raise AudioError(p, f"unreadable ({type(e).__name__}: {e})") from None
    if data.shape[0] == 0:
        raise AudioError(p, "it contains no samples (empty file)")
    if not np.all(np.isfinite(data)):
        raise AudioError(p, "it contains NaN or infinite samples")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    x = resample(x, int(rate), int(sample_rate))
    # Float files may exceed full scale and resampling can overshoot by a little.
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


def write_audio(
    path: PathLike, x: np.ndarray, sample_rate: int, *, subtype: str | None = None
) -> Path:
    """Write mono (or ``(frames, channels)``) float audio as FLAC or WAV, by suffix.

    Samples are clipped to ``[-1, 1]`` first: libsndfile wraps, not clips, floats that
    overflow an integer format. Default subtype is 16-bit PCM. Parent folders are created.
    """
    p = Path(path)
    fmt = WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {p}: suffix must be one of {sorted(WRITE_FORMATS)}")
    a = np.asarray(x, dtype=np.float32)
    if a.ndim not in (1, 2) or a.shape[0] == 0:
        raise ValueError(
            f"cannot write {p}: expected non-empty (frames,) or (frames, channels) "
            f"audio, got shape {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"cannot write {p}: audio contains NaN or infinite samples")
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(
        str(p), np.clip(a, -1.0, 1.0), int(sample_rate), format=fmt[0], subtype=subtype or fmt[1]
    )
    return p
