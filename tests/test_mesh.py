"""Meshes and sharding (issue 13, part 1): the rules in-process, and the sharded train step
against the one-device step in a child process with 8 simulated CPU devices."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from usmlite_edu.scale import mesh
from usmlite_edu.speech import model, presets

ROOT = Path(__file__).resolve().parents[1]


def _child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this checkout first on PYTHONPATH, no inherited
    XLA_FLAGS (the child sets its own device count), then ``extra``."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    env.pop("XLA_FLAGS", None)
    return {**env, **extra}


def _child(argv: list[str], prefix: str, timeout: int = 900, **env_extra: str) -> str:
    """Run ``python argv...`` from the checkout with its own XLA_FLAGS (``env_extra`` or
    none inherited); fail with its stderr, else return the payload of the last stdout line
    starting with ``prefix``."""
    proc = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env=_child_env(**env_extra),
        cwd=ROOT, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(prefix)][-1]
    return line[len(prefix) :]


class FakeMesh:
    """Only what spec_for reads: the axis sizes."""

    def __init__(self, data=1, fsdp=1, tensor=1):
        self.shape = {"data": data, "fsdp": fsdp, "tensor": tensor}


# --------------------------------------------------------------------------- mesh specs
@pytest.mark.parametrize(
    "spec, n, shape",
    [
        ("data=2,fsdp=4,tensor=1", 8, (2, 4, 1)),
        ("fsdp=8", 8, (1, 8, 1)),
        (" fsdp = 4 , tensor=2", 8, (1, 4, 2)),
        ("tensor=2,data=1,fsdp=4", 8, (1, 4, 2)),
        (None, 8, (1, 8, 1)),
        ("", 1, (1, 1, 1)),
    ],
)
def test_parse_mesh_spec(spec, n, shape):
    assert mesh.parse_mesh_spec(spec, n) == shape


@pytest.mark.parametrize(
    "spec, n, names",
    [
        ("data=2,fsdp=4,model=1", 8, "'model=1'"),
        ("data=2,data=4", 8, "'data' given twice"),
        ("data=two,fsdp=4", 8, "'two'"),
        ("data=0,fsdp=8", 8, "'0'"),
        ("data=-2,fsdp=4", 8, "'-2'"),
        ("fsdp", 8, "'fsdp'"),
        ("data=2,fsdp=2", 8, "4 devices, but there are 8"),
        ("fsdp=8", 1, "8 devices, but there are 1"),
    ],
)
def test_parse_mesh_spec_refuses_bad_specs(spec, n, names):
    with pytest.raises(ValueError, match="mesh spec") as e:
        mesh.parse_mesh_spec(spec, n)
    assert repr(spec) in str(e.value) and names in str(e.value)


def test_default_mesh_is_every_device_on_fsdp():
    m = mesh.make_mesh()
    assert m.axis_names == mesh.AXES
    assert dict(m.shape) == {"data": 1, "fsdp": jax.device_count(), "tensor": 1}


# --------------------------------------------------------------------------- rules
def test_spec_for_uses_the_rules_and_falls_back_to_replication():
    m = FakeMesh(data=2, fsdp=4, tensor=2)
    assert mesh.spec_for(("embed", "mlp"), (64, 256), m) == P("fsdp", "tensor")
    assert mesh.spec_for(("batch", None), (16, 100), m) == P(("data", "fsdp"), None)
    # 4 rows: (data, fsdp) = 8 does not divide, data alone does
    assert mesh.spec_for(("batch", None), (4, 100), m) == P("data", None)
    assert mesh.spec_for(("batch",), (3,), m) == P(None)
    # the frontend's first conv has one input channel: whole on every device
    assert mesh.spec_for(("taps", "taps", "embed", "mlp"), (3, 3, 1, 16), m) == P(
        None, None, None, "tensor"
    )
    assert mesh.spec_for(("embed", "mlp"), (6, 3), m) == P(None, None)
    assert mesh.spec_for(("vector",), (64,), m) == P(None)
    # size-1 axes shard nothing and are left out
    assert mesh.spec_for(("embed", "mlp"), (64, 256), FakeMesh(fsdp=8)) == P("fsdp", None)


def test_param_specs_of_the_ci_model():
    cfg = presets.get_preset("ci").model
    params = model.split_model(model.abstract_model(cfg))[1]
    specs = mesh.param_specs(params, FakeMesh(data=1, fsdp=4, tensor=2), model.param_table(cfg))
    blk = specs["encoder"]["blocks"][0]
    assert blk["ffn1"]["dense1"]["kernel"] == P("fsdp", "tensor")  # (64, 256)
    assert blk["ffn1"]["dense2"]["kernel"] == P("tensor", "fsdp")  # (256, 64)
    assert blk["mhsa"]["out"]["kernel"] == P("tensor", "fsdp")
    assert blk["mhsa"]["u_bias"] == P("tensor", None)
    assert blk["ffn1"]["dense1"]["bias"] == P(None)
    assert blk["conv"]["depthwise"]["kernel"] == P(None, None, "tensor")  # (5, 1, 64)
    assert specs["softmax"]["kernel"] == P("fsdp", "tensor")
    assert specs["frontend"]["conv1"]["kernel"] == P(None, None, None, "tensor")


def test_param_specs_of_the_scan_layout_and_of_optimizer_state():
    """Stacked blocks keep their block's sharding behind a replicated ``layers`` axis; an
    Adam moment and an N:M mask get their kernel's spec (axes read from the parameters'
    metadata, through the model's table), a scalar mask is replicated."""
    cfg = presets.get_preset("ci").model
    table = model.param_table(cfg, "int4+2:4", scan_layers=True)
    fake = FakeMesh(data=1, fsdp=4, tensor=2)
    params = model.split_model(model.abstract_model(cfg, "int4+2:4", scan_layers=True))[1]
    specs = mesh.param_specs(params, fake, table)
    blk = specs["encoder"]["blocks"]
    assert blk["ffn1"]["dense1"]["kernel"] == P(None, "fsdp", "tensor")  # (2, 64, 256)
    assert blk["ffn1"]["dense2"]["kernel"] == P(None, "tensor", "fsdp")
    assert blk["mhsa"]["u_bias"] == P(None, "tensor", None)
    assert blk["ffn1"]["dense1"]["bias"] == P(None, None)
    state = {"mu": params, "masks": {"encoder": {"blocks": {"ffn1": {"norm": {"scale": True}}}}}}
    state_specs = mesh.tree_specs(state, fake, table)
    assert state_specs["mu"]["encoder"]["blocks"]["ffn1"]["dense2"]["kernel"] == P(
        None, "tensor", "fsdp"
    )
    assert state_specs["masks"]["encoder"]["blocks"]["ffn1"]["norm"]["scale"] == P()
    # a leaf that names no parameter is replicated, whatever its path says
    assert mesh.logical_axes(("other", "dense2", "kernel"), (64, 256), table) == (None, None)


