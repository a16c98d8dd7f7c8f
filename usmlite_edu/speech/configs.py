"""Model configurations: the paper's Conformer-CTC (section 3.1, 4.2) and smaller presets.

One frozen dataclass describes the architecture; presets go from a CI-sized toy to the
2B-parameter USM-CTC of the paper. The parameters themselves, with their roles, are
declared by the model where it creates them and listed by
:func:`usmlite_edu.speech.model.param_table` (the single source for model-size accounting,
:mod:`usmlite_edu.core.sizes`, and for the mesh's sharding).

Roles:

* ``dense``: fully-connected weights; the paper applies Eq. (1) and N:M to all of them
  (the frontend's linear projection and every matrix in the Conformer blocks).
* ``conv``: the two subsampling convolutions and the depthwise convolutions: float.
* ``softmax``: the CTC output layer: float.
* ``other``: biases, layer-norm scales and offsets, relative-position biases: float.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

__all__ = [
    "ConformerConfig",
    "TrainConfig",
    "ReproConfig",
    "config_from_dict",
]

Role = Literal["dense", "conv", "softmax", "other"]


#: sample rates (Hz) a model or an audio file may have; outside them a header or a setting
#: is taken to be damaged (:mod:`usmlite_edu.speech.audio` applies it to files)
SAMPLE_RATE_RANGE = (1000, 768_000)
#: the longest padded batch length a configuration may ask for (seconds): one bucket is one
#: compiled program holding ``batch_size`` utterances of this length
MAX_BUCKET_SECONDS = 600.0


def _check_finite(cfg, section: str) -> None:
    """Refuse a NaN or infinite number anywhere in a configuration (``1e999`` in a
    ``--set`` or a file reads as infinity and would pass every ``>`` check)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{section}.{f.name} must be a finite number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ConformerConfig:
    """Architecture and frontend of a Conformer-CTC.

    Defaults are the paper's 2B USM-CTC: 32 layers of dimension 1536, 16 heads, depthwise
    kernel 5, 128 log-mel bins from a 32 ms window and a 10 ms hop, a 3x3 stride-2
    subsampling pair with 128 and 32 channels, left/right attention context 128.
    """

    name: str = "usm_2b"
    # frontend
    sample_rate: int = 16000
    num_mels: int = 128
    window_ms: float = 32.0
    hop_ms: float = 10.0
    subsample_channels: tuple[int, int] = (128, 32)
    # encoder
    model_dim: int = 1536
    num_layers: int = 32
    num_heads: int = 16
    ffn_multiplier: int = 4
    conv_kernel: int = 5
    left_context: int | None = 128
    right_context: int | None = 128
    dropout: float = 0.0
    # output
    vocab_size: int = 16384

    def __post_init__(self):
        _check_finite(self, "model")
        for field in (
            "num_mels",
            "model_dim",
            "num_layers",
            "num_heads",
            "ffn_multiplier",
            "conv_kernel",
            "vocab_size",
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"{self.name}: model.{field} must be an integer >= 1, got {value!r}"
                )
        lo, hi = SAMPLE_RATE_RANGE
        if not isinstance(self.sample_rate, int) or not lo <= self.sample_rate <= hi:
            raise ValueError(
                f"{self.name}: model.sample_rate must be an integer in [{lo}, {hi}] Hz, "
                f"got {self.sample_rate!r}"
            )
        if not 0 < self.hop_ms <= self.window_ms <= 1000:
            raise ValueError(
                f"{self.name}: model.hop_ms and model.window_ms must satisfy "
                f"0 < hop_ms <= window_ms <= 1000, got {self.hop_ms!r} and {self.window_ms!r}"
            )
        if len(self.subsample_channels) != 2 or any(
            not isinstance(c, int) or c < 1 for c in self.subsample_channels
        ):
            raise ValueError(
                f"{self.name}: model.subsample_channels must be two integers >= 1, "
                f"got {self.subsample_channels!r}"
            )
        for field in ("left_context", "right_context"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(
                    f"{self.name}: model.{field} must be None (unlimited) or an integer "
                    f">= 0, got {value!r}"
                )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"{self.name}: model.dropout must be in [0, 1), got {self.dropout!r}")
        if self.model_dim % self.num_heads:
            raise ValueError(
                f"{self.name}: model_dim={self.model_dim} is not divisible by "
                f"num_heads={self.num_heads}"
            )
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"{self.name}: conv_kernel must be odd, got {self.conv_kernel}")

    @property
    def ffn_dim(self) -> int:
        return self.model_dim * self.ffn_multiplier

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def subsampled_mels(self) -> int:
        """Mel bins after two stride-2 'SAME' convolutions: ``ceil(ceil(F/2)/2)``."""
        return math.ceil(math.ceil(self.num_mels / 2) / 2)

    @property
    def proj_in_dim(self) -> int:
        return self.subsampled_mels * self.subsample_channels[1]

    def replace(self, **changes) -> ConformerConfig:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- presets
