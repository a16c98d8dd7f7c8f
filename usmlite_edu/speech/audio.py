"""Reading and writing audio files: one function in, one function out.

Every corpus loader goes through :func:`load_audio`, so the model always sees the same
thing: float32, mono, in ``[-1, 1]``, at the sample rate the caller asked for. Broken
files raise :class:`AudioError` (a ``ValueError``) naming the file, so a loader can
report it and skip it instead of stopping a whole run on one bad recording.

Resampling uses ``scipy.signal.resample_poly`` with the exact rational factor
``target / source`` (reduced by their gcd): 8 kHz -> 16 kHz is ``up=2, down=1``,
22.05 kHz -> 16 kHz is ``up=320, down=441``. Its default Kaiser anti-aliasing filter is
good enough for speech features and needs no extra dependency.

What :func:`load_audio` checks, and what each failure says (every one an
:class:`AudioError` naming the file):

* the file exists, is not empty and libsndfile can decode it ("unreadable ...");
* it is **complete**: the frames decoded equal the frames its header promises. libsndfile
  quietly shortens a WAV whose ``data`` chunk claims more bytes than the file holds, so a
  WAV's ``data`` chunk size is read from the header itself (:func:`declared_frames`); a
  FLAC cut short fails to decode past the cut. Either way the message gives both numbers
  ("truncated: its header promises 8000 frames (1.000 s at 8000 Hz) but only 28 ...");
* its sample rate is plausible (:data:`SAMPLE_RATE_RANGE`; a damaged header can claim
  1 Hz or 4 GHz, and resampling from such a rate would take all the memory there is);
* every sample is finite ("NaN or infinite samples");
* it is not **flat**: a signal whose every sample has one value (digital silence, a
  constant offset, or a signal stuck at full scale) holds nothing to recognise;
* given the model (``model=cfg``), it is long enough for one CTC output frame
  (:func:`min_samples`, whose docstring states the rule per preset).

A signal with more than :data:`CLIPPED_WARN_SHARE` of its samples at full scale is
loaded, with a warning naming the file (clipping damages speech but does not erase it).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from usmlite_edu.speech.configs import SAMPLE_RATE_RANGE  # re-exported: files follow it

__all__ = [
    "AudioError",
    "load_audio",
    "declared_frames",
    "truncation_reason",
    "min_samples",
    "min_duration_rule",
    "resample",
    "write_audio",
    "WRITE_FORMATS",
    "CLIPPED_WARN_SHARE",
    "SAMPLE_RATE_RANGE",
]

log = logging.getLogger(__name__)

#: share of samples at full scale (``|x| >= 0.999``) above which a loaded file is
#: reported as clipped (a warning; the audio is still used)
CLIPPED_WARN_SHARE = 0.01
#: WAV format tags whose frames are exactly ``data bytes // block_align``: PCM, IEEE float,
#: A-law, mu-law, and WAVE_FORMAT_EXTENSIBLE (which wraps one of them)
_WAV_LINEAR_TAGS = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}

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


def declared_frames(path: PathLike) -> int | None:
    """The frame count a WAV file's ``data`` chunk header declares, or ``None``.

    ``None`` when the file is not a RIFF/WAVE file, its encoding is not linear (frames
    are then not ``bytes // block_align``), or the size is the "unknown length" marker
    of a streamed WAV (0 or 0xFFFFFFFF; RF64 too). Reads at most the first 64 KiB.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    i, tag, block_align = 12, None, None
    while i + 8 <= len(head):
        chunk, size = head[i : i + 4], struct.unpack("<I", head[i + 4 : i + 8])[0]
        if chunk == b"fmt " and i + 8 + 14 <= len(head):
            tag, _, _, _, block_align = struct.unpack("<HHIIH", head[i + 8 : i + 22])
        elif chunk == b"data":
            if tag not in _WAV_LINEAR_TAGS or not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        i += 8 + size + (size & 1)  # chunks are word-aligned
    return None


def _frames_decodable(path: Path) -> int:
    """How many frames decode before libsndfile fails (for the message about a cut file)."""
    got = 0
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                block = f.read(4096, dtype="float32", always_2d=True)
                if not len(block):
                    break
                got += len(block)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError, EOFError):
        pass
    return got


def truncation_reason(expected: int, got: int, rate: int, error: Exception | None = None) -> str:
    """The reason an :class:`AudioError` gives for a file shorter than its header says."""
    what = "truncated" if error is None else "truncated or corrupt"
    how = "could be read" if error is None else "decode before an error"
    return (
        f"{what}: its header promises {expected} frames ({expected / rate:.3f} s at "
        f"{rate} Hz) but only {got} {how} ({got / rate:.3f} s)"
        + ("" if error is None else f" ({type(error).__name__}: {error})")
    )


