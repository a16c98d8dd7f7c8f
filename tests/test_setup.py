"""The set-up a new user relies on: pins agree, the README's commands exist, CI calls them."""

import re
from pathlib import Path

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


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make run" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_corpus_files_are_not_committed():
    # FSDD recordings must be read from ../shared or fetched, never shipped
    for p in ROOT.rglob("*.wav"):
        assert not re.match(r"\d_(jackson|theo|nicolas|lucas|yweweler|george)_\d+\.wav", p.name), p
