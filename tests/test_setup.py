"""The set-up a new user relies on: pins agree, the README's commands exist, CI calls them."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    return sorted(
        ln.strip() for ln in lines if re.match(r"^[A-Za-z0-9_.\-\[\]]+==\S+$", ln.strip())
    )


def test_environment_yml_pins_equal_requirements():
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = _pins(
        ln.strip().removeprefix("- ").strip()
        for ln in (ROOT / "environment.yml").read_text().splitlines()
        if ln.strip().startswith("- ") and "==" in ln
    )
    assert req and req == env, set(req) ^ set(env)


def test_core_pins():
    req = dict(p.split("==") for p in _pins((ROOT / "requirements.txt").read_text().splitlines()))
    assert req["jax"] == "0.10.2" and req["jaxlib"] == "0.10.2"
    assert req["flax"] == "0.12.8" and req["optax"] == "0.2.8"


def test_metadata_allows_python_3_11_to_3_13():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = SpecifierSet(project["requires-python"])
    assert [v for v in ("3.10.9", "3.11.0", "3.12.0", "3.13.9", "3.14.0") if v in allowed] == [
        "3.11.0",
        "3.12.0",
        "3.13.9",
    ], allowed
    for v in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {v}" in project["classifiers"]


def test_lowest_pins_are_the_lower_bounds_of_the_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lower = {}
    for d in map(Requirement, deps):
        (low,) = [s.version for s in d.specifier if s.operator == ">="]
        lower[d.name.lower()] = Version(low)
    lowest = {
        name.lower(): Version(v)
        for name, v in (
            p.split("==")
            for p in _pins((ROOT / "requirements-lowest.txt").read_text().splitlines())
        )
    }
    assert lowest == lower


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make run" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_corpus_files_are_not_committed():
    # FSDD recordings must be read from ../shared or fetched, never shipped
    for p in ROOT.rglob("*.wav"):
        assert not re.match(r"\d_(jackson|theo|nicolas|lucas|yweweler|george)_\d+\.wav", p.name), p