def min_samples(cfg, output_frames: int = 1) -> int:
    """The fewest samples at ``cfg.sample_rate`` that give ``output_frames`` CTC frames.

    The rule, from the model's frontend and encoder (``cfg`` a
    :class:`~usmlite_edu.speech.configs.ConformerConfig`): the first log-mel frame needs one
    whole window (``window_ms``), each further frame one hop (``hop_ms``); the encoder's
    two stride-2 convolutions keep ``ceil(ceil(T / 2) / 2)`` of ``T`` frames (4x
    subsampling), so ``k`` output frames need ``T = 4 (k - 1) + 1`` log-mel frames, that
    is ``window + 4 (k - 1) hop`` samples. CTC needs one output frame per label and one
    more between two equal labels (:func:`usmlite_edu.speech.batching.ctc_min_frames`), so an
    utterance is too short for its transcript below ``min_samples(cfg, that count)``;
    ``min_samples(cfg)`` (one frame) is the shortest audio the model can say anything
    about: 32 ms (one window) for every preset, 256 samples at 8 kHz (``cpu``), 512 at
    16 kHz (``ci``, ``small``).
    """
    from usmlite_edu.speech.frontend import LogMelConfig  # jax: imported only when asked

    mel = LogMelConfig.from_model(cfg)
    k = max(int(output_frames), 1)
    return mel.win_length + 4 * (k - 1) * mel.hop_length


def min_duration_rule(cfg) -> str:
    """:func:`min_samples`' rule in words, for error messages."""
    one = min_samples(cfg, 1)
    step = min_samples(cfg, 2) - one
    sr = cfg.sample_rate
    return (
        f"the {cfg.name} model needs at least {one} samples ({1000 * one / sr:g} ms at "
        f"{sr} Hz: one {cfg.window_ms:g} ms window) for one CTC output frame after its 4x "
        f"subsampling, and {step} samples ({1000 * step / sr:g} ms) more per further "
        "frame (one frame per label, one more between two equal labels)"
    )


def _not_a_file(p: Path) -> str:
    """Why ``p`` (not a regular file) cannot be read: a folder, a symlink loop, a broken
    symlink, a device or pipe, a path through a file, a folder it may not search, or no
    such file."""
    try:
        st = p.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop (too many levels of symbolic links)"
        if e.errno == errno.ENOTDIR:
            return "not a path to a file: a part of it is a file, not a folder"
        if e.errno == errno.EACCES:
            return "cannot be reached (permission denied)"
        if p.is_symlink():
            return f"a broken symlink (to {os.readlink(p)}, which does not exist)"
        return "no such file"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not an audio file (give the files in it, e.g. FOLDER/*.flac)"
    return "not a regular file (a device, pipe or socket), not an audio file"


def load_audio(path: PathLike, sample_rate: int, *, model=None) -> np.ndarray:
    """Read a WAV/FLAC file as float32 mono in ``[-1, 1]`` at ``sample_rate``.

    Stereo (or more channels) is mixed down by the mean of the channels. Raises
    :class:`AudioError` for a missing, unreadable, empty or truncated file (fewer frames
    than its header promises), one whose samples decode to NaN/inf (a float WAV written
    from a diverged computation), a flat one (every sample equal: digital silence, a
    constant offset, a signal stuck at full scale), and, given the ``model``
    (a :class:`~usmlite_edu.speech.configs.ConformerConfig`) that will hear it, one too short
    for that model to give a single CTC output frame (:func:`min_samples`; the message
    states the rule).
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(p, _not_a_file(p))
    if p.stat().st_size == 0:
        raise AudioError(p, "the file is empty (0 bytes)")
    try:
        with sf.SoundFile(str(p)) as f:
            header_frames, rate = int(f.frames), int(f.samplerate)
            try:
                data = f.read(dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, TypeError, OSError, EOFError) as e:
                if header_frames > 0:  # the header was fine: the file stops short of it
                    raise AudioError(
                        p,
                        truncation_reason(header_frames, _frames_decodable(p), rate, e),
                    ) from None
                raise
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError, EOFError) as e:
        # libsndfile says "Format not recognised" / "unknown format" etc.
        raise AudioError(p, f"unreadable ({type(e).__name__}: {e})") from None
    if data.shape[0] == 0:
        raise AudioError(p, "it contains no samples (empty file)")
    if not SAMPLE_RATE_RANGE[0] <= rate <= SAMPLE_RATE_RANGE[1]:
        raise AudioError(
            p,
            f"its header says {rate} Hz, outside {SAMPLE_RATE_RANGE[0]}-"
            f"{SAMPLE_RATE_RANGE[1]} Hz: a damaged header, or not a recording",
        )
    expected = max(header_frames, declared_frames(p) or 0)
    if data.shape[0] < expected:
        raise AudioError(p, truncation_reason(expected, data.shape[0], rate))
    if not np.all(np.isfinite(data)):
        raise AudioError(p, "it contains NaN or infinite samples")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if x.size > 1 and np.all(x == x[0]):
        v = float(x[0])
        kind = (
            "digital silence"
            if v == 0
            else "stuck at full scale: clipped flat"
            if abs(v) >= 0.999
            else "a constant offset"
        )
        raise AudioError(
            p, f"flat: all {x.size} samples are {v:g} ({kind}), there is no signal to recognise"
        )
    clipped = float(np.mean(np.abs(x) >= 0.999))
    if clipped > CLIPPED_WARN_SHARE:
        log.warning(
            "%s: %.1f%% of its samples are at full scale (clipped); loaded as it is, "
            "but check the recording level",
            p,
            100 * clipped,
        )
    if model is not None:
        n_model = -(-x.size * int(model.sample_rate) // rate)  # its length at the model's rate
        if n_model < min_samples(model):
            raise AudioError(
                p,
                f"too short: {1000 * x.size / rate:.1f} ms ({x.size} samples at {rate} Hz); "
                f"{min_duration_rule(model)}",
            )
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
