"""Outlier statistics of dense kernels, their quantization error, and outlier injection.

USM-Lite (section 5) reports int4 PTQ collapsing to 86.7% WER on the 2B model and int2
needing sub-channels; the reduced-scale B0 here keeps its float WER under both. One
hypothesis for the difference is the weight distribution: per-channel quantization
(Eq. 2) sets each output channel's step from its largest weight, so a channel whose
maximum lies far above its spread rounds most of its weights to a few levels. This module
measures that, and builds the controlled experiment of ``scripts/ptq_outliers.py``:

* :func:`channel_stats` / :func:`layer_stats` / :func:`model_stats`: per output channel
  ``W[:, j]`` of each dense kernel, ``max|w| / std`` and the excess kurtosis, and per
  layer the fraction of channels whose ``max|w| / std`` exceeds a threshold;
* :func:`quant_error` / :func:`model_quant_errors`: the relative squared error
  ``||W - W^||^2 / ||W||^2`` of a spec's quantizer (:mod:`usmlite_edu.core.quant`) per layer;
* :func:`inject_outliers`: a function-preserving reparameterisation that gives chosen
  input rows of a kernel a factor ``k`` and divides what produces those inputs by ``k``,
  so the float model computes the same function (up to float32 rounding) while its
  kernels carry outlier rows.

Statistics are computed in float64 with NumPy over the ``I`` inputs of a channel:
``std`` is the population standard deviation about the channel mean, the excess kurtosis
is ``m4 / m2**2 - 3`` with central moments ``m2, m4`` (0 for a Gaussian, about -6/(I+1)
for the sample estimate of one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

from usmlite_edu.core import quant
from usmlite_edu.core.sizes import ParamInfo
from usmlite_edu.core.specs import CompressionSpec, as_spec

__all__ = [
    "DEFAULT_THRESHOLD",
    "channel_stats",
    "layer_stats",
    "dense_kernels",
    "model_stats",
    "summarize",
    "by_kind",
    "layer_kind",
    "quant_error",
    "model_quant_errors",
    "outlier_targets",
    "inject_outliers",
    "get_param",
]

#: ``max|w| / std`` above which a channel counts as having an outlier. For a Gaussian
#: channel of I <= 2048 inputs, P(max |z| > 6) < 2048 * 2e-9 = 4e-6.
DEFAULT_THRESHOLD = 6.0


# --------------------------------------------------------------------------- statistics
def channel_stats(w: Any) -> dict[str, np.ndarray]:
    """Per output channel (column) of an ``(I, J)`` kernel: ``max_over_std`` and ``kurtosis``.

    ``max_over_std[j] = max_i |w_ij| / std_i(w_ij)``; ``kurtosis[j]`` is the excess
    kurtosis of the column. A constant column (std 0) gets ``nan`` for both.
    """
    w = np.asarray(w, np.float64)
    if w.ndim != 2:
        raise ValueError(f"channel_stats expects a 2-D (in, out) kernel, got shape {w.shape}")
    c = w - w.mean(axis=0, keepdims=True)
    m2 = np.mean(c**2, axis=0)
    m4 = np.mean(c**4, axis=0)
    ok = m2 > 0
    safe = np.where(ok, m2, 1.0)
    ratio = np.where(ok, np.max(np.abs(w), axis=0) / np.sqrt(safe), np.nan)
    kurt = np.where(ok, m4 / safe**2 - 3.0, np.nan)
    return {"max_over_std": ratio, "kurtosis": kurt}


def layer_stats(w: Any, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """One kernel's channel statistics summarised: median and maximum over channels of
    ``max|w|/std`` and of the excess kurtosis, and ``frac_over`` = the fraction of channels
    with ``max|w|/std > threshold``."""
    s = channel_stats(w)
    r, k = s["max_over_std"], s["kurtosis"]
    return {
        "in": int(np.shape(w)[0]),
        "out": int(np.shape(w)[1]),
        "max_over_std_median": float(np.nanmedian(r)),
        "max_over_std_max": float(np.nanmax(r)),
        "kurtosis_median": float(np.nanmedian(k)),
        "kurtosis_max": float(np.nanmax(k)),
        "frac_over": float(np.mean(r > threshold)),
    }


def dense_kernels(params: Any, table: Sequence[ParamInfo], softmax: bool = False) -> dict[str, Any]:
    """``{name: kernel}`` of every compressible dense kernel (role ``dense`` in the model's
    ``table``, :func:`usmlite_edu.speech.model.param_table`, and the softmax kernel with
    ``softmax``), in the table's order."""
    roles = ("dense", "softmax") if softmax else ("dense",)
    return {w.name: get_param(params, w.name) for w in table if w.role in roles}


