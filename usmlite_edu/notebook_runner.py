"""Execute the teaching notebooks headless (``usmlite-edu notebooks``).

Each notebook reads ``USMLITE_FAST`` (through :func:`usmlite_edu.notebook_setup.setup`):
``1`` swaps in tiny sizes so the whole series runs in the test command; ``0`` (the default
for this runner's ``--full``) runs the sizes a learner sees in JupyterLab.

The notebooks are not part of the installed package: they live in ``notebooks/`` of a clone
of the repository. A wheel install therefore finds them only from a clone's working
directory or with an explicit directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from usmlite_edu.paths import find_checkout


def default_directory() -> Path:
    """``./notebooks`` of the working directory if present, else ``notebooks/`` of the clone
    the working directory is in, else ``./notebooks`` (which then holds nothing to run)."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    root = find_checkout()
    return root / "notebooks" if root is not None else here


def list_notebooks(directory: Path | str | None = None) -> list[Path]:
    """The series' notebooks (``NN_name.ipynb``) in ``directory``, in order; may be empty."""
    directory = Path(directory) if directory is not None else default_directory()
    return sorted(directory.glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, out_dir: Path | None = None, fast: bool = True, timeout: int = 900) -> Path:
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
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
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


def select(names: list[str] | None, directory: Path | str | None = None) -> list[Path]:
    """The notebooks of ``directory`` whose file name contains one of ``names`` (all if none).

    Raises ``FileNotFoundError`` when the directory holds no notebook (a wheel install run
    outside a clone must not report success having run nothing) and ``ValueError`` when
    ``names`` match none of them.
    """
    directory = Path(directory) if directory is not None else default_directory()
    paths = list_notebooks(directory)
    if not paths:
        raise FileNotFoundError(
            f"no notebook (NN_name.ipynb) in {directory.resolve()}: the notebooks are not "
            "installed with the package; pass --dir DIR (the notebooks/ folder of a clone of "
            "the repository) or run from a clone of the repository"
        )
    if names:
        chosen = [p for p in paths if any(n in p.name for n in names)]
        if not chosen:
            raise ValueError(
                f"no notebook in {directory.resolve()} matches {names}; "
                f"available: {', '.join(p.stem for p in paths)}"
            )
        paths = chosen
    return paths


def run_all(
    names: list[str] | None = None,
    fast: bool = True,
    directory: Path | str | None = None,
    out_dir: Path | None = None,
) -> int:
    """Execute the selected notebooks in order (see :func:`select`); returns 0."""
    for p in select(names, directory):
        t0 = time.time()
        out = execute(p, out_dir=out_dir, fast=fast)
        print(f"executed {p.name} in {time.time() - t0:.0f} s -> {out}", flush=True)
    return 0
