"""Several processes, one run (issue 13, item 3): the data split between processes and the
launch checks in-process; then `usmlite-edu train` as two `jax.distributed` processes on
localhost (gloo CPU collectives, 4 simulated devices each, one mesh of 8) against the
one-process, one-device run, and checkpoints moved between 1 device, 8 devices in one
process and 8 devices in two processes."""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from usmlite_edu.scale import distributed
from usmlite_edu.speech import batching, runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_mesh import _FAST_XLA, _child_env  # noqa: E402

# One worker runs this file: the one-device reference run is made once for both
# subprocess tests, and two pairs of processes never compete for the cores.
pytestmark = pytest.mark.xdist_group("distributed")


# --------------------------------------------------------------------------- in-process
def _dataset(n: int = 40) -> batching.Dataset:
    rng = np.random.default_rng(1)
    examples = [
        batching.Example(
            f"u{i}",
            "x",
            rng.standard_normal(int(rng.integers(50, 100))).astype(np.float32),
            np.arange(1, 2 + i % 3, dtype=np.int32),
            0,
        )  # fmt: skip
        for i in range(n)
    ]
    return batching.Dataset("toy", examples, (100,), (8,), [], 16000)


@pytest.mark.parametrize("parts", [[(0, 8)], [(0, 4), (4, 8)], [(0, 2), (2, 4), (4, 6), (6, 8)]])
def test_process_rows_together_are_the_one_process_batches(parts):
    # Each process draws the same order and builds only its rows: concatenated, they are
    # exactly the one-process batches, across an epoch boundary and after a resume.
    ds = _dataset()
    whole = batching.BatchStream(ds, 8, seed=3, position=(0, 3))
    shards = [batching.BatchStream(ds, 8, seed=3, position=(0, 3), rows=r) for r in parts]
    for _ in range(2 * whole.batches_per_epoch):
        ref = next(whole)
        got = [next(s) for s in shards]
        for field, a in zip(batching.Batch._fields, ref, strict=True):
            b = np.concatenate([getattr(g, field) for g in got])
            np.testing.assert_array_equal(a, b, err_msg=field)
        assert {s.position for s in shards} == {whole.position}


def test_batch_stream_refuses_rows_outside_the_batch():
    with pytest.raises(ValueError, match=r"rows \(4, 12\).*batch of 8"):
        batching.BatchStream(_dataset(), 8, seed=0, rows=(4, 12))


def test_one_process_reads_every_row():
    from usmlite_edu.scale import mesh

    m = mesh.make_mesh("", jax.devices()[:1])
    assert mesh.process_rows(m, 16) == (0, 16)
    b = {"x": np.arange(16.0).reshape(8, 2)}
    g = mesh.global_batch(b, m, 8)
    np.testing.assert_array_equal(np.asarray(g["x"]), b["x"])


@pytest.mark.parametrize(
    "kw, names",
    [
        (dict(coordinator="localhost:1234"), "needs all of --coordinator"),
        (dict(coordinator="localhost", num_processes=2, process_id=0), "'localhost' is not"),
        (dict(coordinator="h:1", num_processes=2, process_id=2), "--process-id 2 must be in 0..1"),
        (dict(coordinator="h:1", num_processes=0, process_id=0), "--num-processes 0"),
        (dict(coordinator="h:1", auto=True), "--distributed auto reads"),
    ],
)
def test_initialize_refuses_an_incomplete_launch(kw, names):
    with pytest.raises(ValueError, match=names):
        distributed.initialize(**kw)


def test_initialize_without_a_launch_does_nothing():
    assert distributed.initialize() is False


# --------------------------------------------------------------------------- processes
_COMMON = [
    "train", "--preset", "ci", "--set", "model.num_layers=1",
    "--set", "train.checkpoint_every=2", "--set", "train.log_every=1", "--steps", "4",
]  # fmt: skip


def _env(devices: int) -> dict[str, str]:
    return _child_env(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {_FAST_XLA}",
        USMLITE_NO_PROGRESS="1",
    )


def _one(out: Path, devices: int = 1, extra: tuple[str, ...] = ()) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "usmlite_edu", *_COMMON, "--out", str(out), *extra],
        capture_output=True, text=True, env=_env(devices), cwd=ROOT, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout


