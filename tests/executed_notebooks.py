"""Fast-mode executed copies of the committed notebooks, made once per test run.

tests/test_notebooks.py (each notebook runs with every exercise check correct) and
tests/test_book.py (the book renders them) need the same executed notebooks; executing the
series twice would cost minutes. Whichever test asks first executes a notebook (with the
project's runner) into a folder of this test run; later requests, from any pytest-xdist
worker, wait on a per-notebook file lock and reuse the copy. A notebook that failed is not
executed again in the same run: the later request fails at once, quoting the first error.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from usmlite_edu.course import notebook_runner


def cache_dir(tmp_path_factory) -> Path:
    """A folder of this test run, the same for every xdist worker (their base temporary
    folders are siblings in the run's own folder), never shared with another run."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    d = root / "executed-notebooks-fast"
    d.mkdir(exist_ok=True)
    return d


def _execute_with_one_retry(path: Path, out_dir: Path) -> Path:
    """Execute in fast mode (10 min a cell, as the runner's fast mode); a stall (a cell past
    that, or a dead kernel: the intermittent idle-kernel hang seen with notebook 10) is
    retried once in a fresh kernel, as the main job does; a failing cell is not."""
    try:
        return notebook_runner.execute(path, out_dir=out_dir, fast=True, timeout=600)
    except notebook_runner.NotebookStalled as e:
        print(f"{path.name} stalled ({e}); running it again in a fresh kernel", flush=True)
        return notebook_runner.execute(path, out_dir=out_dir, fast=True, timeout=600)


def executed(path: Path, tmp_path_factory) -> Path:
    """The fast-mode executed copy of ``path``, executing it if this run has not yet."""
    d = cache_dir(tmp_path_factory)
    out, failed = d / path.name, d / f"{path.stem}.failed"
    with open(d / f"{path.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if failed.exists():
            raise RuntimeError(
                f"{path.name} failed earlier in this test run:\n{failed.read_text()}"
            )
        if not out.exists():
            try:
                written = _execute_with_one_retry(path, d / "tmp")
            except Exception as e:
                failed.write_text(f"{type(e).__name__}: {e}"[-6000:])
                raise
            written.replace(out)  # appears whole, or not at all
    return out