def test_constrain_is_a_no_op_without_a_mesh():
    x = np.ones((4, 3, 2), np.float32)
    assert mesh.constrain(x, ("batch", None, None)) is x


# --------------------------------------------------------------------------- 8 devices
@pytest.mark.slow
@pytest.mark.parametrize("spec", ["float", "int4+2:4"])
def test_sharded_steps_match_one_device(spec):
    out = json.loads(_child([str(ROOT / "tests" / "mesh_equivalence.py"), spec], "RESULT "))
    assert out["devices"] == 8
    # Tolerances: the sharded step sums the same float32 terms in another order (per-shard
    # partial sums, then an all-reduce). Losses: a few ulps of a sum of ~1e3 terms, far
    # under rtol 1e-5. Parameters: Adam divides each gradient by its own RMS, so a weight
    # whose gradient is ~0 can move by up to the step's learning rate (~1e-4 in the first
    # warm-up steps) on either run; 1e-3 of the largest weight (~0.5 -> 5e-4) bounds that
    # and is still far below any real difference (measured: < 5e-5).
    atol = 1e-3 * out["max_abs_param"]
    for name, r in out["meshes"].items():
        np.testing.assert_allclose(r["losses"], out["ref_losses"], rtol=1e-5, err_msg=name)
        assert r["max_param_diff"] <= atol, (name, r["max_param_diff"], atol)
        assert r["masks_equal"], name
        assert r["has_masks"] == (spec != "float")
        assert not r["kernel_replicated"], (name, r)
        assert np.prod(r["kernel_shard_shape"]) < np.prod(r["kernel_shape"]), (name, r)
        if r["has_masks"]:
            assert r["mask_spec"] == r["kernel_spec"], (name, r)