def model_stats(
    params: Any, table: Sequence[ParamInfo], threshold: float = DEFAULT_THRESHOLD
) -> dict[str, dict[str, float]]:
    """``{kernel name: layer_stats(kernel)}`` over :func:`dense_kernels`."""
    return {n: layer_stats(w, threshold) for n, w in dense_kernels(params, table).items()}


def layer_kind(name: str) -> str:
    """``encoder/blocks/3/mhsa/query/kernel`` -> ``mhsa/query`` (layer type across blocks)."""
    parts = name.split("/")
    if parts[0] == "encoder":
        return "/".join(parts[3:-1])
    return "/".join(parts[:-1])


def summarize(
    per_layer: dict[str, dict[str, float]], names: Iterable[str] | None = None
) -> dict[str, float]:
    """Pool :func:`model_stats` rows (all of them, or ``names``): channel-weighted mean of
    the medians and of ``frac_over``, maximum of the maxima."""
    rows = [per_layer[n] for n in (names if names is not None else per_layer)]
    if not rows:
        raise ValueError("summarize: no layers")
    w = np.array([r["out"] for r in rows], np.float64)
    mean = lambda key: float(np.sum(w * [r[key] for r in rows]) / np.sum(w))  # noqa: E731
    return {
        "layers": len(rows),
        "channels": int(w.sum()),
        "max_over_std_median": mean("max_over_std_median"),
        "max_over_std_max": max(r["max_over_std_max"] for r in rows),
        "kurtosis_median": mean("kurtosis_median"),
        "kurtosis_max": max(r["kurtosis_max"] for r in rows),
        "frac_over": mean("frac_over"),
    }