USM_2B = ConformerConfig()

#: Dense float baselines of Table 3 (1B / 600M / 300M). The paper does not publish their
#: shapes; these keep everything but width and depth from the 2B model, and pick those
#: (by a search over widths in steps of 32 and depths 8-32) so that the parameter counts
#: give the paper's size ratios (50.2% / 33.5% / 18.9% of the 2B model).
USM_1B = USM_2B.replace(name="usm_1b", model_dim=1120, num_layers=30)
USM_600M = USM_2B.replace(name="usm_600m", model_dim=1088, num_layers=21)
USM_300M = USM_2B.replace(name="usm_300m", model_dim=832, num_layers=20)

CI = ConformerConfig(
    name="ci",
    sample_rate=16000,
    num_mels=40,
    subsample_channels=(16, 8),
    model_dim=64,
    num_layers=2,
    num_heads=4,
    ffn_multiplier=4,
    conv_kernel=5,
    left_context=None,
    right_context=None,
    vocab_size=32,
)

#: The reduced-scale reproduction on 2 CPU cores: about 2M parameters, at FSDD's native
#: 8 kHz (64 mel bins over 0-4 kHz, the paper's 32 ms / 10 ms framing). 18 channels in
#: the second convolution make the projection 16 x 18 = 288 wide, so that sub-channel
#: groups of 72, 48 and 24 inputs divide every compressible layer (144, 288, 576 inputs).
CPU = ConformerConfig(
    name="cpu",
    sample_rate=8000,
    num_mels=64,
    subsample_channels=(32, 18),
    model_dim=144,
    num_layers=4,
    num_heads=4,
    ffn_multiplier=4,
    conv_kernel=5,
    left_context=None,
    right_context=None,
    vocab_size=32,
)

#: AN4 (CMU census, 16 kHz read speech, 848 training utterances; ``an4`` preset): the
#: ``cpu`` encoder narrowed to 96 dims and 3 blocks (about 0.72M parameters) on the
#: paper's 16 kHz framing with 80 mel bins, and dropout 0.1 because 848 utterances
#: overfit. Its size and recipe are chosen on AN4's dev speakers by
#: ``scripts/an4_sweep.py``, whose rule takes the best dev WER whose three-seed table
#: fits 4 hours on 2 cores (``results/an4/README.md``).
AN4 = CPU.replace(
    name="an4", sample_rate=16000, num_mels=80, dropout=0.1, model_dim=96, num_layers=3
)

SMALL = ConformerConfig(
    name="small",
    sample_rate=16000,
    num_mels=80,
    subsample_channels=(128, 32),
    model_dim=256,
    num_layers=16,
    num_heads=4,
    ffn_multiplier=4,
    conv_kernel=5,
    left_context=None,
    right_context=None,
    vocab_size=256,
)


