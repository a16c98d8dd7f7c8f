"""The one preset registry: a name gives a model, its training recipe and, where it has
one, its reproduction plan of Tables 1-3.

=============  ====================================  =========================================
preset         model                                 where it runs
=============  ====================================  =========================================
``ci``         64-dim, 2 blocks, 40 mel @ 16 kHz     minutes on a laptop; the test command
``cpu``        144-dim, 4 blocks, 64 mel @ 8 kHz     the reduced-scale reproduction, 2 cores
``an4``        96-dim, 3 blocks, 80 mel @ 16 kHz     AN4 (speaker-independent), 2 cores
``small``      256-dim, 16 blocks, 80 mel @ 16 kHz   LibriSpeech-100 on one GPU
``usm_2b``     the paper's 2B Conformer (sec. 4.2)   a TPU/GPU mesh
``usm_1b`` ..  Table 3's dense 1B / 600M / 300M      size accounting (``usmlite-edu sizes``)
=============  ====================================  =========================================

Any field can be overridden with ``section.field=value`` strings (the CLI's ``--set``):
``train.peak_lr=1e-3``, ``model.dropout=0.1``, ``reproduce.finetune_steps=50``,
``train.bucket_seconds=2,4``. Values are parsed as Python literals, checked against the
field's type, and the config's own validation runs before any work starts.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping

from usmlite_edu.speech import configs
from usmlite_edu.speech.configs import ConformerConfig, ReproConfig, TrainConfig

__all__ = ["Preset", "PRESETS", "get_preset", "model_config", "apply_overrides", "parse_override"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named recipe: model architecture, training settings, reproduction plan."""

    name: str
    model: ConformerConfig
    train: TrainConfig
    reproduce: ReproConfig | None = None

    def replace(self, **changes) -> Preset:
        return dataclasses.replace(self, **changes)

    def override(self, settings: Iterable[str] | Mapping[str, object] = ()) -> Preset:
        """This preset with ``section.field`` overrides applied (see :func:`apply_overrides`)."""
        return apply_overrides(self, settings)


_PAPER_TRAIN = TrainConfig(
    steps=200_000,
    batch_size=2048,
    peak_lr=1e-3,
    encoder_warmup=5000,
    softmax_warmup=1500,
    bucket_seconds=(5.0, 10.0, 20.0),
    vocab_size=16384,
    checkpoint_every=1000,
    log_every=100,
    compute_dtype="bfloat16",
    # Rematerialise each block: without it the 32-block step needs 105.86 GB of temporaries
    # per TPU v3 core (16 GiB), with it 8.25 GiB, as the compiler measured for batch 2,048
    # x 20 s on v3-128 (results/plan/usm_2b_v3_8x8_scan.txt).
    remat="block",
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "ci",
            configs.CI,
            TrainConfig(
                steps=500,
                batch_size=16,
                peak_lr=5e-3,
                encoder_warmup=60,
                softmax_warmup=20,
                bucket_seconds=(3.0,),
                vocab_size=48,
                checkpoint_every=100,
                log_every=10,
            ),
            # Two seeds (the fewest that exercise the paired statistics) and short runs:
            # the whole table runs inside the test suite (tests/test_reproduce.py).
            ReproConfig(
                "data_small",
                pretrain_steps=100,
                finetune_steps=20,
                group_sizes=(16, 8, 4),
                seeds=(0, 1),
                few_shot_floor=4,
            ),
        ),
        Preset(
            "cpu",
            configs.CPU,
            TrainConfig(
                steps=600,
                batch_size=32,
                peak_lr=2e-3,
                encoder_warmup=100,
                softmax_warmup=30,
                bucket_seconds=(2.0, 3.5, 5.0, 7.0),
                vocab_size=32,
                checkpoint_every=100,
                log_every=10,
            ),
            # Each of the three seeds holds out another speaker, so "unseen" pools three
            # voices instead of one; comparisons pair within a seed (usmlite_edu.training.reproduce).
            ReproConfig(
                "fsdd",
                pretrain_steps=None,
                finetune_steps=100,
                group_sizes=(72, 48, 24),
                heldout_speaker="theo",
                heldout_rotation=("jackson", "nicolas"),
                # About int2's quantization error on B0's widest kernels (std 0.042, int2
                # relative MSE 0.19: error std 0.018); not tuned (README, "Recipe").
                vn_std=0.02,
            ),
        ),
        Preset(
            "an4",
            configs.AN4,
            # scripts/an4_sweep.py chooses the size, buckets, peak_lr and steps on AN4's dev
            # speakers (results/an4/sweep.md); the regularisers are what ESPnet's and
            # icefall's small-corpus recipes use: SpecAugment (the Conformer paper's two
            # frequency masks of at most 27 of 80 bins; two time masks, since AN4's
            # utterances are 2.5 s long), speed perturbation 0.9 / 1.0 / 1.1 (one copy of
            # the training set each) and dropout 0.1 (configs.AN4).
            TrainConfig(
                steps=2000,
                batch_size=32,
                peak_lr=2e-3,
                encoder_warmup=300,
                softmax_warmup=100,
                # 6.4 s is AN4's longest training utterance (7.1 s at speed 0.9); five
                # buckets pad 18% of a step's audio where (4.0, 7.5) padded 40%
                bucket_seconds=(2.0, 3.0, 4.0, 5.5, 7.5),
                vocab_size=32,
                checkpoint_every=250,
                log_every=50,
                specaug_freq_masks=2,
                specaug_freq_width=27,
                specaug_time_masks=2,
                specaug_time_max_frac=0.05,
                speed_perturb=(0.9, 1.0, 1.1),
            ),
            # The sibling plan of ``cpu`` on AN4: dev is the committed list of held-out
            # training speakers (usmlite_edu.speech.corpora.AN4_DEV_SPEAKERS), test the
            # official ten speakers; no "unseen" split, since test already is unseen.
            ReproConfig(
                "an4",
                pretrain_steps=None,
                finetune_steps=300,
                # sizes that divide every compressible layer's input: 96, 384 and the
                # subsampler's 360 (80 mel bins / 4 x 18 channels), i.e. divisors of 24
                # (reproduce.check_plan refuses a plan that cannot build)
                group_sizes=(24, 12, 8),
                vn_std=0.02,
            ),
        ),
        Preset(
            "small",
            configs.SMALL,
            TrainConfig(
                steps=50_000,
                batch_size=64,
                peak_lr=1e-3,
                encoder_warmup=5000,
                softmax_warmup=1500,
                bucket_seconds=(5.0, 10.0, 17.5),
                vocab_size=256,
                checkpoint_every=1000,
                log_every=50,
                compute_dtype="bfloat16",
            ),
        ),
        Preset("usm_2b", configs.USM_2B, _PAPER_TRAIN),
        Preset("usm_1b", configs.USM_1B, _PAPER_TRAIN),
        Preset("usm_600m", configs.USM_600M, _PAPER_TRAIN),
        Preset("usm_300m", configs.USM_300M, _PAPER_TRAIN),
    )
}