def by_kind(per_layer: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """:func:`summarize` per layer type (``ffn1/dense1``, ``mhsa/query``, ... over blocks)."""
    kinds: dict[str, list[str]] = {}
    for n in per_layer:
        kinds.setdefault(layer_kind(n), []).append(n)
    return {k: summarize(per_layer, ns) for k, ns in kinds.items()}


# --------------------------------------------------------------------------- quant error
def quant_error(w: Any, spec: CompressionSpec | str, row_scale: Any | None = None) -> float:
    """``||W - W^||^2 / ||W||^2`` with ``W^ = dequantize(quantize(W))`` under ``spec``'s
    grid (bits, symmetric, sub-channels or group size resolved for this kernel, clip):
    the weight error of post-training quantization, Eq. (2).

    ``row_scale`` (length ``I``) measures the error in other coordinates: both ``W - W^``
    and ``W`` have row ``i`` divided by ``row_scale[i]`` first. For a kernel whose row
    ``i`` was multiplied by ``k`` with its input divided by ``k`` (:func:`inject_outliers`),
    ``row_scale = k`` on that row gives the error of the function the layer computes,
    which the plain ratio hides: there the outlier row dominates ``||W||^2``.
    """
    spec = as_spec(spec)
    if not spec.quantized:
        return 0.0
    w = np.asarray(w, np.float32)
    s = spec.for_input_dim(w.shape[0])
    q = quant.quantize(w, s.bits, symmetric=s.symmetric, sub_channels=s.sub_channels, clip=s.clip)
    err = np.asarray(quant.dequantize(q), np.float64) - w
    ref = np.asarray(w, np.float64)
    if row_scale is not None:
        d = np.asarray(row_scale, np.float64)[:, None]
        err, ref = err / d, ref / d
    return float(np.sum(err**2) / max(np.sum(ref**2), 1e-300))


def model_quant_errors(
    params: Any,
    table: Sequence[ParamInfo],
    specs: Sequence[str] = ("int4", "int2"),
    row_scales: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """``{kernel name: {spec: quant_error}}`` over :func:`dense_kernels`; ``row_scales``
    (e.g. the second result of :func:`inject_outliers`) gives a kernel's ``row_scale``."""
    row_scales = row_scales or {}
    return {
        n: {s: quant_error(w, s, row_scales.get(n)) for s in specs}
        for n, w in dense_kernels(params, table).items()
    }


# --------------------------------------------------------------------------- injection
def _key(k: str) -> Any:
    return int(k) if k.isdigit() else k


def get_param(params: Any, name: str) -> Any:
    """The leaf at a "/"-joined path (digit components index ``encoder/blocks``)."""
    node = params
    for k in name.split("/"):
        node = node[_key(k)]
    return node


def _copy_tree(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _copy_tree(v) for k, v in tree.items()}
    return np.array(tree, np.float32, copy=True)


def outlier_targets(cfg: Any) -> list[dict]:
    """Where :func:`inject_outliers` can scale rows without changing the float function.

    Each entry: ``kernels`` whose input rows get ``* k``, ``divide`` the vectors (indexed
    by the same feature) that get ``/ k``, ``divide_cols`` kernels whose output columns get
    ``/ k``, and ``dim`` (the feature count) plus ``rows_of`` (how a feature maps to
    kernel rows). Three identities make this exact in real arithmetic:

    * LayerNorm then dense: ``(n * g + b) @ W`` is unchanged when ``g_r, b_r`` are divided
      by ``k`` and row ``r`` of ``W`` is multiplied by ``k`` (``ffn1/dense1``,
      ``ffn2/dense1``, ``mhsa/query,key,value`` (one LayerNorm feeds all three),
      ``conv/pointwise1``);
    * the attention output is linear in the values: column ``c`` of ``mhsa/value``
      (kernel and bias) ``/ k`` and row ``c`` of ``mhsa/out`` ``* k``;
    * ReLU is positively homogeneous: output channel ``c`` of ``frontend/conv2`` (kernel
      and bias) ``/ k`` and the rows ``f * C2 + c`` of ``frontend/proj`` (every
      frequency ``f`` of that channel after the reshape) ``* k``.

    The other dense kernels (``ffn*/dense2``, ``conv/pointwise2`` after swish,
    ``mhsa/pos`` on fixed sinusoids) have no such identity and are left as they are.
    """
    c2 = cfg.subsample_channels[1]
    n_f = cfg.proj_in_dim // c2
    out: list[dict] = [
        {
            "kernels": ["frontend/proj/kernel"],
            "divide": ["frontend/conv2/bias"],
            "divide_last_axis": ["frontend/conv2/kernel"],
            "dim": c2,
            "rows_of": lambda c: [f * c2 + c for f in range(n_f)],
        }
    ]
    for i in range(cfg.num_layers):
        b = f"encoder/blocks/{i}"
        for norm, kernels in (
            ("ffn1/norm", ["ffn1/dense1"]),
            ("mhsa/norm", ["mhsa/query", "mhsa/key", "mhsa/value"]),
            ("conv/norm", ["conv/pointwise1"]),
            ("ffn2/norm", ["ffn2/dense1"]),
        ):
            out.append(
                {
                    "kernels": [f"{b}/{k}/kernel" for k in kernels],
                    "divide": [f"{b}/{norm}/scale", f"{b}/{norm}/bias"],
                    "divide_last_axis": [],
                    "dim": cfg.model_dim,
                    "rows_of": lambda c: [c],
                }
            )
        out.append(
            {
                "kernels": [f"{b}/mhsa/out/kernel"],
                "divide": [f"{b}/mhsa/value/bias"],
                "divide_last_axis": [f"{b}/mhsa/value/kernel"],
                "dim": cfg.model_dim,
                "rows_of": lambda c: [c],
            }
        )
    return out


def inject_outliers(
    params: Any, cfg: Any, k: float, rows: int = 1, seed: int = 0
) -> tuple[dict, dict[str, np.ndarray]]:
    """A copy of ``params`` with outlier input rows, computing the same float function.

    For every entry of :func:`outlier_targets`, ``rows`` features (the same indices for
    every target of one width, drawn once with ``seed``: like an outlier dimension of a
    residual stream) have their kernel rows multiplied by ``k`` and their producers divided
    by ``k``. Returns ``(new params as float32 NumPy arrays, {name: row scale})``: for
    every kernel that got outlier rows, a vector of length ``I`` that is ``k`` on those rows
    and 1 elsewhere (the ``row_scale`` of :func:`quant_error`). ``k = 1`` returns an
    unchanged copy. In real arithmetic the float model computes the same function; in
    float32 its outputs are bit-identical when ``k`` is a power of two (every multiply and
    divide by ``k`` is then exact, barring overflow and subnormals) and differ by rounding
    otherwise (``tests/test_weight_stats.py`` checks both on a small model; the script
    asserts identical float transcripts).
    """
    if not k > 0:
        raise ValueError(f"k must be positive (ReLU is homogeneous only for k > 0), got {k}")
    new = _copy_tree(jax.device_get(params))
    rng = np.random.default_rng(seed)
    chosen: dict[int, np.ndarray] = {}
    touched: dict[str, np.ndarray] = {}
    for t in outlier_targets(cfg):
        dim = t["dim"]
        if rows > dim:
            raise ValueError(f"rows={rows} exceeds the feature count {dim}")
        if dim not in chosen:
            chosen[dim] = np.sort(rng.choice(dim, size=rows, replace=False))
        feats = chosen[dim]
        kernel_rows = [r for c in feats for r in t["rows_of"](int(c))]
        for name in t["kernels"]:
            kern = get_param(new, name)
            kern[kernel_rows, :] *= k
            touched[name] = np.ones(kern.shape[0])
            touched[name][kernel_rows] = k
        for name in t["divide"]:
            get_param(new, name)[feats] /= k
        for name in t["divide_last_axis"]:
            get_param(new, name)[..., feats] /= k
    return new, touched