# --------------------------------------------------------------------------- training
# Names of TrainConfig.remat / ModelOptions.remat (usmlite_edu.speech.model.Encoder applies them).
REMAT_POLICIES = ("none", "block", "dots")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (USM-Lite section 4.2; presets scale the paper's numbers down).

    Attributes:
      steps: total optimizer steps (paper: 200k).
      batch_size: utterances per step (paper: 2,048).
      peak_lr: learning rate at the end of warm-up, before the multipliers.
      encoder_lr_mult / softmax_lr_mult: 0.5 / 2.0 (paper).
      encoder_warmup / softmax_warmup: warm-up steps, 5,000 / 1,500 (paper).
      clip_norm: global gradient-norm clipping.
      bucket_seconds: padded lengths of the batches (one compile each), increasing.
      vocab_size: requested word-piece vocabulary (the tokenizer may give fewer).
      checkpoint_every / log_every / eval_every: in steps (0 = only at the end).
      eval_batch_size: utterances per evaluation batch.
      compute_dtype: dense matmul dtype (None = float32, "bfloat16").
      schedule_offset: steps the learning-rate schedule has already run. Fine-tuning from a
        trained model sets it to the model's steps, so the schedule continues its decay
        instead of restarting the warm-up at the peak (which knocks a converged model off).
      rewarm_steps: with an offset, a short linear ramp to the continued rate, because the
        fresh Adam moments make the first updates full-size.
      max_nonfinite: consecutive skipped (non-finite) updates after which training stops
        with an error instead of going on (``optax.apply_if_finite`` skips each one).

    Regularisers, all off by default and never applied at evaluation (see
    :mod:`usmlite_edu.speech.augment`); the Conformer paper's recipe (Gulati et al. 2020, section
    3.1) is ``specaug_freq_masks=2, specaug_freq_width=27, specaug_time_masks=10,
    specaug_time_max_frac=0.05`` (for 80 mel bins):

      specaug_freq_masks / specaug_freq_width: SpecAugment frequency masks per utterance,
        each of width ``0 .. specaug_freq_width`` mel bins (Park et al. 2019).
      specaug_time_masks / specaug_time_max_frac: time masks per utterance (a fixed
        count), each at most ``specaug_time_max_frac`` of that utterance's frames wide
        (the adaptive masks of Park et al. 2020).
      speed_perturb: speed factors of the training set, one copy of each training
        utterance per factor, e.g. ``(0.9, 1.0, 1.1)`` (Ko et al. 2015); ``()`` keeps the
        audio as it is. Include 1.0 to keep the original copy.
      weight_noise_std: standard deviation of the Gaussian variational noise added to
        every kernel in the training forward pass, before prune-then-quantize
        (Graves 2011); 0 = none.
      weight_noise_start: first step (counted from 0) that gets weight noise.

    For models larger than memory allows (the ``usm_2b`` recipe on a mesh,
    :mod:`usmlite_edu.scale.mesh`):

      remat: rematerialisation of each Conformer block in the backward pass
        (``jax.checkpoint``): ``"none"`` keeps every activation; ``"block"`` keeps only
        each block's input and recomputes the rest; ``"dots"`` also keeps the outputs of
        matrix products without a batch dimension
        (``jax.checkpoint_policies.dots_with_no_batch_dims_saveable``). The same numbers
        either way; less memory for more compute.
      grad_accum: split each batch of ``batch_size`` into this many micro-batches, run
        them one after another and apply one update with the gradient of the whole batch
        (the per-token normalisation is over the whole batch, so the update is the
        full-batch one up to float summation order). Must divide ``batch_size``.
    """

    steps: int = 1000
    batch_size: int = 16
    peak_lr: float = 2e-3
    encoder_lr_mult: float = 0.5
    softmax_lr_mult: float = 2.0
    encoder_warmup: int = 100
    softmax_warmup: int = 30
    clip_norm: float = 5.0
    bucket_seconds: tuple[float, ...] = (2.0, 4.0, 8.0)
    vocab_size: int = 64
    checkpoint_every: int = 100
    log_every: int = 10
    eval_every: int = 0
    eval_batch_size: int = 32
    compute_dtype: str | None = None
    schedule_offset: int = 0
    rewarm_steps: int = 0
    max_nonfinite: int = 100
    specaug_freq_masks: int = 0
    specaug_freq_width: int = 27
    specaug_time_masks: int = 0
    specaug_time_max_frac: float = 0.05
    speed_perturb: tuple[float, ...] = ()
    weight_noise_std: float = 0.0
    weight_noise_start: int = 0
    remat: str = "none"
    grad_accum: int = 1

    def __post_init__(self):
        _check_finite(self, "train")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"train.remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
        if not isinstance(self.grad_accum, int) or self.grad_accum < 1:
            raise ValueError(f"train.grad_accum must be an integer >= 1, got {self.grad_accum!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"train.grad_accum={self.grad_accum} does not divide "
                f"train.batch_size={self.batch_size}; choose a divisor of the batch size"
            )
        for name in ("steps", "batch_size", "eval_batch_size", "vocab_size", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in (
            "checkpoint_every",
            "log_every",
            "eval_every",
            "schedule_offset",
            "rewarm_steps",
            "encoder_warmup",
            "softmax_warmup",
            "specaug_freq_masks",
            "specaug_freq_width",
            "specaug_time_masks",
            "weight_noise_start",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("peak_lr", "encoder_lr_mult", "softmax_lr_mult", "clip_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name} must be > 0, got {getattr(self, name)!r}")
        b = tuple(self.bucket_seconds)
        if not b or any(x <= 0 for x in b) or list(b) != sorted(set(b)):
            raise ValueError(f"train.bucket_seconds must be increasing positive lengths, got {b}")
        if b[-1] > MAX_BUCKET_SECONDS:
            raise ValueError(
                f"train.bucket_seconds: {b[-1]:g} s is longer than {MAX_BUCKET_SECONDS:g} s "
                "(one padded batch of that length must fit in memory); split long audio"
            )
        if self.compute_dtype not in (None, "float32", "bfloat16"):
            raise ValueError(
                f"train.compute_dtype must be None, 'float32' or 'bfloat16', "
                f"got {self.compute_dtype!r}"
            )
        if not 0 <= self.specaug_time_max_frac < 1:
            raise ValueError(
                f"train.specaug_time_max_frac must be in [0, 1), got {self.specaug_time_max_frac!r}"
            )
        # A mask count with a zero width would be a silent no-op: refuse it.
        if self.specaug_freq_masks and not self.specaug_freq_width:
            raise ValueError(
                f"train.specaug_freq_masks={self.specaug_freq_masks} needs "
                "train.specaug_freq_width >= 1, got 0"
            )
        if self.specaug_time_masks and not self.specaug_time_max_frac:
            raise ValueError(
                f"train.specaug_time_masks={self.specaug_time_masks} needs "
                "train.specaug_time_max_frac > 0, got 0"
            )
        sp = tuple(self.speed_perturb)
        if any(not (isinstance(s, (int, float)) and s > 0 and math.isfinite(s)) for s in sp):
            raise ValueError(f"train.speed_perturb factors must be positive, got {sp}")
        if len(set(sp)) != len(sp):
            raise ValueError(f"train.speed_perturb factors must differ, got {sp}")
        if not (self.weight_noise_std >= 0 and math.isfinite(self.weight_noise_std)):
            raise ValueError(f"train.weight_noise_std must be >= 0, got {self.weight_noise_std!r}")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- reproduction
@dataclasses.dataclass(frozen=True)
class ReproConfig:
    """How ``usmlite-edu reproduce`` scales Tables 1-3 down (see :mod:`usmlite_edu.training.reproduce`).

    Every row of the table is fine-tuned, as in the paper (section 2: compression during
    the ASR fine-tuning of the pre-trained USM; section 4.2: every model trains for the same
    200k steps): per seed, a float model is first trained from scratch for
    ``pretrain_steps`` (our stand-in for the pre-trained USM), and B0 and every QAT /
    pruning row fine-tune from it for ``finetune_steps``.

    Attributes:
      corpus: the corpus every row trains and evaluates on.
      pretrain_steps: training steps of the shared start of each seed, one per model size
        (B0's and B1-B3's); ``None``: the preset's ``train.steps``.
      finetune_steps: steps of every fine-tuned row (B0-B3 float, the E rows with
        Algorithm 1), all from their seed's start and with the same schedule.
      group_sizes: the sub-channel group sizes of E5-E7 (inputs per group).
      seeds: the seeds; every row runs every seed, and seed ``s`` of every row starts from
        seed ``s``'s pre-trained model, so rows pair by seed.
      heldout_speaker: FSDD speaker left out of training, evaluated as "unseen" (``None``:
        none, and no "unseen" split). With ``heldout_rotation`` it is the first seed's.
      heldout_rotation: more speakers to hold out, one per later seed: the seed at
        position ``i`` of ``seeds`` holds out ``(heldout_speaker, *heldout_rotation)[i %
        (1 + len(heldout_rotation))]``, so "unseen" pools several voices and "test" differs
        per seed (comparisons pair within a seed). Empty: every seed holds out
        ``heldout_speaker``. Ignored when ``heldout_speaker`` is ``None``.
      few_shot_fraction / few_shot_floor: ``T_p`` of the few-shot rows, as a fraction of
        fine-tuning (paper: 1k of 200k steps) with a floor in updates.
      vn_std: standard deviation of the Gaussian weight noise ("global variational
        noise", Graves 2011; ``train.weight_noise_std``) of rows V0 and V4 during their
        fine-tuning: absolute (not relative to the weights' scale), added to every kernel
        in the training forward pass. The paper suspects (section 5.4) that its int4 PTQ
        (E2) and int2 QAT without groups (E4) collapse because "we do not enable global
        variational noise (VN) during fine-tuning"; V0 / V2 / V4 are B0 / E2 / E4 with it
        on (the 2-bit Conformer paper fine-tunes with it). Must be finite and > 0.
    """

    corpus: str
    pretrain_steps: int | None
    finetune_steps: int
    group_sizes: tuple[int, int, int]
    seeds: tuple[int, ...] = (0, 1, 2)
    heldout_speaker: str | None = None
    heldout_rotation: tuple[str, ...] = ()
    few_shot_fraction: float = 1000 / 200_000
    few_shot_floor: int = 10
    vn_std: float = 0.01

    def __post_init__(self):
        _check_finite(self, "reproduce")
        if self.pretrain_steps is not None and self.pretrain_steps < 1:
            raise ValueError(f"reproduce.pretrain_steps must be >= 1, got {self.pretrain_steps}")
        if self.finetune_steps < 1:
            raise ValueError(f"reproduce.finetune_steps must be >= 1, got {self.finetune_steps}")
        if len(self.group_sizes) != 3 or any(g < 1 for g in self.group_sizes):
            raise ValueError(
                f"reproduce.group_sizes needs three positive sizes (E5-E7), got {self.group_sizes}"
            )
        if not self.seeds:
            raise ValueError("reproduce.seeds needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"reproduce.seeds must differ, got {self.seeds}")
        speakers = (self.heldout_speaker, *self.heldout_rotation)
        if self.heldout_speaker is not None and len(set(speakers)) != len(speakers):
            raise ValueError(
                f"reproduce.heldout_rotation {self.heldout_rotation} repeats a speaker "
                f"(heldout_speaker {self.heldout_speaker!r} is the first seed's)"
            )
        if not 0 < self.few_shot_fraction <= 1 or self.few_shot_floor < 1:
            raise ValueError(
                "reproduce.few_shot_fraction must be in (0, 1] and few_shot_floor >= 1"
            )
        if not (
            isinstance(self.vn_std, (int, float)) and math.isfinite(self.vn_std) and self.vn_std > 0
        ):
            raise ValueError(
                f"reproduce.vn_std (weight noise of rows V0 / V4) must be finite and > 0, "
                f"got {self.vn_std!r}"
            )

    @property
    def t_p(self) -> int:
        """``T_p`` of the few-shot rows E9, E11, E13 (mask updates)."""
        return max(math.ceil(self.few_shot_fraction * self.finetune_steps), self.few_shot_floor)

    def heldout_for(self, seed: int) -> str | None:
        """The speaker that ``seed`` (one of ``seeds``) holds out of training."""
        if self.heldout_speaker is None:
            return None
        speakers = (self.heldout_speaker, *self.heldout_rotation)
        return speakers[self.seeds.index(seed) % len(speakers)]

    def replace(self, **changes) -> ReproConfig:
        return dataclasses.replace(self, **changes)


def config_from_dict(cls, data: dict):
    """Rebuild a config dataclass from its JSON form (lists back to tuples), refusing keys
    the class does not have; the one reader of ``config.json``'s config sections."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; known: {sorted(fields)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
