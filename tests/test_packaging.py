"""An installed wheel works outside a clone: no repository-relative lookups in the library."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, unpacked into a bare folder (its dependencies
    come from the test environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    wheel = next((tmp / "dist").glob("usmlite_edu-*.whl"))
    target = tmp / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(target)
    return target, names


def _run(installed, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    target, _ = installed
    env = {**os.environ, "PYTHONPATH": str(target), "USMLITE_JAX_CACHE": "0"}
    env.pop("USMLITE_DATA", None)
    code = (
        "import sys, usmlite_edu; assert usmlite_edu.__file__.startswith(sys.argv[1]), "
        "usmlite_edu.__file__; from usmlite_edu.cli import main; sys.exit(main(sys.argv[2:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(target), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.slow
def test_wheel_runs_outside_a_clone(installed, tmp_path):
    _, names = installed
    assert not any(n.startswith(("tests/", "notebooks/", "results/")) for n in names)
    r = _run(installed, "notebooks", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--dir" in r.stdout, r.stderr
    r = _run(installed, "sizes", "--spec", "int4+2:4", cwd=tmp_path)
    assert r.returncode == 0 and "paper 9.38%" in r.stdout, r.stderr
    # nothing to run outside a clone: a loud error, not a silent success
    r = _run(installed, "notebooks", cwd=tmp_path)
    assert r.returncode == 2 and "--dir" in r.stderr, (r.stdout, r.stderr)
    # clone-only data is an error that says what to pass
    r = _run(installed, "eval", "--checkpoint", str(tmp_path / "none"), cwd=tmp_path)
    assert r.returncode == 2 and "not a run directory" in r.stderr
    # ...and the same wheel finds the notebooks when run from a clone
    r = _run(installed, "notebooks", "no-such-name", cwd=ROOT / "notebooks")
    assert r.returncode == 2 and "01_per_channel_quantization" in r.stderr, r.stderr
