"""The one set-up cell of the teaching notebooks, as a function.

Every notebook of ``notebooks/`` starts with the same visible cell (``tests/test_notebooks.py``
checks that the text is identical in all of them)::

    env = setup(seed=0, compilation_cache=True)
    FAST, SEED, rng, key = env.fast, env.seed, env.rng, env.key

Keeping the work here, rather than pasted into seven cells, is what stops the notebooks'
set-up from drifting apart (it had: ``jax.random.PRNGKey`` in some, ``jax.random.key`` in
others).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import usmlite_edu
from usmlite_edu.speech.paths import find_checkout

if TYPE_CHECKING:
    import jax

# Readable inline figures, the same in every notebook.
MPL_DEFAULTS = {"figure.dpi": 90, "axes.grid": True, "grid.alpha": 0.3}


@dataclasses.dataclass(frozen=True)
class NotebookEnv:
    """What a notebook's later cells use from its set-up cell."""

    fast: bool  # USMLITE_FAST=1: tiny sizes and few steps (the test command)
    seed: int
    rng: np.random.Generator  # NumPy randomness, seeded with ``seed``
    key: jax.Array  # ``jax.random.key(seed)``: a typed JAX key
    repo: Path | None  # the checkout's root; None outside a clone (e.g. a wheel install)
    compilation_cache: str | None  # the persistent XLA cache directory in use, or None

    @property
    def data_small(self) -> Path | None:
        """The checkout's bundled corpus ``data_small/`` (README "Data"), if there is one."""
        return _existing_dir(self.repo, "data_small")

    @property
    def results(self) -> Path | None:
        """The checkout's ``results/`` (outputs of ``usmlite-edu reproduce``), if there is one."""
        return _existing_dir(self.repo, "results")

    def summary(self) -> str:
        import jax

        cache = self.compilation_cache or "off"
        return (
            f"FAST={self.fast}  seed {self.seed}  jax {jax.__version__} on "
            f"{jax.default_backend()}  repo {self.repo}\n"
            f"JAX compilation cache (global, for this whole kernel): {cache}"
        )


def _existing_dir(root: Path | None, name: str) -> Path | None:
    return root / name if root is not None and (root / name).is_dir() else None


#: a file or folder that only a complete copy of the corpus holds (what ``find_corpus`` checks)
CORPUS_MARKERS = {"an4": "etc/an4_train.transcription", "fsdd": "recordings"}


def find_corpus(
    name: str, *more: str | os.PathLike | None, repo: Path | None = None
) -> Path | None:
    """The first folder holding corpus ``name`` (``an4`` or ``fsdd``): ``$USMLITE_DATA``,
    ``<repo>/../shared/corpora/<name>`` (the course's shared folder beside the clone), then
    ``more`` (e.g. the folder a reproduction recorded); each as given or with ``/<name>``
    under it. ``None`` when none holds it (a ``None`` or ``"None"`` in ``more`` is skipped)."""
    marker = CORPUS_MARKERS[name]
    shared = repo.parent / "shared" / "corpora" / name if repo is not None else None
    for c in (os.environ.get("USMLITE_DATA"), shared, *more):
        if c and str(c) != "None":
            for d in (Path(c), Path(c) / name):
                if (d / marker).exists():
                    return d
    return None


def find_repo(start: Path | None = None) -> Path | None:
    """The clone of this repository that ``start`` (default: the working directory) is in.

    A notebook's working directory is its folder, ``notebooks/`` of a clone, even when the
    package itself was installed from a wheel (:func:`usmlite_edu.speech.paths.find_checkout`).
    A notebook outside any clone (e.g. a student edition written to another folder by
    ``usmlite-edu notebooks --edition student --out DIR``) gets the clone the package was
    installed from in editable mode, if any, so its data_small/ and results/ are found.
    """
    return find_checkout(start) or find_checkout(Path(usmlite_edu.__file__).parent)


def setup(
    seed: int = 0,
    compilation_cache: bool = True,
    fast: bool | None = None,
    start: Path | None = None,
) -> NotebookEnv:
    """Read ``USMLITE_FAST``, seed NumPy and JAX, set matplotlib defaults, find the checkout.

    Args:
      seed: seeds both the NumPy generator and the JAX key.
      compilation_cache: call :func:`usmlite_edu.enable_compilation_cache`. This changes a
        *global* JAX setting (``jax.config``) for the whole process: every later compilation
        in the kernel may be written to and read from the on-disk cache, so re-running a
        notebook skips recompiling. ``USMLITE_JAX_CACHE=0`` turns it off regardless.
      fast: override ``USMLITE_FAST`` (``None``: read it; ``1`` is fast mode).
      start: where to look for the checkout (default: the working directory).
    """
    import jax
    import matplotlib

    if fast is None:
        fast = os.environ.get("USMLITE_FAST", "0") == "1"
    matplotlib.rcParams.update(MPL_DEFAULTS)
    cache = usmlite_edu.enable_compilation_cache() if compilation_cache else None
    return NotebookEnv(
        fast=fast,
        seed=seed,
        rng=np.random.default_rng(seed),
        key=jax.random.key(seed),
        repo=find_repo(start),
        compilation_cache=cache,
    )
