"""The compression maths of USM-Lite (Ding et al., ICASSP 2024, sections 3.2-3.4).

Pure functions on weight arrays, the bottom wing: it imports nothing else of the package.

* :mod:`~usmlite_edu.core.quant`: per-channel / sub-channel quantization, Eqs. (1)-(2), STE
* :mod:`~usmlite_edu.core.sparsity`: N:M magnitude pruning and mask schedules (section 3.3)
* :mod:`~usmlite_edu.core.compress`: ``CompressionSpec``, joint prune-then-quantize (Alg. 1)
* :mod:`~usmlite_edu.core.specs`: per-layer spec maps
* :mod:`~usmlite_edu.core.sizes`: the "Model Size Ratio" column (paper estimate, exact bytes)
* :mod:`~usmlite_edu.core.weight_stats`: what a weight matrix looks like to a quantizer
* :mod:`~usmlite_edu.core.stats`: paired bootstrap intervals for WER comparisons
"""
