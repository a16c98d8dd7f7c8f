"""The notebook series: text/notebook pairs in sync, one shared set-up cell, and every
notebook runs top to bottom headless in fast mode (its check cells assert)."""

import dataclasses
from pathlib import Path

import jax
import jupytext
import matplotlib
import nbformat
import numpy as np
import pytest
from executed_notebooks import executed

from usmlite_edu.course import editions, notebook_runner, notebook_setup

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = notebook_runner.list_notebooks(NB_DIR)


def _cells(nb) -> list[tuple]:
    """What an instructor edits: cell type, source, tags and the hidden-source flag."""
    return [
        (
            c.cell_type,
            c.source,
            c.metadata.get("tags", []),
            c.metadata.get("jupyter", {}).get("source_hidden", False),
        )
        for c in nb.cells
    ]


def _setup_cell(nb) -> str:
    """The first code cell after the Colab install cell (tagged ``colab``)."""
    return next(
        c.source
        for c in nb.cells
        if c.cell_type == "code" and "colab" not in c.metadata.get("tags", [])
    )


def test_the_series_is_complete():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names == [f"{i:02d}" for i in range(1, 14)], names  # 13: 07's optional deep dive


def test_no_text_source_without_its_notebook():
    stray = [p.name for p in NB_DIR.glob("[0-9][0-9]_*.py") if not p.with_suffix(".ipynb").exists()]
    assert not stray, f"{stray} have no .ipynb: run jupytext --sync on them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_and_its_text_source_are_in_sync(path):
    text = path.with_suffix(".py")
    fix = f"run `jupytext --sync notebooks/{text.name}` (or save it in JupyterLab with jupytext)"
    assert text.exists(), f"{path.name} has no paired {text.name}: {fix}"
    ipynb, py = _cells(nbformat.read(path, as_version=4)), _cells(jupytext.read(text))
    assert len(ipynb) == len(py), f"{path.name}: {len(ipynb)} cells, {text.name}: {len(py)}; {fix}"
    for i, (a, b) in enumerate(zip(ipynb, py)):
        assert a == b, f"{path.name} and {text.name} differ at cell {i}: {fix}"


def test_solution_cells_are_tagged_and_hidden():
    for path in NOTEBOOKS:
        for c in nbformat.read(path, as_version=4).cells:
            if "solution" in c.metadata.get("tags", []):
                assert c.metadata["jupyter"]["source_hidden"], path.name


def test_every_notebook_opens_with_the_same_setup_cell():
    cells = {p.name: _setup_cell(nbformat.read(p, as_version=4)) for p in NOTEBOOKS}
    first = cells[NOTEBOOKS[0].name]
    assert "from usmlite_edu.course.notebook_setup import setup" in first
    assert "= setup(" in first and "compilation_cache=True" in first
    differ = [n for n, s in cells.items() if s != first]
    assert not differ, f"set-up cell of {differ} differs from {NOTEBOOKS[0].name}'s"


def test_setup(monkeypatch):
    monkeypatch.setenv("USMLITE_FAST", "1")
    monkeypatch.setenv("USMLITE_JAX_CACHE", "0")  # the cache is a global JAX setting: leave it
    with matplotlib.rc_context():  # setup's figure defaults are global too
        env = notebook_setup.setup(seed=3, start=ROOT / "notebooks")
        assert matplotlib.rcParams["axes.grid"] and matplotlib.rcParams["figure.dpi"] == 90
    assert env.fast and env.seed == 3 and env.compilation_cache is None
    assert env.repo == ROOT and env.data_small == ROOT / "data_small"
    assert env.results == ROOT / "results"
    # the same key and NumPy stream as seeding by hand
    assert jax.dtypes.issubdtype(env.key.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(
        jax.random.key_data(env.key), jax.random.key_data(jax.random.key(3))
    )
    assert env.rng.integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)
    assert "FAST=True" in env.summary()
    with pytest.raises(dataclasses.FrozenInstanceError):
        env.fast = False

    monkeypatch.setenv("USMLITE_FAST", "0")
    with matplotlib.rc_context():
        assert not notebook_setup.setup(compilation_cache=False).fast
        assert notebook_setup.setup(compilation_cache=False, fast=True).fast


def test_find_repo_outside_a_checkout(tmp_path, monkeypatch):
    import usmlite_edu

    assert notebook_setup.find_repo(ROOT / "notebooks") == ROOT
    # outside a clone: the clone the package was installed from (editable, as here) ...
    assert notebook_setup.find_repo(tmp_path) == ROOT
    # ... and nothing for a package installed from a wheel (no clone around its files)
    (tmp_path / "site-packages" / "usmlite_edu").mkdir(parents=True)
    monkeypatch.setattr(
        usmlite_edu, "__file__", str(tmp_path / "site-packages" / "usmlite_edu" / "__init__.py")
    )
    assert notebook_setup.find_repo(tmp_path) is None
    with matplotlib.rc_context():
        env = notebook_setup.setup(compilation_cache=False, start=tmp_path)
    assert env.repo is None and env.data_small is None and env.results is None


def test_runner_finds_nothing_loudly(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"--dir.*clone of the repository"):
        notebook_runner.run_all(None, directory=tmp_path)
    # the default: ./notebooks of the working directory first
    monkeypatch.chdir(ROOT)
    assert notebook_runner.default_directory() == ROOT / "notebooks"
    # from notebooks/ itself, the clone's notebooks/ (found from the working directory)
    monkeypatch.chdir(ROOT / "notebooks" if (ROOT / "notebooks").is_dir() else ROOT)
    assert notebook_runner.default_directory() == ROOT / "notebooks"
    # outside a clone (a wheel install): no ./notebooks, no clone above
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "notebooks")):
        notebook_runner.run_all(None)
    with pytest.raises(ValueError, match="available: 01_per_channel_quantization"):
        notebook_runner.run_all(["no-such-notebook"], directory=NB_DIR)
    assert [p.name[:2] for p in notebook_runner.select(["03", "05"], NB_DIR)] == ["03", "05"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path_factory):
    """The committed notebooks are the instructor edition: they run, and every exercise
    check in them reports its worked answer correct (none is left unanswered). The
    executed copy is shared with tests/test_book.py (executed once per test run)."""
    out = executed(path, tmp_path_factory)
    nb = nbformat.read(out, as_version=4)
    n = editions.count_checks(nb)
    assert editions.reported(nb) == {"skipped": 0, "correct": n, "wrong": 0}
