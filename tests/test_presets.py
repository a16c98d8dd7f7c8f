"""The one preset registry and its validated overrides."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usmlite_edu.speech import configs, presets


def test_every_preset_names_its_model_and_recipe():
    assert list(presets.PRESETS)[:5] == ["ci", "cpu", "an4", "small", "usm_2b"]
    for name, p in presets.PRESETS.items():
        assert p.name == name and p.model.name == name
        assert isinstance(p.train, configs.TrainConfig)
    assert {n for n, p in presets.PRESETS.items() if p.reproduce} == {"ci", "cpu", "an4"}
    assert presets.get_preset("cpu").reproduce.heldout_speaker == "theo"


def test_an4_preset_is_16khz_with_the_small_corpus_regularisers():
    """AN4 at its own 16 kHz with 80 mel bins; SpecAugment, speed perturbation and dropout
    on; the largest bucket holds AN4's longest training utterance (6.4 s) slowed to 0.9;
    its table runs on AN4 with dev = held-out training speakers, no "unseen" split."""
    p = presets.get_preset("an4")
    assert (p.model.sample_rate, p.model.num_mels) == (16000, 80)
    assert p.model.dropout > 0 and p.train.specaug_freq_masks > 0 and p.train.specaug_time_masks > 0
    assert min(p.train.speed_perturb) < 1 < max(p.train.speed_perturb)
    assert p.train.bucket_seconds[-1] >= 6.4 / min(p.train.speed_perturb)
    assert p.reproduce.corpus == "an4" and p.reproduce.heldout_speaker is None
    assert len(p.reproduce.seeds) == 3


def test_unknown_preset_is_refused_with_the_known_ones():
    with pytest.raises(ValueError) as e:
        presets.get_preset("usm_9b")
    assert "usm_9b" in str(e.value) and all(n in str(e.value) for n in presets.PRESETS)


def test_overrides_reach_every_section_with_their_types():
    p = presets.get_preset("cpu").override(
        [
            "train.peak_lr=1e-3",
            "model.dropout=0.1",
            "train.bucket_seconds=2,4",
            "train.compute_dtype=bfloat16",
            "reproduce.finetune_steps=50",
            "reproduce.heldout_speaker=None",
        ]
    )
    assert p.train.peak_lr == 1e-3 and p.model.dropout == 0.1
    assert p.train.bucket_seconds == (2.0, 4.0) and p.train.compute_dtype == "bfloat16"
    assert p.reproduce.finetune_steps == 50 and p.reproduce.heldout_speaker is None
    assert p.reproduce.t_p == 10
    # a mapping works too, and the original preset is unchanged (frozen dataclasses)
    q = presets.get_preset("ci").override({"train.steps": 7})
    assert q.train.steps == 7 and presets.get_preset("ci").train.steps == 500


@pytest.mark.parametrize(
    "bad,says",
    [
        ("train.peak_lr=fast", "must be a number"),
        ("train.steps=1.5", "must be an integer"),
        ("train.nope=1", "known:"),
        ("optim.lr=1", "model.FIELD"),
        ("train.steps", "SECTION.FIELD=VALUE"),
        ("train.steps=0", "train.steps must be >= 1"),
        ("train.bucket_seconds=4,2", "increasing"),
        ("train.compute_dtype=float16", "compute_dtype"),
        ("model.num_heads=5", "not divisible by num_heads=5"),
        ("model.conv_kernel=4", "odd"),
        ("reproduce.group_sizes=8,4", "needs 3 values"),
        ("reproduce.vn_std=0", "reproduce.vn_std"),
        ("reproduce.vn_std=-0.01", "reproduce.vn_std"),
        ("reproduce.vn_std=nan", "reproduce.vn_std"),
        ("reproduce.vn_std=inf", "reproduce.vn_std"),
    ],
)
def test_bad_overrides_are_refused_naming_the_field(bad, says):
    with pytest.raises(ValueError) as e:
        presets.get_preset("ci").override([bad])
    assert says in str(e.value), str(e.value)


def test_a_preset_without_a_plan_refuses_reproduce_overrides():
    with pytest.raises(ValueError, match="no reproduce plan"):
        presets.get_preset("usm_2b").override(["reproduce.finetune_steps=5"])


@given(st.integers(1, 10**6), st.floats(1e-6, 1.0, allow_nan=False))
def test_override_round_trip(steps, lr):
    p = presets.get_preset("ci").override([f"train.steps={steps}", f"train.peak_lr={lr!r}"])
    assert p.train == dataclasses.replace(presets.get_preset("ci").train, steps=steps, peak_lr=lr)


def test_config_from_dict_round_trips_and_refuses_unknown_keys():
    d = dataclasses.asdict(configs.CPU)
    d["subsample_channels"] = list(d["subsample_channels"])  # as JSON gives it back
    assert configs.config_from_dict(configs.ConformerConfig, d) == configs.CPU
    with pytest.raises(ValueError, match="no field"):
        configs.config_from_dict(configs.TrainConfig, {"stepz": 3})


def test_vn_std_defaults_validates_and_overrides():
    rc = presets.get_preset("ci").reproduce
    assert (
        configs.ReproConfig(
            corpus="x", pretrain_steps=1, finetune_steps=1, group_sizes=(4, 2, 1)
        ).vn_std
        == 0.01
    )
    assert rc.vn_std > 0
    assert presets.get_preset("cpu").override(["reproduce.vn_std=0.02"]).reproduce.vn_std == 0.02
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reproduce.vn_std"):
            rc.replace(vn_std=bad)


def test_an_empty_value_gives_an_empty_tuple():
    # `--set reproduce.heldout_rotation=` (scripts/recipe_sweep.py holds out one speaker)
    for raw in ("", "()"):
        p = presets.apply_overrides(
            presets.get_preset("cpu"), [f"reproduce.heldout_rotation={raw}"]
        )
        assert p.reproduce.heldout_rotation == ()
    p = presets.apply_overrides(presets.get_preset("cpu"), ["train.speed_perturb=0.9,1.1"])
    assert p.train.speed_perturb == (0.9, 1.1)
