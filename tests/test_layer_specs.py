"""Per-layer specs (usmlite_edu.core.specs): the map, the model it builds, its masks,
sizes, training and the command line."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from tiny_model import TINY, TINY_CFG

from usmlite_edu import cli
from usmlite_edu.core import compress, sizes, sparsity
from usmlite_edu.core.specs import SpecMap
from usmlite_edu.speech import linen_migration, model
from usmlite_edu.speech.model import compressible_layers, layer_table
from usmlite_edu.speech.model import resolve_specs as resolve
from usmlite_edu.speech.presets import get_preset
from usmlite_edu.training import train

CFG = get_preset("ci").model
MAP = SpecMap(
    (("encoder/blocks/0/ffn1/.*", "int2/gs8"), (r"encoder/blocks/\d+/mhsa/.*", "int8+1:4")),
    "int4+2:4",
)


def _specs_of(m) -> dict[str, str]:
    return {
        "/".join(map(str, p)): str(n.spec)
        for p, n in nnx.iter_graph(m)
        if isinstance(n, model.QDense)
    }


# ---------------------------------------------------------------------------- the map
def test_name_round_trips_and_first_rule_wins(tmp_path):
    assert compress.as_spec(str(MAP)) == MAP and hash(compress.as_spec(str(MAP))) == hash(MAP)
    assert SpecMap.load(MAP.save(tmp_path / "m.json")) == MAP
    assert str(MAP.spec_for("encoder/blocks/0/ffn1/dense2/kernel")) == "int2/gs8"
    assert str(MAP.spec_for("encoder/blocks/1/mhsa/query")) == "int8+1:4"
    assert str(MAP.spec_for("encoder/blocks/1/ffn1/dense1")) == "int4+2:4"
    first = SpecMap((("encoder/.*", "int8"), ("encoder/blocks/0/.*", "int2")), "float")
    assert str(first.spec_for("encoder/blocks/0/ffn1/dense1")) == "int8"
    exact = SpecMap.from_assignment({"encoder/blocks/0/ffn1/dense1/kernel": "int2"}, "int4")
    assert str(exact.spec_for("encoder/blocks/0/ffn1/dense1")) == "int2"
    assert str(exact.spec_for("encoder/blocks/0/ffn1/dense2")) == "int4"


@pytest.mark.parametrize(
    "rules, default, says",
    [
        ((("encoder/(", "int4"),), "float", "not a regular expression"),
        ((("encoder/.*", "int9"),), "float", "encoder/"),
        ((("encoder/.*", "int4/lsq"),), "float", "lsq is not supported per layer"),
        ((("encoder/.*", "2:4/fs10"),), "1:4", "share one mask schedule"),
        ((), "int3/asym/g0", "default"),
    ],
)
def test_bad_maps_are_refused(rules, default, says):
    with pytest.raises(ValueError, match=says):
        SpecMap(rules, default)


def test_a_rule_matching_nothing_or_a_shape_it_cannot_take_is_refused():
    with pytest.raises(ValueError, match="matches no compressible layer"):
        resolve(SpecMap((("encoder/blocks/9/.*", "int8"),), "float"), CFG)
    # groups of 48 divide no input width of the ci model (64, 256)
    with pytest.raises(ValueError, match="group size 48 does not divide"):
        model.build_model(CFG, SpecMap((("encoder/blocks/0/ffn1/dense1", "int2/gs48"),), "int8"))


@pytest.mark.parametrize(
    "text, says",
    [("{", "not valid JSON"), ('{"default": "int4", "rules": {}}', "expected an object")],
)
def test_bad_files_name_themselves(tmp_path, text, says):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=f"{p}.*{says}|{says}"):
        SpecMap.load(p)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        SpecMap.load(tmp_path / "nope.json")


# ---------------------------------------------------------------------------- the model
def test_each_layer_gets_its_spec_and_a_uniform_map_equals_one_spec():
    got = _specs_of(model.build_model(CFG, MAP))
    want = {n: str(MAP.spec_for(n)).split("+")[0] for n in compressible_layers(CFG)}
    assert got == want  # the quantizer part; N:M lives in the masks
    feats = jax.random.normal(jax.random.key(1), (2, 40, CFG.num_mels))
    mask = jnp.ones((2, 40), bool)
    for spec in ("int4", "int2/gs8"):
        a = model.build_model(CFG, spec, seed=3)(feats, mask)[0]
        b = model.build_model(CFG, SpecMap((), spec), seed=3)(feats, mask)[0]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_masks_follow_each_layers_pattern():
    params = model.init_params(CFG, "float", seed=0)
    masks = model.one_shot_masks(params, MAP, CFG)
    for name in compressible_layers(CFG):
        m = np.asarray(model.weight_at(masks, name + "/kernel"))
        assert m.mean() == pytest.approx(MAP.spec_for(name).density), name
    assert model.one_shot_masks(params, SpecMap((), "int4"), CFG) is None


def test_nm_masked_with_patterns_keeps_each_leafs_own_n_m():
    params = {"a": jnp.arange(32.0).reshape(8, 4), "b": jnp.ones((8, 4)), "c": jnp.ones(3)}
    where = {"a": sparsity.Pattern(1, 4), "b": sparsity.Pattern(2, 4), "c": False}
    tx = sparsity.nm_masked(optax.sgd(0.1), None, None, where=where)
    state = tx.init(params)
    masks = sparsity.masks_from_state(state)
    assert float(masks["a"].mean()) == 0.25 and float(masks["b"].mean()) == 0.5
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert float(jnp.abs(updates["a"]).sum()) == pytest.approx(0.1 * 8)  # pruned: no update
    with pytest.raises(ValueError, match="Pattern"):
        sparsity.nm_masked(optax.sgd(0.1), None, None)


# ---------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("spec", ["int4+2:4", "int2/gs8", "1:4", "int8"])
def test_a_uniform_map_has_the_specs_size(spec):
    m = SpecMap((), spec)
    assert sizes.model_size(m, CFG).total == sizes.model_size(spec, CFG).total
    assert sizes.size_ratio(m, CFG, "paper") == pytest.approx(sizes.size_ratio(spec, CFG, "paper"))


def test_per_layer_sizes_add_up():
    rows = layer_table(MAP, CFG)
    assert len(rows) == len(compressible_layers(CFG))
    floats = sizes.model_size("float", CFG)
    dense_float = sum(32.0 * np.prod(r["shape"]) for r in rows)
    total = sizes.model_size(MAP, CFG).total
    assert total == pytest.approx(sum(r["exact_bits"] for r in rows) + floats.total - dense_float)
    # the paper's estimate: size-weighted mean of the layers' own
    w = np.array([np.prod(r["shape"]) for r in rows], float)
    paper = np.array([r["paper_percent"] for r in rows])
    assert sizes.size_ratio(MAP, CFG, "paper") == pytest.approx(float(w @ paper / w.sum()))
    assert paper.min() < sizes.size_ratio(MAP, CFG, "paper") < paper.max()


# ---------------------------------------------------------------------------- training
@pytest.mark.slow
def test_train_resume_and_eval_under_a_map(tmp_path, capsys):
    smap = SpecMap((("encoder/blocks/0/mhsa/.*", "int8"),), "int4+2:4")
    path = smap.save(tmp_path / "map.json")
    kw = dict(
        steps=6,
        spec=smap,
        eval_splits=(),
        overrides={**TINY, "train.checkpoint_every": 3, "train.batch_size": 8},
    )
    train.train("ci", "data_small", None, tmp_path / "full", **kw)
    train.train("ci", "data_small", None, tmp_path / "cut", stop_after=4, **kw)
    train.train("ci", "data_small", None, tmp_path / "cut", **kw)
    for run in ("full", "cut"):
        assert SpecMap.load(tmp_path / run / "spec_map.json") == smap
        assert (
            compress.as_spec(json.loads((tmp_path / run / "config.json").read_text())["spec"])
            == smap
        )
    from usmlite_edu.speech import runs

    a = jax.tree.leaves(runs.load_params(tmp_path / "full" / "params"))
    b = jax.tree.leaves(runs.load_params(tmp_path / "cut" / "params"))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    masks = runs.load_params(tmp_path / "full" / "masks")
    cfg = get_preset("ci").model.replace(**TINY_CFG)
    for name in compressible_layers(cfg):
        m = np.asarray(
            model.weight_at(linen_migration.params_from_checkpoint(masks), name + "/kernel")
        )
        if "blocks/0/mhsa" in name:  # int8: no mask (a scalar True)
            assert m.ndim == 0 and m, name
        else:
            assert m.ndim == 2 and m.mean() == 0.5, name
    capsys.readouterr()
    args = [
        "eval",
        "--checkpoint",
        str(tmp_path / "full"),
        "--corpus",
        "data_small",
        "--split",
        "dev",
    ]
    assert cli.main(args) == 0 and "spec map:" in capsys.readouterr().out
    assert cli.main([*args, "--spec-map", str(path)]) == 0
    assert cli.main([*args, "--spec-map", str(path), "--spec", "int4"]) == 2
    assert "not both" in capsys.readouterr().err


def test_sizes_command_lists_layers_and_sizes_a_map(tmp_path, capsys):
    path = MAP.save(tmp_path / "m.json")
    assert cli.main(["sizes", "--model", "ci", "--layers"]) == 0
    assert capsys.readouterr().out.split() == compressible_layers(CFG)
    assert cli.main(["sizes", "--model", "ci", "--spec-map", str(path)]) == 0
    out = capsys.readouterr().out
    assert "int2/gs8" in out and f"paper {sizes.size_ratio(MAP, CFG, 'paper'):.2f}%" in out


def test_a_uniform_map_trains_exactly_as_its_spec(tmp_path):
    """Same seed, same data: a map giving every layer ``int4+2:4`` is the uniform run."""
    from usmlite_edu.speech import runs

    kw = dict(
        steps=3, eval_splits=(), overrides={**TINY, "train.batch_size": 8, "train.log_every": 1}
    )
    train.train("ci", "data_small", None, tmp_path / "a", spec="int4+2:4", **kw)
    train.train("ci", "data_small", None, tmp_path / "b", spec=SpecMap((), "int4+2:4"), **kw)
    for x, y in zip(
        jax.tree.leaves(runs.load_params(tmp_path / "a" / "params")),
        jax.tree.leaves(runs.load_params(tmp_path / "b" / "params")),
    ):
        np.testing.assert_array_equal(x, y)
