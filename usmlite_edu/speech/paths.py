"""Where a clone of the repository is, found from the working directory.

The library never assumes it runs from its own checkout (it may be an installed wheel).
What only a clone has (``data_small/``, the committed ``results/``, ``notebooks/``) is
looked up from the working directory and its parents, and a missing one is an error that
says what to pass instead.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["find_checkout", "in_checkout"]


def _is_checkout(d: Path) -> bool:
    return (d / "pyproject.toml").is_file() and (d / "usmlite_edu" / "__init__.py").is_file()


def find_checkout(start: str | Path | None = None) -> Path | None:
    """The clone of this repository that ``start`` (default: the working directory) is in,
    or ``None``. A notebook runs in ``notebooks/`` of a clone, the CLI usually at its top."""
    start = Path(start or Path.cwd()).resolve()
    for d in (start, *start.parents):
        if _is_checkout(d):
            return d
    return None


def in_checkout(relative: str, what: str, instead: str, start: str | Path | None = None) -> Path:
    """``CLONE/relative`` of the clone the working directory is in.

    Raises ``FileNotFoundError`` saying ``what`` was looked for, where, and what to do
    ``instead`` (e.g. "pass --dir DIR") when there is no clone or it lacks ``relative``.
    """
    root = find_checkout(start)
    if root is not None and (root / relative).exists():
        return root / relative
    where = (
        f"{root / relative} does not exist"
        if root is not None
        else f"{Path(start or Path.cwd()).resolve()} is not inside a clone of the usmlite_edu "
        "repository"
    )
    raise FileNotFoundError(f"{what} not found: {where}; {instead}")
