"""Every notebook runs top to bottom, headless, in fast mode (its check cells assert)."""

import pytest

from usmlite_edu import notebook_runner

NOTEBOOKS = notebook_runner.list_notebooks()


def test_the_series_is_complete():
    names = [p.name[:2] for p in NOTEBOOKS]
    assert names == ["01", "02", "03", "04", "05", "06", "07"], names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path):
    out = notebook_runner.execute(path, out_dir=tmp_path, fast=True)
    assert out.exists()