def get_preset(name: str | Preset) -> Preset:
    """The preset called ``name``; an unknown name is refused with the list of known ones."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def model_config(name: str | ConformerConfig) -> ConformerConfig:
    """The model architecture of a preset (a config passes through)."""
    return name if isinstance(name, ConformerConfig) else get_preset(name).model


# --------------------------------------------------------------------------- overrides
_SECTIONS = {"model": ConformerConfig, "train": TrainConfig, "reproduce": ReproConfig}


def _coerce(value: object, hint: object, where: str) -> object:
    """``value`` as the type ``hint`` asks for, or ``ValueError`` naming ``where``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        # ``--set reproduce.heldout_rotation=`` (nothing after "=") is the empty tuple
        items = value if isinstance(value, (list, tuple)) else () if value == "" else (value,)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in items)
        if len(items) != len(args):
            raise ValueError(f"{where} needs {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(items, args))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where} must be True or False, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{where} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where} must be a string, got {value!r}")
    return value


def parse_override(text: str) -> tuple[str, str, object]:
    """``"train.peak_lr=1e-3"`` -> ``("train", "peak_lr", 0.001)`` (value not yet typed).

    The value is a Python literal (``1e-3``, ``None``, ``'bfloat16'``, ``(2, 4)``); a bare
    word is a string and ``a,b`` a tuple.
    """
    if "=" not in text:
        raise ValueError(f"override {text!r} is not SECTION.FIELD=VALUE, e.g. train.peak_lr=1e-3")
    key, raw = text.split("=", 1)
    section, _, field = key.strip().partition(".")
    if section not in _SECTIONS or not field:
        raise ValueError(
            f"override {text!r}: the key must be one of "
            f"{', '.join(s + '.FIELD' for s in _SECTIONS)}"
        )
    raw = raw.strip()
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if "," in raw:
            value = tuple(_literal_or_str(v) for v in raw.split(",") if v.strip())
        else:
            value = raw
    return section, field, value


def _literal_or_str(text: str) -> object:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def apply_overrides(preset: Preset, settings: Iterable[str] | Mapping[str, object] = ()) -> Preset:
    """``preset`` with each ``section.field=value`` applied, validated.

    ``settings`` is a list of ``"section.field=value"`` strings (the CLI's ``--set``) or a
    mapping ``{"section.field": value}``. An unknown section or field, a value of the
    wrong type, or one the config's own checks refuse raises ``ValueError`` naming it.
    """
    items = (
        list(settings.items())
        if isinstance(settings, Mapping)
        else [(f"{s}.{f}", v) for s, f, v in map(parse_override, settings)]
    )
    changes: dict[str, dict[str, object]] = {}
    for key, value in items:
        section, _, field = key.partition(".")
        if section not in _SECTIONS:
            raise ValueError(
                f"override {key!r}: unknown section {section!r}; use one of {', '.join(_SECTIONS)}"
            )
        cls = _SECTIONS[section]
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "name"]
        if field not in fields:
            raise ValueError(
                f"override {key!r}: {section} has no field {field!r}; known: {', '.join(fields)}"
            )
        changes.setdefault(section, {})[field] = _coerce(value, hints[field], key)
    out = preset
    for section, kw in changes.items():
        current = getattr(out, section)
        if current is None:
            raise ValueError(f"preset {preset.name!r} has no {section} plan to override")
        out = out.replace(**{section: dataclasses.replace(current, **kw)})
    return out
