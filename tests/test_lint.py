"""The lint gate: ruff's formatter and linter over the package, tests, scripts, benchmarks
and the notebooks' text sources (configuration in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["usmlite_edu", "tests", "scripts", "benchmarks", "notebooks", "book"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed; it is pinned in requirements.txt (make venv)")
    return subprocess.run(
        [exe, *args, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_code_is_formatted():
    r = _ruff("format", "--check")
    assert r.returncode == 0, (
        "run `.venv/bin/ruff format " + " ".join(PATHS) + "` (then "
        "`jupytext --sync notebooks/*.py` for notebook sources):\n" + r.stdout + r.stderr
    )


def test_lint_is_clean():
    r = _ruff("check")
    assert r.returncode == 0, "ruff check found problems:\n" + r.stdout + r.stderr
