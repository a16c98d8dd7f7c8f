"""Execute the teaching notebooks headless (``usmlite-edu notebooks``).

Each notebook reads ``USMLITE_FAST``: ``1`` swaps in tiny sizes so the whole series runs in
the test command; ``0`` (the default for this runner's ``--full``) runs the sizes a learner
sees in JupyterLab.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"


def list_notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, out_dir: Path | None = None, fast: bool = True,
            timeout: int = 900) -> Path:
    """Run every cell of ``path`` top to bottom; write the executed copy to ``out_dir``.

    Raises ``nbclient.exceptions.CellExecutionError`` (with the failing cell's traceback)
    if any cell fails, including a check cell's ``assert``.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("USMLITE_FAST")
    os.environ["USMLITE_FAST"] = "1" if fast else "0"
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if old is None:
            os.environ.pop("USMLITE_FAST", None)
        else:
            os.environ["USMLITE_FAST"] = old
    out_dir = out_dir or path.parent / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    nbformat.write(nb, out)
    return out


def run_all(names: list[str] | None = None, fast: bool = True, out_dir: Path | None = None) -> int:
    paths = list_notebooks()
    if names:
        paths = [p for p in paths if any(n in p.name for n in names)]
        if not paths:
            raise SystemExit(f"no notebook in {NOTEBOOK_DIR} matches {names}")
    for p in paths:
        t0 = time.time()
        out = execute(p, out_dir=out_dir, fast=fast)
        print(f"executed {p.name} in {time.time() - t0:.0f} s -> {out}", flush=True)
    return 0