_CONSTRAINT_CHILD = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax, jax.numpy as jnp
from usmlite_edu.scale import mesh
from usmlite_edu.speech import model, presets
g, params = model.split_model(model.abstract_model(presets.get_preset("ci").model))
x = jax.ShapeDtypeStruct((8, 100, 40), jnp.float32)
m = jax.ShapeDtypeStruct((8, 100), bool)
def n():
    jaxpr = jax.make_jaxpr(lambda p, x, m: model.forward(g, p, x, m))(params, x, m)
    return str(jaxpr).count("sharding_constraint")
before = n()
with mesh.use_mesh(mesh.make_mesh("data=2,fsdp=4")):
    inside = n()
print("COUNTS", before, inside)
"""


def test_activation_constraints_only_under_use_mesh():
    # Trace only (no compile): without a mesh the forward pass has no constraint at all
    # (the one-device computation is unchanged); under use_mesh (jax.set_mesh) the input,
    # the subsampler output, every block output and the logits carry one.
    before, inside = map(int, _child(["-c", _CONSTRAINT_CHILD], "COUNTS ", 300).split())
    n_layers = presets.get_preset("ci").model.num_layers
    assert before == 0
    assert inside == 3 + n_layers


# --------------------------------------------------------------------------- train --mesh
_FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


# `usmlite-edu train --mesh data=2,fsdp=4` over 8 devices (as two processes), its checkpoint
# resumed on one device, and a one-device checkpoint resumed on 8: tests/test_distributed.py.


def test_train_refuses_a_mesh_that_does_not_fit_before_loading_data(tmp_path):
    from usmlite_edu.training import train

    with pytest.raises(ValueError, match="mesh spec 'data=2,fsdp=4'.*8 devices.*device_count"):
        train.train("ci", "data_small", str(tmp_path / "nodata"), tmp_path / "r",
                    mesh_spec="data=2,fsdp=4")  # fmt: skip


# --------------------------------------------------------------------------- plan
_PLAN_CHILD = """
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
from usmlite_edu.training import plan
out = {}
for name, kw in {
    "fsdp": dict(mesh_spec="fsdp=8"),
    "data": dict(mesh_spec="data=8"),
    "fsdp_block": dict(mesh_spec="fsdp=8", remat="block"),
    "fsdp_accum2": dict(mesh_spec="fsdp=8", grad_accum=2),
}.items():
    pl = plan.plan_memory("ci", "int4+2:4", global_batch=16, seconds=3.0, **kw)
    out[name] = dict(arg=pl.argument_bytes, temp=pl.temp_bytes, peak=pl.peak_bytes,
                     err=pl.error, params=pl.parameters, text=plan.format_plan(pl))
print("PLANS " + json.dumps(out))
"""


@pytest.mark.slow
def test_plan_on_8_simulated_devices_shows_what_sharding_remat_and_accumulation_save():
    plans = json.loads(_child(["-c", _PLAN_CHILD], "PLANS "))
    assert all(p["err"] is None and p["peak"] > 0 for p in plans.values()), plans
    # FSDP keeps 1/8 of each sharded parameter, its Adam moments and masks per device;
    # data parallelism keeps all of them on every device.
    assert plans["fsdp"]["arg"] < 0.5 * plans["data"]["arg"]
    # Two micro-batches: the activations of half the batch at a time.
    assert plans["fsdp_accum2"]["temp"] < 0.8 * plans["fsdp"]["temp"]
    # Rematerialisation changes what the backward pass keeps, never what is stored: the
    # same arguments. (Its saving is not asserted here: at the ci model's size the log-mel
    # frontend's spectrogram, not the blocks' activations, dominates the temporaries, and
    # the CPU compiler showed no difference; the usm_2b plans in results/plan/README.md show it.)
    assert plans["fsdp_block"]["arg"] == plans["fsdp"]["arg"]
    assert "figures from the CPU compiler" in plans["fsdp"]["text"]


def test_plan_for_a_tpu_topology_without_libtpu_says_what_to_install(capsys):
    try:
        import libtpu  # noqa: F401

        pytest.skip("libtpu is installed")
    except ImportError:
        pass
    from usmlite_edu.cli import main

    assert main(["plan", "--preset", "ci", "--topology", "v3:2x2"]) == 2
    err = capsys.readouterr().err
    assert "needs the libtpu package" in err and "usmlite-edu[tpu]" in err
