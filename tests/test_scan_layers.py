"""The scan layout (``ModelOptions.scan_layers``) against the loop layout.

The same parameters, converted with :func:`usmlite_edu.speech.model.stack_blocks`, must give
the same logits (to float tolerance) in both layouts: for the committed Linen-era B0
checkpoint on real speech, and for every compressed path on a random CI model (int8,
int4, int2 with sub-channels, N:M, joint int4 + 2:4, LSQ, compressed softmax and
convolutions). Gradients agree too, with and without per-block remat, and the masks and
LSQ steps computed on a stacked tree are the stacks of the loop layout's.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from usmlite_edu.core.specs import as_spec
from usmlite_edu.scale import mesh
from usmlite_edu.speech import configs, frontend
from usmlite_edu.speech import linen_migration as LM
from usmlite_edu.speech import model as M
from usmlite_edu.speech.configs import ConformerConfig
from usmlite_edu.speech.corpora import load_corpus

RUN = Path(__file__).resolve().parent / "golden" / "b0_linen"
REL_TOL = 1e-5  # max |scan - loop| relative to the largest |logit|


def _close(a, b, tol=REL_TOL) -> float:
    diff = float(jnp.max(jnp.abs(a - b)))
    assert diff <= tol * float(jnp.max(jnp.abs(b))), (diff, float(jnp.max(jnp.abs(b))))
    return diff


def _inputs(cfg: ConformerConfig):
    feats = jax.random.normal(jax.random.key(0), (2, 41, cfg.num_mels))
    mask = jnp.arange(41)[None] < jnp.array([41, 26])[:, None]
    return feats, mask


def test_converter_round_trip_and_init():
    cfg = configs.CI
    loop = M.init_params(cfg, "int4", seed=3)
    scan = M.init_params(cfg, "int4", seed=3, scan_layers=True)
    assert not M.is_stacked(loop) and M.is_stacked(scan)
    # the scan layout is built from the same RNG draws: its init is the stacked loop init
    want = M.stack_blocks(loop)
    assert jax.tree.structure(scan) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, scan, want)
    k = scan["encoder"]["blocks"]["ffn1"]["dense1"]["kernel"]
    assert k.shape == (cfg.num_layers, cfg.model_dim, cfg.ffn_dim)
    np.testing.assert_array_equal(k[1], loop["encoder"]["blocks"][1]["ffn1"]["dense1"]["kernel"])
    back = M.unstack_blocks(scan)
    assert jax.tree.structure(back) == jax.tree.structure(loop)
    jax.tree.map(np.testing.assert_array_equal, back, loop)
    # Orbax-style string keys are accepted; converting a converted tree is a no-op
    strings = {
        **loop,
        "encoder": {"blocks": {str(i): b for i, b in loop["encoder"]["blocks"].items()}},
    }
    assert jax.tree.structure(M.stack_blocks(strings)) == jax.tree.structure(scan)
    jax.tree.map(np.testing.assert_array_equal, M.stack_blocks(scan), scan)
    jax.tree.map(np.testing.assert_array_equal, M.unstack_blocks(loop), loop)


@pytest.mark.parametrize(
    "spec, options",
    [
        ("float", {}),
        ("int8", {}),
        ("int4", {}),
        ("int2/g4", {}),
        ("2:4", {}),
        ("int4+2:4", {}),
        ("int4/lsq", {}),
        ("int4/lsq+2:4", {}),
        ("int8", {"compress_softmax": True, "compress_convs": True}),
    ],
)
def test_scan_matches_loop_on_every_compressed_path(spec, options):
    cfg = configs.CI
    feats, mask = _inputs(cfg)
    params = M.init_params(cfg, spec, seed=1, **options)
    masks = M.one_shot_masks(params, spec, cfg, **options)
    s_params = M.init_params(cfg, spec, seed=1, scan_layers=True, **options)
    s_masks = M.one_shot_masks(s_params, spec, cfg, scan_layers=True, **options)
    if masks is not None:  # N:M over the input axis of each stacked kernel (Eq. 3)
        want = M.stack_blocks(masks)
        jax.tree.map(np.testing.assert_array_equal, s_masks, want)
        assert int(jnp.sum(~s_masks["encoder"]["blocks"]["ffn1"]["dense1"]["kernel"])) > 0
    jax.tree.map(np.testing.assert_array_equal, s_params, M.stack_blocks(params))
    out, omask = M.forward(
        M.model_graph(cfg, spec, **options), M.apply_masks(params, masks), feats, mask
    )
    s_graph = M.model_graph(cfg, spec, scan_layers=True, **options)
    s_out, s_omask = jax.jit(M.forward)(s_graph, M.apply_masks(s_params, s_masks), feats, mask)
    np.testing.assert_array_equal(omask, s_omask)
    diff = _close(s_out, out)
    print(f"CI, spec {spec} {options}: max |scan - loop| = {diff:.3g}")


@pytest.mark.parametrize("remat", ["none", "block"])
def test_scan_gradients_match_loop(remat):
    cfg = configs.CI
    feats, mask = _inputs(cfg)
    params = M.init_params(cfg, "int4", seed=2)

    def loss(graphdef, p):
        out, om = M.forward(graphdef, p, feats, mask)
        return jnp.sum(jnp.where(om[..., None], out, 0.0) ** 2)

    g_loop = jax.grad(loss, argnums=1)(M.model_graph(cfg, "int4", remat=remat), params)
    g_scan = jax.jit(jax.grad(loss, argnums=1), static_argnums=0)(
        M.model_graph(cfg, "int4", remat=remat, scan_layers=True), M.stack_blocks(params)
    )
    # one absolute tolerance for all leaves: some leaves' true gradient is zero (a bias
    # in front of a LayerNorm) and what both layouts give there is rounding noise
    want = jax.tree.leaves(M.stack_blocks(g_loop))
    got = jax.tree.leaves(g_scan)
    scale = max(float(jnp.max(jnp.abs(a))) for a in want)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale)


def test_dropout_runs_in_the_scan_layout():
    cfg = configs.CI.replace(dropout=0.1) if hasattr(configs.CI, "replace") else None
    if cfg is None:
        import dataclasses

        cfg = dataclasses.replace(configs.CI, dropout=0.1)
    feats, mask = _inputs(cfg)
    graphdef = M.model_graph(cfg, scan_layers=True)
    params = M.init_params(cfg, scan_layers=True)
    a, _ = M.forward(
        graphdef, params, feats, mask, deterministic=False, dropout_key=jax.random.key(0)
    )
    b, _ = M.forward(
        graphdef, params, feats, mask, deterministic=False, dropout_key=jax.random.key(0)
    )
    c, _ = M.forward(
        graphdef, params, feats, mask, deterministic=False, dropout_key=jax.random.key(1)
    )
    e, _ = M.forward(graphdef, params, feats, mask)
    np.testing.assert_array_equal(a, b)  # deterministic given the key
    assert float(jnp.max(jnp.abs(a - c))) > 0 and float(jnp.max(jnp.abs(a - e))) > 0


def test_stacked_parameters_carry_the_layers_axis():
    cfg = configs.CI
    m = M.abstract_model(cfg, "int4", scan_layers=True)
    table = M.param_table(cfg, "int4", scan_layers=True)
    assert [r.name for r in table if r.compressible] == [r.name for r in table if r.role == "dense"]
    assert len(table) == len(jax.tree.leaves(M.split_model(m)[1]))
    seen = 0
    for path, v in nnx.iter_graph(m):
        if not isinstance(v, nnx.Param):
            continue
        axes = v.get_metadata()["out_sharding"]
        assert len(axes) == len(v.shape), (path, axes, v.shape)
        # the metadata declared at creation agrees with the mesh's rules for that path
        assert tuple(axes) == mesh.logical_axes(path, v.shape, table), (path, axes)
        if path[:2] == ("encoder", "blocks"):
            assert axes[0] == M.LAYERS_AXIS and v.shape[0] == cfg.num_layers
            seen += 1
    assert seen > 20
    devices = np.asarray(jax.devices() * 1)[:1]
    specs = mesh.param_specs(M.split_model(m)[1], mesh.make_mesh(None, list(devices)), table)
    assert specs["encoder"]["blocks"]["ffn1"]["dense1"]["kernel"] == jax.sharding.PartitionSpec(
        None, None, None
    )


def test_scan_refuses_a_spec_map():
    from usmlite_edu.core.specs import SpecMap

    with pytest.raises(ValueError, match="loop layout"):
        M.check_spec(
            configs.CI,
            M.ModelOptions(
                spec=SpecMap(((r"encoder/blocks/0/.*", "int4"),), "int8"), scan_layers=True
            ),
        )


@pytest.fixture(scope="module")
def b0():
    import orbax.checkpoint as ocp

    if not (RUN / "params").is_dir():
        pytest.skip(f"no committed B0 checkpoint at {RUN}")
    mc = dict(json.loads((RUN / "config.json").read_text())["model_config"])
    cfg = ConformerConfig(**{**mc, "subsample_channels": tuple(mc["subsample_channels"])})
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore((RUN / "params").absolute())
    return cfg, LM.params_from_checkpoint(tree, cfg)


@pytest.mark.parametrize("spec", ["float", "int8", "int4", "int2/g4", "int4+2:4"])
def test_b0_checkpoint_scan_matches_loop(b0, spec):
    cfg, params = b0
    split = load_corpus("data_small", None, "test", sample_rate=cfg.sample_rate)
    waves = [u.load(cfg.sample_rate) for u in split.utterances[:4]]
    wav = np.zeros((len(waves), max(len(w) for w in waves)), np.float32)
    for i, w in enumerate(waves):
        wav[i, : len(w)] = w
    lengths = jnp.asarray([len(w) for w in waves])
    feats, mask = frontend.log_mel(jnp.asarray(wav), lengths, frontend.LogMelConfig.from_model(cfg))
    feats = frontend.normalize(feats, mask)
    masks = M.one_shot_masks(params, spec, cfg)
    out, om = jax.jit(M.forward)(
        M.model_graph(cfg, spec), M.apply_masks(params, masks), feats, mask
    )
    s_params = M.apply_masks(
        M.stack_blocks(params), M.one_shot_masks(M.stack_blocks(params), spec, cfg)
    )
    s_out, s_om = jax.jit(M.forward)(
        M.model_graph(cfg, spec, scan_layers=True), s_params, feats, mask
    )
    np.testing.assert_array_equal(om, s_om)
    diff = _close(s_out, out)
    np.testing.assert_array_equal(np.asarray(s_out).argmax(-1), np.asarray(out).argmax(-1))
    print(f"B0 {spec}: max |scan - loop| = {diff:.3g}")
    assert as_spec(spec)  # the spec string parses


@pytest.mark.parametrize("spec", ["int4+2:4", "int4/lsq"])
def test_training_steps_match_in_both_layouts(spec):
    """Two optimizer steps of the trainer (Algorithm 1: masks in the optimizer state, LSQ
    steps) in the scan layout give the stacked loop-layout results: same losses, same
    parameters and masks to float tolerance, with per-block remat in the scan."""
    from usmlite_edu.core import sparsity
    from usmlite_edu.course.mesh_tour import synthetic_batch
    from usmlite_edu.speech import presets
    from usmlite_edu.training import train

    p = presets.get_preset("ci")
    loop = train.Trainer(p.model, spec, p.train)
    scan = train.Trainer(p.model, spec, p.train.replace(remat="block"), scan_layers=True)
    batch, key = synthetic_batch(), jax.random.key(0)
    params = loop.init_params(0)
    s_params = scan.init_params(0)
    jax.tree.map(np.testing.assert_array_equal, s_params, M.stack_blocks(params))
    state, s_state = loop.setup_optimizer(params), scan.setup_optimizer(s_params)
    for i in range(2):
        params, state, loss, _ = loop.step(params, state, batch, key, i)
        s_params, s_state, s_loss, _ = scan.step(s_params, s_state, batch, key, i)
        np.testing.assert_allclose(float(s_loss), float(loss), rtol=1e-5)
    want = M.stack_blocks(params)
    scale = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(want))
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(s_params), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * scale)
    masks = sparsity.masks_from_state(state)
    if masks is not None:
        jax.tree.map(
            np.testing.assert_array_equal, sparsity.masks_from_state(s_state), M.stack_blocks(masks)
        )
