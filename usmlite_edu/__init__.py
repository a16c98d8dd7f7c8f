"""usmlite_edu: quantization- and sparsity-aware fine-tuning of speech recognizers, taught
and reproduced (USM-Lite, Ding et al., ICASSP 2024).

Modules follow the paper:

* :mod:`usmlite_edu.quant`: per-channel / sub-channel quantization, Eqs. (1)-(2), STE
* :mod:`usmlite_edu.sparsity`: N:M magnitude pruning, Eqs. (3)-(4), mask schedules
* :mod:`usmlite_edu.compress`: ``CompressionSpec`` and joint prune-then-quantize (Alg. 1)
* :mod:`usmlite_edu.configs`: the Conformer-CTC presets, from a CI toy to the 2B model
* :mod:`usmlite_edu.sizes`: the "Model Size Ratio" column, paper estimate and exact bytes
"""

__version__ = "0.1.0"


def _enable_compilation_cache() -> None:
    """Keep XLA's compiled programs on disk (``~/.cache/usmlite_edu/jax``), so notebooks,
    tests and repeated runs skip recompiling the same train step. ``USMLITE_JAX_CACHE=0``
    turns it off; ``USMLITE_JAX_CACHE=DIR`` moves it."""
    import os

    where = os.environ.get("USMLITE_JAX_CACHE", "")
    if where == "0":
        return
    try:
        import jax

        path = where or os.path.join(os.path.expanduser("~"), ".cache", "usmlite_edu", "jax")
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except Exception:  # an old or unusual jax: run without the cache
        pass


_enable_compilation_cache()
