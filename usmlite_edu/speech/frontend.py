"""Log-mel frontend in JAX: the paper's input features (USM-Lite section 4.2).

The paper feeds the Conformer "128-dim log-mel features, 32 ms window, 10 ms shift"; at
16 kHz that is a 512-sample window, a 160-sample hop and a 512-point FFT (257 bins).

Convention (one of the two common ones; README "Conventions"): the TF/Lingvo style
**HTK mel scale with no area normalisation** -- triangles of peak 1 on
``mel(f) = 2595 log10(1 + f/700)``, numerically equal to
``librosa.filters.mel(sr=, n_fft=, n_mels=, fmin=, fmax=, htk=True, norm=None).T``.
(librosa's *default* is the Slaney scale with area normalisation, which gives features
that differ by a per-bin scale and a warped frequency axis; do not mix the two.)

Pipeline for a waveform ``x`` of ``L`` valid samples::

    frame t     = x[t*hop : t*hop + win]          # no centre padding
    T(L)        = 1 + (L - win) // hop  if L >= win else 0      (num_frames)
    spectrum    = |rfft(hann_periodic(win) * frame, n=n_fft)|**2  # window zero-padded
    features    = log(max(spectrum @ mel_filterbank, log_floor))

Batches are zero-padded ``(B, N)`` arrays with per-utterance lengths. A frame is valid
(``frame_mask``) only when it lies entirely inside the utterance; invalid frames are set
to 0, so an utterance's features do not depend on what it was batched with.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu.speech.configs import ConformerConfig

__all__ = [
    "LogMelConfig",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "hann_window",
    "num_frames",
    "log_mel",
    "normalize",
]


@dataclasses.dataclass(frozen=True)
class LogMelConfig:
    """Log-mel settings. Defaults of :meth:`from_model` are the paper's (section 4.2).

    ``fft_size`` defaults to the next power of two >= the window length, ``fmax`` to the
    Nyquist frequency. ``log_floor`` is the smallest mel energy before the log.
    """

    sample_rate: int
    num_mels: int
    window_ms: float
    hop_ms: float
    fft_size: int | None = None
    fmin: float = 0.0
    fmax: float | None = None
    log_floor: float = 1e-5

    def __post_init__(self):
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.num_mels < 1:
            raise ValueError(f"num_mels must be positive, got {self.num_mels}")
        if self.win_length < 1 or self.hop_length < 1:
            raise ValueError(
                f"window_ms={self.window_ms} / hop_ms={self.hop_ms} give win_length="
                f"{self.win_length}, hop_length={self.hop_length} samples at "
                f"{self.sample_rate} Hz; both must be >= 1"
            )
        if self.fft_size is not None and self.fft_size < self.win_length:
            raise ValueError(
                f"fft_size={self.fft_size} is shorter than the window ({self.win_length} "
                f"samples = {self.window_ms} ms at {self.sample_rate} Hz); use fft_size >= "
                f"{self.win_length} or leave it None (next power of two)"
            )
        if not 0.0 <= self.fmin < self.mel_fmax <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, "
                f"fmax={self.mel_fmax}, sample_rate/2={self.sample_rate / 2}"
            )
        if self.log_floor <= 0:
            raise ValueError(f"log_floor must be positive, got {self.log_floor}")

    @classmethod
    def from_model(cls, cfg: ConformerConfig, **overrides) -> LogMelConfig:
        """The frontend of a :class:`ConformerConfig` (sample rate, mels, window, hop)."""
        fields = dict(
            sample_rate=cfg.sample_rate,
            num_mels=cfg.num_mels,
            window_ms=cfg.window_ms,
            hop_ms=cfg.hop_ms,
        )
        return cls(**{**fields, **overrides})

    @property
    def win_length(self) -> int:
        """Window length in samples: ``round(sample_rate * window_ms / 1000)``."""
        return int(round(self.sample_rate * self.window_ms / 1000.0))

    @property
    def hop_length(self) -> int:
        """Hop (frame shift) in samples: ``round(sample_rate * hop_ms / 1000)``."""
        return int(round(self.sample_rate * self.hop_ms / 1000.0))

    @property
    def n_fft(self) -> int:
        """FFT size: ``fft_size`` or the next power of two >= ``win_length``."""
        if self.fft_size is not None:
            return int(self.fft_size)
        return 1 << max(0, (self.win_length - 1).bit_length())

    @property
    def num_bins(self) -> int:
        """Number of rfft bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def mel_fmax(self) -> float:
        """Upper edge of the filterbank: ``fmax`` or ``sample_rate / 2``."""
        return float(self.sample_rate) / 2 if self.fmax is None else float(self.fmax)


