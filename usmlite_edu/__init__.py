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
