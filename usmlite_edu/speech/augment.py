"""Training-time regularisers of Conformer-CTC: SpecAugment, speed perturbation, weight noise.

All three are off by default (:class:`~usmlite_edu.speech.configs.TrainConfig`), and none of them
ever runs at evaluation.

* :func:`spec_augment` (Park et al. 2019, section 2; with the adaptive time masks of Park
  et al. 2020, "SpecAugment on large scale datasets", section 3, as the Conformer paper,
  Gulati et al. 2020, section 3.1, uses them): frequency and time masks on the normalised
  log-mel features, inside the jitted training loss, from a key derived from the step's
  key (so a resumed run draws the same masks).
* :func:`speed_perturb` (Ko et al. 2015, section 3; Kaldi's 3-way 0.9 / 1.0 / 1.1): the
  training waveforms resampled once, at data preparation
  (:func:`usmlite_edu.speech.batching.prepare`), one copy per factor.
* :func:`weight_noise` (variational noise, Graves 2011, section 4; used for quantization-
  aware training of the 2-bit Conformer, Rybakov et al. 2023): Gaussian noise on the
  weights of the training forward pass, before prune-then-quantize.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.signal import resample_poly

from usmlite_edu.speech import model
from usmlite_edu.speech.configs import ConformerConfig

__all__ = [
    "SpecAugmentConfig",
    "spec_augment",
    "speed_perturb",
    "speed_uid",
    "check_speed_factors",
    "noise_targets",
    "weight_noise",
]


# --------------------------------------------------------------------------- SpecAugment
@dataclasses.dataclass(frozen=True)
class SpecAugmentConfig:
    """SpecAugment's masking parameters (no time warping: the Conformer paper does not use
    it, and Park et al. 2019, Table 7, found it the least useful of the three).

    Attributes:
      freq_masks: frequency masks per utterance (Park et al.'s ``m_F``; Conformer: 2).
      freq_width: the widest frequency mask in mel bins (``F``; Conformer: 27 of 80 bins);
        each mask's width is drawn uniformly from ``0 .. min(freq_width, num_mels)``.
      time_masks: time masks per utterance, a fixed count (``m_T``; Conformer: 10). Park
        et al. 2020 also offer a count proportional to the length (``p_M``); the fixed count
        is the Conformer paper's choice and is what this implements.
      time_max_frac: adaptive width (``p_S``; Conformer: 0.05): each time mask is at most
        ``floor(time_max_frac * length)`` frames of *that* utterance (padding excluded),
        its width drawn uniformly from ``0`` to that bound.
    """

    freq_masks: int = 0
    freq_width: int = 27
    time_masks: int = 0
    time_max_frac: float = 0.05

    def __post_init__(self):
        for name in ("freq_masks", "freq_width", "time_masks"):
            if getattr(self, name) < 0:
                raise ValueError(f"specaug {name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.time_max_frac < 1:
            raise ValueError(f"specaug time_max_frac must be in [0, 1), got {self.time_max_frac!r}")

    @property
    def enabled(self) -> bool:
        """Whether any mask is drawn (masks of zero width are not counted as none)."""
        return self.freq_masks > 0 or self.time_masks > 0

    @classmethod
    def from_train(cls, tcfg: Any) -> SpecAugmentConfig:
        """The settings of a :class:`~usmlite_edu.speech.configs.TrainConfig`'s ``specaug_*`` fields."""
        return cls(
            tcfg.specaug_freq_masks,
            tcfg.specaug_freq_width,
            tcfg.specaug_time_masks,
            tcfg.specaug_time_max_frac,
        )


def _bands(key: jax.Array, n: int, max_width: jax.Array, size: jax.Array, axis_len: int):
    """``(B, axis_len)`` bools: the union of ``n`` bands per row, each of width drawn
    uniformly from ``0 .. max_width[b]`` and start uniformly from ``0 .. size[b] - width``
    (so a band never reaches past ``size[b]``)."""
    b = max_width.shape[0]
    u = jax.random.uniform(key, (2, b, n))
    # floor(u * (k + 1)) is uniform on 0..k; the clamp guards float rounding at u -> 1.
    width = jnp.minimum(jnp.floor(u[0] * (max_width[:, None] + 1)), max_width[:, None])
    room = size[:, None] - width
    start = jnp.minimum(jnp.floor(u[1] * (room + 1)), room)
    pos = jnp.arange(axis_len, dtype=jnp.float32)[None, None, :]
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return jnp.any(inside, axis=1)


def spec_augment(
    feats: jax.Array, mask: jax.Array, key: jax.Array, cfg: SpecAugmentConfig
) -> jax.Array:
    """SpecAugment frequency and time masking of a padded batch (jittable, no time warp).

    ``feats`` ``(B, T, F)`` are *normalised* log-mels (per-utterance mean 0, see
    :func:`usmlite_edu.speech.frontend.normalize`), so a masked value is set to 0, the mean, as
    Park et al. 2019 (section 2) do. ``mask`` ``(B, T)`` marks the valid frames. Every
    utterance gets its own masks from ``key``: ``cfg.freq_masks`` bands of bins (across
    all its frames) and ``cfg.time_masks`` bands of frames, each at most
    ``floor(cfg.time_max_frac * length)`` wide and lying inside the valid frames. Padded
    frames are 0 on input and stay 0, so the frame mask still describes the batch.
    With no masks configured ``feats`` is returned as it is.
    """
    if not cfg.enabled:
        return feats
    b, t, f = feats.shape
    kf, kt = jax.random.split(key)
    drop = jnp.zeros((b, t, f), bool)
    if cfg.freq_masks:
        w = jnp.full((b,), min(cfg.freq_width, f), jnp.float32)
        fband = _bands(kf, cfg.freq_masks, w, jnp.full((b,), f, jnp.float32), f)
        drop = drop | fband[:, None, :]
    if cfg.time_masks:
        lengths = jnp.sum(mask, axis=-1).astype(jnp.float32)
        w = jnp.floor(cfg.time_max_frac * lengths)
        tband = _bands(kt, cfg.time_masks, w, lengths, t)
        drop = drop | tband[:, :, None]
    return jnp.where(drop, jnp.zeros((), feats.dtype), feats)


# --------------------------------------------------------------------------- speed
def _ratio(factor: float) -> Fraction:
    # A speed factor as a small ratio p/q (0.9 = 9/10), so the resampling is exact.
    return Fraction(factor).limit_denominator(1000)


def check_speed_factors(factors: Sequence[float], where: str = "train.speed_perturb") -> None:
    """Refuse non-positive or repeated speed factors (``ValueError`` naming the value)."""
    for s in factors:
        if not (isinstance(s, (int, float)) and s > 0 and np.isfinite(s)):
            raise ValueError(f"{where}: speed factors must be positive numbers, got {s!r}")
    ratios = [_ratio(s) for s in factors]
    if len(set(ratios)) != len(ratios):
        raise ValueError(f"{where}: speed factors must differ, got {tuple(factors)!r}")


def speed_uid(uid: str, factor: float) -> str:
    """The utterance id of a speed-perturbed copy: ``uid`` for factor 1 (as Kaldi keeps the
    original), ``uid + "_sp0.9"`` etc. for the others."""
    return uid if _ratio(factor) == 1 else f"{uid}_sp{factor:g}"


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """``audio`` played ``factor`` times as fast: tempo and pitch both scale by ``factor``,
    the length by ``1 / factor`` (Ko et al. 2015, section 3; what ``sox speed`` does for
    Kaldi's recipe).

    ``factor`` is taken as the nearest ratio ``p / q`` with ``q <= 1000`` (0.9 = 9/10) and
    the signal resampled by ``up = q, down = p`` with ``scipy.signal.resample_poly``: the
    output has ``ceil(len * q / p)`` samples and is read at the original sample rate.
    Deterministic (no randomness). Returns float32 clipped to ``[-1, 1]``.
    """
    check_speed_factors((factor,), "speed_perturb")
    r = _ratio(factor)
    x = np.asarray(audio, np.float32)
    if r == 1:
        return x.copy()
    y = resample_poly(x.astype(np.float64), r.denominator, r.numerator)
    # The anti-aliasing filter can overshoot full scale by a little, as in audio.load_audio.
    return np.clip(y, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- weight noise
def _name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def noise_targets(params: Any, cfg: ConformerConfig) -> Any:
    """Pytree of bools like ``params``: the leaves :func:`weight_noise` perturbs.

    Every kernel (the roles ``dense``, ``conv`` and ``softmax`` of
    :func:`usmlite_edu.speech.model.param_table`, in the params' layout): the compressible dense kernels must be in,
    since making the loss flat where the quantizer moves them is what VN is for in QAT
    (Rybakov et al. 2023), and the float convolution and softmax kernels are weight
    matrices too, which Graves' variational noise perturbs as a regulariser against
    memorising the training speakers. Biases, LayerNorm scales / offsets and the
    relative-position biases (role ``other``) are not: they start at 0 or 1, not at the
    kernels' ``1/sqrt(fan_in)`` scale, so one absolute ``std`` does not fit them.
    """
    stacked = model.is_stacked(params) if "encoder" in params else False
    roles = {w.name: w.role for w in model.param_table(cfg, scan_layers=stacked)}

    def pick(path, _leaf) -> bool:
        name = _name(path)
        if name.endswith("/log_step"):
            return False  # an LSQ step size (model.conform_lsq), not a weight
        if name not in roles:
            raise ValueError(f"noise_targets: {name!r} is not a parameter of config {cfg.name!r}")
        return roles[name] != "other"

    return jax.tree_util.tree_map_with_path(pick, params)


def weight_noise(params: Any, key: jax.Array, std: float, where: Any) -> Any:
    """``params`` with ``N(0, std^2)`` noise added to every leaf where ``where`` is True.

    One ``jax.random.normal(key, (total,))`` draw (float32) is cut, in ``jax.tree.leaves``
    order, into the picked leaves (one draw compiles to one random-bits kernel instead of
    one per leaf), so the noise is a pure function of ``key`` and of which leaves are
    picked. The noise does not depend on ``params``, so the gradient of a loss of the
    result with respect to ``params`` is the gradient at the noisy point, applied to the
    clean weights (Graves 2011, section 4). ``std == 0`` returns ``params`` itself.
    """
    if std < 0:
        raise ValueError(f"weight_noise: std must be >= 0, got {std!r}")
    if std == 0:
        return params
    leaves, treedef = jax.tree.flatten(params)
    picks = treedef.flatten_up_to(where)
    total = sum(int(np.prod(jnp.shape(w))) for w, p in zip(leaves, picks) if p)
    noise = std * jax.random.normal(key, (total,), jnp.float32)
    out, at = [], 0
    for w, p in zip(leaves, picks):
        if p:
            n = int(np.prod(jnp.shape(w)))
            w = w + noise[at : at + n].reshape(jnp.shape(w)).astype(jnp.result_type(w))
            at += n
        out.append(w)
    return jax.tree.unflatten(treedef, out)