def _two_processes(out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The run as two processes of 4 simulated devices each (one mesh of 8)."""
    with socket.socket() as s:  # a free port for the coordinator
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "usmlite_edu",
                *_COMMON,
                "--out",
                str(out),
                *extra,
                "--mesh",
                "data=2,fsdp=4",
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(4),
            cwd=ROOT,
        )  # fmt: skip
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            so, se = p.communicate(timeout=900)
            assert p.returncode == 0, se[-4000:]
            outs.append(so)
    finally:  # only on a failure or timeout: a peer still finishing its last write is waited for
        for q in procs:
            if q.poll() is None:
                q.kill()
    return outs


def _losses(run: Path, after: int = 0) -> dict[int, float]:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r and r.get("step", 0) > after}


def _max_param_diff(a: Path, b: Path) -> tuple[float, float]:
    pa, pb = runs.load_params(a / "params"), runs.load_params(b / "params")
    big = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(pb))
    diff = max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True)
    )
    return diff, big


def _same_run(a: Path, b: Path, steps=(1, 2, 3, 4)) -> None:
    # Tolerances as in tests/test_mesh.py::test_sharded_steps_match_one_device: the
    # sharded step adds the same float32 terms in another order (per-device partial sums,
    # then all-reduces across devices and processes), a few ulps on the loss, and Adam can
    # turn a near-zero gradient's rounding into a step of up to the learning rate
    # (~1e-4 early in warm-up) on a weight: 1e-3 of the largest weight bounds that and is
    # far below a real difference (measured: 1.5e-5 of a largest weight of 1.0).
    la, lb = _losses(a), _losses(b)
    assert sorted(la) == sorted(lb) == list(steps), (la, lb)
    np.testing.assert_allclose([la[s] for s in steps], [lb[s] for s in steps], rtol=1e-5)
    diff, big = _max_param_diff(a, b)
    assert diff <= 1e-3 * big, (diff, big)


def _from_step_2(src: Path, dst: Path) -> Path:
    """A copy of run ``src`` as it was at its step-2 checkpoint (tokenizer, config, the
    checkpoint, the metrics of steps 1-2)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("params", "masks"))
    for c in (dst / "checkpoints").iterdir():
        if c.name.isdigit() and int(c.name) > 2:
            shutil.rmtree(c)
    keep = [x for x in (dst / "metrics.jsonl").read_text().splitlines() if '"final"' not in x]
    keep = [x for x in keep if json.loads(x).get("step", 0) <= 2]
    (dst / "metrics.jsonl").write_text("".join(k + "\n" for k in keep))
    return dst


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory) -> Path:
    """The reference: 4 steps on one device in one process (checkpoints at 2 and 4)."""
    ref = tmp_path_factory.mktemp("ref") / "run"
    _one(ref)
    return ref


@pytest.mark.slow
def test_two_processes_train_as_one_then_resume_on_one_device(one_device_run, tmp_path):
    # From scratch as two jax.distributed processes (8 devices, data=2 x fsdp=4): each
    # reads half of every batch; the same losses and parameters as one process.
    mp = tmp_path / "mp"
    outs = _two_processes(mp)
    assert "process 0 of 2: 4 local of 8 devices (cpu); batch rows 0:8" in outs[0]
    assert "process 1 of 2: 4 local of 8 devices (cpu); batch rows 8:16" in outs[1]
    assert json.loads((mp / "config.json").read_text())["processes"] == 2
    _same_run(mp, one_device_run)
    # Its step-2 checkpoint (written by both processes, sharded over 8 devices) restores
    # on one device in one process and continues as the uninterrupted run.
    back = _from_step_2(mp, tmp_path / "back")
    assert "at step 2" in _one(back)
    _same_run(back, one_device_run)


@pytest.mark.slow
def test_one_device_checkpoint_continues_on_8_devices_in_two_processes(one_device_run, tmp_path):
    # 1 -> 8: the one-device run's step-2 checkpoint, resumed as two processes on a mesh
    # of 8 devices, ends where the one-device run ended.
    up = _from_step_2(one_device_run, tmp_path / "up")
    outs = _two_processes(up)
    assert all("resumed from" in o and "at step 2" in o for o in outs)
    _same_run(up, one_device_run)
