"""usmlite_edu: quantization- and sparsity-aware fine-tuning of speech recognizers, taught
and reproduced (USM-Lite, Ding et al., ICASSP 2024).

The package is split into wings, each importing only wings below it
(``docs/architecture.md``): :mod:`~usmlite_edu.core` (the compression maths),
:mod:`~usmlite_edu.scale` (meshes and hosts), :mod:`~usmlite_edu.speech` (the recognizer's
parts), :mod:`~usmlite_edu.deploy` (forward-only use and export),
:mod:`~usmlite_edu.training`, :mod:`~usmlite_edu.search`, :mod:`~usmlite_edu.course` and
:mod:`~usmlite_edu.cli`.
"""

__version__ = "0.1.0"

from usmlite_edu import _compat

_compat.install()


def __getattr__(name: str):
    # ``from usmlite_edu import quant`` (an old flat-package name): the moved module
    if name in _compat.MOVED:
        return _compat.load(name)
    raise AttributeError(f"module 'usmlite_edu' has no attribute {name!r}")


def enable_compilation_cache(
    path: str | None = None, min_compile_seconds: float = 0.5
) -> str | None:
    """Keep XLA's compiled programs on disk so repeated runs skip recompiling.

    JAX compiles each new shape of a jitted function; a train step of the ``cpu`` preset
    takes tens of seconds. With a persistent cache, the second notebook run or CLI call
    loads the compiled program instead. This changes a *global* JAX setting, which is why
    importing ``usmlite_edu`` never does it: the CLI and the notebooks' set-up cell call it.

    Args:
      path: cache directory; default ``$USMLITE_JAX_CACHE`` or
        ``~/.cache/usmlite_edu/jax``. ``USMLITE_JAX_CACHE=0`` turns the cache off.
      min_compile_seconds: only programs that took at least this long to compile are kept.

    Returns the directory in use, or ``None`` when turned off.
    """
    import os

    import jax

    where = path or os.environ.get("USMLITE_JAX_CACHE", "")
    if where == "0":
        return None
    where = where or os.path.join(os.path.expanduser("~"), ".cache", "usmlite_edu", "jax")
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    return where