AnyConfig = LogMelConfig | ConformerConfig


def _as_config(cfg: AnyConfig) -> LogMelConfig:
    if isinstance(cfg, LogMelConfig):
        return cfg
    if isinstance(cfg, ConformerConfig):
        return LogMelConfig.from_model(cfg)
    raise TypeError(f"expected LogMelConfig or ConformerConfig, got {type(cfg).__name__}")


# --------------------------------------------------------------------------- filterbank
def hz_to_mel(f):
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`: ``700 * (10**(m / 2595) - 1)``."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=32)
def _filterbank(cfg: LogMelConfig) -> np.ndarray:
    n_bins = cfg.num_bins
    if cfg.num_mels > n_bins:
        raise ValueError(
            f"num_mels={cfg.num_mels} exceeds the {n_bins} FFT bins of n_fft={cfg.n_fft} "
            f"({cfg.window_ms} ms window at {cfg.sample_rate} Hz): most filters would be "
            f"empty. Use num_mels <= {n_bins}, or a larger fft_size (e.g. "
            f"fft_size={1 << (2 * (cfg.num_mels - 1) - 1).bit_length()}) / longer window"
        )
    # num_mels + 2 band edges equally spaced in mel, converted back to Hz.
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.mel_fmax), cfg.num_mels + 2))
    freqs = np.arange(n_bins, dtype=np.float64) * cfg.sample_rate / cfg.n_fft
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (num_mels, n_bins)
    return np.ascontiguousarray(weights.T.astype(np.float32))  # (n_bins, num_mels)


def mel_filterbank(cfg: AnyConfig) -> np.ndarray:
    """Triangular mel filterbank, shape ``(n_fft // 2 + 1, num_mels)``, float32.

    Convention: HTK mel scale, no area normalisation (peak 1), as in TF/Lingvo; equal to
    ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=num_mels, fmin=fmin, fmax=fmax,
    htk=True, norm=None).T``. (``tf.signal.linear_to_mel_weight_matrix`` uses the same
    scale but interpolates in mel rather than Hz and zeroes the DC bin, so it differs
    slightly.) With the paper's 128 mels on a 512-point FFT the lowest filter is narrower
    than one FFT bin and is all zero: its feature is the constant ``log(log_floor)``.

    Raises ``ValueError`` when ``num_mels > n_fft // 2 + 1``.
    """
    return _filterbank(_as_config(cfg)).copy()


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi n / length)`` (scipy ``fftbins=True``)."""
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype(np.float32)


# --------------------------------------------------------------------------- log-mel
def num_frames(length, cfg: AnyConfig):
    """Frames of a length-``L`` signal: ``1 + (L - win) // hop`` if ``L >= win`` else 0.

    Works on Python / numpy ints (returns ``int``) and on numpy or JAX arrays
    (element-wise, same array type).
    """
    cfg = _as_config(cfg)
    win, hop = cfg.win_length, cfg.hop_length
    if isinstance(length, (int, np.integer)):
        length = int(length)
        return 1 + (length - win) // hop if length >= win else 0
    xp = jnp if isinstance(length, jax.Array) else np
    length = xp.asarray(length)
    return xp.where(length >= win, 1 + (length - win) // hop, 0)


def _frame(x: jax.Array, win: int, hop: int, t: int) -> jax.Array:
    """``(B, N) -> (B, t, win)`` frames ``x[:, i*hop : i*hop+win]`` via reshape + slices."""
    k = -(-win // hop)  # hop-sized chunks spanned by one window
    need = (t + k - 1) * hop
    n = x.shape[1]
    x = jnp.pad(x, ((0, 0), (0, need - n))) if need > n else x[:, :need]
    chunks = x.reshape(x.shape[0], t + k - 1, hop)
    frames = jnp.concatenate([chunks[:, j : j + t] for j in range(k)], axis=-1)
    return frames[..., :win]


@functools.partial(jax.jit, static_argnames=("cfg",))
def log_mel(
    waveforms: jax.Array, lengths: jax.Array, cfg: AnyConfig
) -> tuple[jax.Array, jax.Array]:
    """Log-mel features of a zero-padded batch (paper section 4.2 frontend).

    Args:
      waveforms: ``(B, N)`` float waveforms, zero-padded after each utterance.
      lengths: ``(B,)`` int number of valid samples per utterance.
      cfg: a :class:`LogMelConfig` (or a :class:`ConformerConfig`); static under jit.

    Returns:
      ``features`` ``(B, T, num_mels)`` float32 with ``T = num_frames(N)``, 0 on padded
      frames, and ``frame_mask`` ``(B, T)`` bool, True where frame ``t`` lies entirely
      inside the valid samples (``t < num_frames(lengths)``).
    """
    cfg = _as_config(cfg)
    x = jnp.asarray(waveforms, jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"waveforms must be (batch, samples), got shape {x.shape}")
    b, n = x.shape
    t = num_frames(n, cfg)
    mask = jnp.arange(t)[None, :] < num_frames(jnp.asarray(lengths), cfg)[:, None]
    if t == 0:
        return jnp.zeros((b, 0, cfg.num_mels), jnp.float32), mask
    frames = _frame(x, cfg.win_length, cfg.hop_length, t) * hann_window(cfg.win_length)
    spec = jnp.fft.rfft(frames, n=cfg.n_fft, axis=-1)
    power = jnp.square(spec.real) + jnp.square(spec.imag)
    mel = jnp.matmul(power, _filterbank(cfg), precision=jax.lax.Precision.HIGHEST)
    feats = jnp.log(jnp.maximum(mel, cfg.log_floor))
    return jnp.where(mask[..., None], feats, 0.0), mask


@jax.jit
def normalize(features: jax.Array, frame_mask: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Per-utterance mean / variance normalisation of each mel bin over valid frames.

    ``(x - mean) / sqrt(var + eps)`` with mean and (biased) variance taken over the
    frames where ``frame_mask`` is True; padded frames stay 0. The paper does not say
    whether it normalises; this is an option for the model, not part of :func:`log_mel`.
    """
    m = frame_mask[..., None].astype(features.dtype)
    count = jnp.maximum(m.sum(axis=1, keepdims=True), 1.0)
    mean = (features * m).sum(axis=1, keepdims=True) / count
    var = (jnp.square(features - mean) * m).sum(axis=1, keepdims=True) / count
    return jnp.where(m > 0, (features - mean) * jax.lax.rsqrt(var + eps), 0.0)


def subsampled_lengths(lengths):
    """Frames left after the encoder's two stride-2 convolutions: ``ceil(ceil(T / 2) / 2)``.

    Each convolution pads one frame on each side, so ``T -> ceil(T / 2)`` whatever T's
    parity. Lives here, beside :func:`num_frames`, because both the data layer (which
    refuses utterances too short for their CTC labels) and the model use it. Works on
    Python ints, NumPy and JAX arrays alike.
    """
    return (((lengths + 1) // 2) + 1) // 2
