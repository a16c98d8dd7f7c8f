"""Per-channel weight quantization: USM-Lite section 3.2, Eqs. (1)-(2).

Conventions (README "Conventions"). A dense weight ``W`` has shape ``(I, J)`` =
(input, output) and the layer computes ``Y = X @ W``. A *channel* is an output column
``W[:, j]``; every channel gets its own scale. With ``sub_channels=g`` the ``I`` inputs of
each channel are split into ``g`` contiguous groups of ``I / g`` rows, each group with its
own scale (and zero point): the sub-channel quantization of the 2-bit Conformer paper.

Symmetric grid (the paper's int8 / int4)::

    qmax = 2**(bits-1) - 1            # 127 for int8, 7 for int4, 1 for int2
    s    = clip * max|w| / qmax       # Eq. (2): "max of W_j over max of the int range"
    q    = clip(round(w / s), -qmax, qmax)
    w^   = s * q                      # zero is exact; -2**(bits-1) is never used

Asymmetric grid (the paper's int2, after the 2-bit Conformer paper)::

    lo, hi = clip * min(w, 0), clip * max(w, 0)   # the range always contains 0
    s      = (hi - lo) / (2**bits - 1)            # all 2**bits levels are used
    z      = round(qmin - lo / s)                 # integer zero point in [qmin, qmax]
    q      = clip(round(w / s) + z, qmin, qmax)   # qmin = -2**(bits-1), qmax = 2**(bits-1)-1
    w^     = s * (q - z)

The zero point is an integer inside the grid, so ``w = 0`` maps to ``q = z`` and
dequantizes to exactly 0. That is what lets a pruned (N:M) zero survive quantization, and
what lets the integer matmul be written as ``s * (X @ q - z * sum(X))``.

Three ways to use the quantizer in a layer:

* :func:`fake_quant` keeps ``w^`` in float ("fake" quantization, the usual QAT);
* :func:`native_matmul` / :func:`qat_matmul` compute Eq. (1), ``Y_j = s_j * (X @ q_j)``:
  the integer grid values ``q`` times the activations, then the scale ("native" QAT); the
  backward pass of :func:`qat_matmul` is the straight-through estimator (STE). The
  arithmetic is floating point: ``q`` is converted to the activation (or compute) dtype
  and the dot is a float32 (or bfloat16) dot accumulating in float32. Every int8 value is
  exact in both dtypes, so the result is that of an integer-weight matmul up to float32
  rounding of the sum; the speed and memory are those of a float matmul;
* :func:`int8_matmul` multiplies int8 activations by int8 weights with int32 accumulation:
  the only integer dot in this module, the arithmetic an integer inference engine runs.

What XLA:CPU compiles (``jax.jit(f).lower(...).compile().as_text()``, jax 0.10.2, checked
by ``tests/test_quant.py`` with :func:`compiled_ops`):

* :func:`native_matmul`, per channel: an elementwise fusion converts the ``s8`` weight to
  an ``f32`` (``bf16`` with ``compute_dtype=bfloat16``) array of the weight's shape (a
  temporary buffer of the full float weight), then a ``f32`` dot (``bf16 x bf16 -> f32``);
  with sub-channels in ``f32`` the same fusion also subtracts each group's zero point and
  multiplies by its scale, and one ``(I, J)`` dot follows (Eq. (1) regrouped; see
  :func:`native_matmul`); in ``bf16``, ``g`` separate dots of the unscaled values, as
  XLA:CPU has no batched ``bf16 x bf16 -> f32`` dot;
* :func:`qat_matmul`, forward: one elementwise fusion reads the float ``w``, rounds and
  clips it, converts it to ``s8`` and straight back to ``f32`` and writes the ``f32``
  copy; the ``int8`` array of the jaxpr never exists in memory, and the dot is ``f32``;
* :func:`int8_matmul`: a dot with ``s8`` operands and an ``s32`` result.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "QuantizedArray",
    "Clip",
    "check_quant_args",
    "int_range",
    "quantize",
    "dequantize",
    "fake_quant",
    "native_matmul",
    "qat_matmul",
    "quantize_activations",
    "int8_matmul",
    "INT_ARITHS",
    "IntKernel",
    "pack_bits",
    "unpack_bits",
    "to_codes",
    "from_codes",
    "pack_int4",
    "unpack_int4",
    "search_clip",
    "lsq_init_step",
    "lsq_grad_scale",
    "lsq_quantize",
    "lsq_fake_quant",
    "lsq_matmul",
    "lsq_step_gradient",
    "compiled_ops",
    "HloOp",
]

Clip = float | Literal["search"]

#: Clip ratios tried by ``clip="search"`` (2-bit Conformer paper: a grid in [min_clip, 1]).
#: Heavy-tailed weights at int2 keep improving down to about 0.3, so the grid goes there.
DEFAULT_CLIP_GRID = tuple(float(c) for c in np.linspace(0.3, 1.0, 15))


# --------------------------------------------------------------------------- validation
def check_quant_args(
    bits: int,
    symmetric: bool,
    sub_channels: int,
    clip: Clip,
    in_dim: int | None = None,
    name: str = "weight",
) -> None:
    """Raise ``ValueError`` (saying what to change) for a setting that cannot work.

    Called by every public entry point before any arithmetic, so a bad setting fails
    at once instead of producing NaNs or an all-zero grid deep in a training run.
    """
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool):
        raise ValueError(f"bits must be an integer from 2 to 8, got {bits!r}")
    if not 2 <= bits <= 8:
        raise ValueError(
            f"bits={bits} is outside 2..8: int8 is the widest integer this library "
            "stores, and 1-bit has no symmetric level besides zero"
        )
    if not isinstance(sub_channels, (int, np.integer)) or sub_channels < 1:
        raise ValueError(f"sub_channels must be a positive integer, got {sub_channels!r}")
    if isinstance(clip, str):
        if clip != "search":
            raise ValueError(f"clip must be a ratio in (0, 1] or 'search', got {clip!r}")
    elif not isinstance(clip, jax.core.Tracer):
        c = np.asarray(clip, dtype=np.float64)  # a ratio, or one per (group, channel)
        if c.size == 0 or not np.all((c > 0.0) & (c <= 1.0)):
            raise ValueError(f"clip ratio(s) must lie in (0, 1], got {clip!r}")
    if in_dim is not None and in_dim % sub_channels:
        raise ValueError(
            f"{name}: sub_channels={sub_channels} does not divide the input dimension "
            f"{in_dim}; choose a group count that divides {in_dim}"
        )


def int_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """The integer grid ``[qmin, qmax]``: ``[-127, 127]`` for symmetric int8, ``[-2, 1]``
    for asymmetric int2 (4 levels), ``[-1, 1]`` for symmetric int2 (3 levels)."""
    half = 2 ** (bits - 1)
    return (-(half - 1), half - 1) if symmetric else (-half, half - 1)


# --------------------------------------------------------------------------- container
@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class QuantizedArray:
    """A quantized ``(I, J)`` weight.

    Attributes:
      values: ``int8`` array of shape ``(I, J)``, inside :func:`int_range`.
      scale: float32 array ``(g, J)``: one scale per sub-channel group and output channel.
      zero_point: ``int8`` array ``(g, J)`` for the asymmetric grid, ``None`` if symmetric.
      bits, symmetric: the grid (static metadata, not traced).
    """

    values: jax.Array
    scale: jax.Array
    zero_point: jax.Array | None
    bits: int
    symmetric: bool

    @property
    def sub_channels(self) -> int:
        return int(self.scale.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def tree_flatten(self):
        return (self.values, self.scale, self.zero_point), (self.bits, self.symmetric)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)


# --------------------------------------------------------------------------- core maths
def _grouped(w: jax.Array, g: int) -> jax.Array:
    """``(I, J) -> (g, I/g, J)``: contiguous groups of inputs."""
    i, j = w.shape
    return w.reshape(g, i // g, j)


def _scale_and_zero(wg: jax.Array, bits: int, symmetric: bool, clip: jax.Array | float):
    """Scale and zero point per ``(group, channel)`` for grouped weights ``(g, I/g, J)``.

    ``clip`` broadcasts against ``(g, J)``.
    """
    qmin, qmax = int_range(bits, symmetric)
    if symmetric:
        amax = jnp.max(jnp.abs(wg), axis=1) * clip
        scale = amax / qmax
        zero = None
    else:
        lo = jnp.minimum(jnp.min(wg, axis=1), 0.0) * clip
        hi = jnp.maximum(jnp.max(wg, axis=1), 0.0) * clip
        scale = (hi - lo) / (qmax - qmin)
    # An all-zero group has no range: any positive scale represents it exactly.
    scale = jnp.where(scale > 0, scale, jnp.ones_like(scale))
    if not symmetric:
        zero = jnp.clip(jnp.round(qmin - lo / scale), qmin, qmax)
    return scale.astype(jnp.float32), zero


def _quantize_grouped(wg, scale, zero, bits, symmetric):
    qmin, qmax = int_range(bits, symmetric)
    q = jnp.round(wg / scale[:, None, :])
    if zero is not None:
        q = q + zero[:, None, :]
    return jnp.clip(q, qmin, qmax)


def _dequantize_grouped(q, scale, zero):
    if zero is not None:
        q = q - zero[:, None, :]
    return q * scale[:, None, :]


def _reconstruction_error(wg, bits, symmetric, clip):
    """Squared error per ``(group, channel)`` for a given clip ratio."""
    scale, zero = _scale_and_zero(wg, bits, symmetric, clip)
    w_hat = _dequantize_grouped(_quantize_grouped(wg, scale, zero, bits, symmetric), scale, zero)
    return jnp.sum((wg - w_hat) ** 2, axis=1)


def search_clip(
    w: jax.Array,
    bits: int,
    *,
    symmetric: bool = True,
    sub_channels: int = 1,
    grid: tuple[float, ...] = DEFAULT_CLIP_GRID,
) -> jax.Array:
    """Per-(group, channel) clip ratio from ``grid`` that minimises ``||w - w^||^2``.

    The 2-bit Conformer paper's clipping: shrinking the range trades a larger error on a
    few outliers for a finer step on everything else. ``grid`` always contains 1.0 (it is
    appended if missing), so the result is never worse than no clipping.

    Returns a float32 array of shape ``(g, J)``.
    """
    w = jnp.asarray(w, jnp.float32)
    check_quant_args(bits, symmetric, sub_channels, 1.0, w.shape[0])
    grid = tuple(sorted(set(float(c) for c in grid) | {1.0}))
    wg = _grouped(w, sub_channels)
    errs = jnp.stack([_reconstruction_error(wg, bits, symmetric, c) for c in grid])
    # argmin returns the first minimum; grid is sorted ascending, so reverse it to prefer
    # the widest range among ties (no clipping when clipping does not help).
    best = len(grid) - 1 - jnp.argmin(errs[::-1], axis=0)
    return jnp.asarray(grid, jnp.float32)[best]


def quantize(
    w: jax.Array, bits: int, *, symmetric: bool = True, sub_channels: int = 1, clip: Clip = 1.0
) -> QuantizedArray:
    """Quantize an ``(I, J)`` weight per output channel (Eq. 2).

    Args:
      w: float weight of shape ``(in, out)``.
      bits: 2..8.
      symmetric: symmetric grid ``[-qmax, qmax]`` (paper's int8/int4) or asymmetric grid
        with an integer zero point (paper's int2).
      sub_channels: number ``g`` of contiguous input groups per channel, each with its own
        scale; must divide ``in``.
      clip: ratio in ``(0, 1]`` applied to the range, or ``"search"`` for the per-channel
        grid search of :func:`search_clip`.

    Returns:
      A :class:`QuantizedArray` whose ``values`` are a real ``int8`` array.
    """
    w = jnp.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"quantize expects a 2-D (in, out) weight, got shape {w.shape}")
    check_quant_args(bits, symmetric, sub_channels, clip, w.shape[0])
    w = w.astype(jnp.float32)
    return _quantize_with_clip(
        w, bits, symmetric, sub_channels, _resolve_clip(w, bits, symmetric, sub_channels, clip)
    )


def dequantize(q: QuantizedArray) -> jax.Array:
    """``w^ = s * (q - z)``, back to float32, shape ``(I, J)``."""
    g = q.sub_channels
    vals = _grouped(q.values.astype(jnp.float32), g)
    zero = None if q.zero_point is None else q.zero_point.astype(jnp.float32)
    return _dequantize_grouped(vals, q.scale, zero).reshape(q.values.shape)


def _clip_bounds(w, bits, symmetric, sub_channels, clip):
    """Float interval ``[lo, hi]`` per element that the grid covers (for the STE)."""
    wg = _grouped(w, sub_channels)
    qmin, qmax = int_range(bits, symmetric)
    scale, zero = _scale_and_zero(wg, bits, symmetric, clip)
    z = 0.0 if zero is None else zero
    lo = (qmin - z) * scale
    hi = (qmax - z) * scale
    # Half a step of slack: values that round onto the end levels are "inside".
    lo = lo - 0.5 * scale
    hi = hi + 0.5 * scale
    shape = (sub_channels, 1, w.shape[1])
    return (
        jnp.broadcast_to(lo.reshape(shape), wg.shape).reshape(w.shape),
        jnp.broadcast_to(hi.reshape(shape), wg.shape).reshape(w.shape),
    )


def fake_quant(
    w: jax.Array, bits: int, *, symmetric: bool = True, sub_channels: int = 1, clip: Clip = 1.0
) -> jax.Array:
    """Quantize-dequantize in float, with the straight-through estimator.

    Forward: ``w^ = dequantize(quantize(w))``. Backward: ``d w^ / d w = 1`` where ``w``
    lies inside the grid's range (``round`` is treated as the identity) and ``0`` where it
    was clipped away. The scale is a function of ``w`` too, but, as in the paper and in
    most QAT code, no gradient flows through it.
    """
    w = jnp.asarray(w, jnp.float32)
    check_quant_args(bits, symmetric, sub_channels, clip, w.shape[0])
    w_sg = jax.lax.stop_gradient(w)
    clip = _resolve_clip(w_sg, bits, symmetric, sub_channels, clip)
    w_hat = dequantize(_quantize_with_clip(w_sg, bits, symmetric, sub_channels, clip))
    lo, hi = _clip_bounds(w_sg, bits, symmetric, sub_channels, clip)
    w_in = jnp.clip(w, lo, hi)
    return w_in + jax.lax.stop_gradient(w_hat - w_in)


def _resolve_clip(w, bits, symmetric, sub_channels, clip):
    """A clip ratio as an array broadcastable to ``(g, J)``; ``"search"`` runs the search."""
    if isinstance(clip, str):
        return search_clip(
            jax.lax.stop_gradient(w), bits, symmetric=symmetric, sub_channels=sub_channels
        )
    return jnp.asarray(clip, jnp.float32)


# --------------------------------------------------------------------------- matmuls
def native_matmul(x: jax.Array, q: QuantizedArray, *, compute_dtype=None) -> jax.Array:
    """Eq. (1): ``Y_j = s_j * (X @ q_j)``, ``q`` stored as an ``int8`` array, float arithmetic.

    With sub-channels the sum over inputs splits into ``g`` partial products, each scaled
    by its own ``s``; with a zero point, ``s * (X_g @ q_g - z * sum(X_g))``. In float32
    that sum is computed regrouped: ``sum_g s_g (X_g @ q_g - z_g sum(X_g)) = X @ w^``
    with ``w^ = s_g (q_g - z_g)`` row-block by row-block, so the scales are applied to the
    ``(I, J)`` weight and one plain dot follows. The sums are Eq. (1)'s in another order
    (float32 rounding apart); the literal form, a dot batched over the groups, writes a
    ``(..., g, J)`` partial product, ``g`` times the output: in the AN4 table (trained
    with it) the ``int2/gs8`` rows stepped 2.4x slower than per-channel ``int2``
    (``benchmarks/bench_subchannel.py`` times both forms side by side). In bfloat16 the
    grouped form stays (``g`` dots of the exact int8 values, the scales applied to their
    float32 results), because ``s * (q - z)`` is not exact in bfloat16.

    The stored weight is int8 (a quarter of float32's bytes), but the product is not
    integer arithmetic: the int8 values are converted to ``compute_dtype`` (exact: every
    int8 is a float32 and a bfloat16 number) and multiplied by a float dot that
    accumulates in float32. Compiled by XLA:CPU, the conversion is a separate elementwise
    fusion that writes a float copy of the whole weight (``(I, J)``; with sub-channels in
    float32, already scaled) before the dot reads it; see the module docstring. For an
    integer dot (int8 x int8 -> int32) use :func:`int8_matmul`.

    Args:
      x: activations ``(..., I)``.
      q: quantized weight ``(I, J)``.
      compute_dtype: dtype of the dot (default: ``x.dtype``); ``jnp.bfloat16`` runs the
        matmul at bfloat16 speed and accumulates in float32.
    """
    g = q.sub_channels
    i, j = q.values.shape
    if x.shape[-1] != i:
        raise ValueError(f"native_matmul: x has {x.shape[-1]} features, weight expects {i}")
    dt = compute_dtype or x.dtype
    if g == 1:  # the common per-channel case: one plain matmul, no grouped batch dim
        acc = jnp.matmul(x.astype(dt), q.values.astype(dt), preferred_element_type=jnp.float32)
        if q.zero_point is not None:
            acc = acc - jnp.sum(x.astype(jnp.float32), axis=-1, keepdims=True) * q.zero_point[
                0
            ].astype(jnp.float32)
        return (acc * q.scale[0]).astype(x.dtype)
    if jnp.dtype(dt) == jnp.float32:
        # Eq. (1) regrouped (docstring): the scales go on the weight, one (I, J) dot.
        return jnp.matmul(x.astype(dt), dequantize(q), preferred_element_type=jnp.float32).astype(
            x.dtype
        )
    xg = x.reshape(*x.shape[:-1], g, i // g).astype(dt)
    vg = q.values.reshape(g, i // g, j)
    # XLA:CPU has no batched bf16 x bf16 -> f32 dot ("Unsupported element type for
    # DotThunk"): one plain dot per group, each accumulating in float32.
    acc = jnp.stack(
        [
            jnp.matmul(xg[..., k, :], vg[k].astype(dt), preferred_element_type=jnp.float32)
            for k in range(g)
        ],
        axis=-2,
    )
    if q.zero_point is not None:
        acc = acc - jnp.sum(xg.astype(jnp.float32), axis=-1)[..., None] * q.zero_point.astype(
            jnp.float32
        )
    return jnp.sum(acc * q.scale, axis=-2).astype(x.dtype)


def qat_matmul(
    x: jax.Array,
    w: jax.Array,
    bits: int,
    *,
    symmetric: bool = True,
    sub_channels: int = 1,
    clip: Clip = 1.0,
    compute_dtype=None,
) -> jax.Array:
    """Native QAT: the forward pass of :func:`native_matmul`, the STE in the backward pass.

    Forward: quantize ``w`` to the integer grid (an ``int8`` array in the jaxpr) and
    compute Eq. (1) as :func:`native_matmul` does, with a float dot. Compiled, the
    quantization and the conversion back to float are one elementwise fusion that writes
    a float copy of the integer-valued weight; no int8 buffer is materialised. Backward
    (STE): the gradients are those of ``x @ w^`` with ``d w^ / d w = 1`` inside the
    grid's range, i.e. ``dx = dy @ w^.T`` and ``dw = x.T @ dy`` (zeroed where ``w`` was
    clipped), both float dots in ``compute_dtype``.

    Which dot, and why. The integer weight is converted inside a float dot: float32 by
    default, bfloat16 with ``compute_dtype=bfloat16`` (``train.compute_dtype``), which is
    exact for the weight (every int8 value is a bfloat16 number) and rounds only the
    activations; where the bfloat16 dot is faster (AMX, AVX-512 BF16, tensor cores) that
    option runs it. An integer dot (int8 x int8 -> int32, :func:`int8_matmul`) would need
    the activations quantized too (W8A8), a different model from the paper's, whose QAT
    quantizes weights only; it is an inference option (:mod:`usmlite_edu.deploy.infer`), not
    this forward. ``benchmarks/bench_infer.py`` times this forward beside the float32,
    bfloat16 and W8A8 products of the same layer (README "Export a packed model").
    """
    w = jnp.asarray(w, jnp.float32)
    check_quant_args(bits, symmetric, sub_channels, clip, w.shape[0])
    clip = _resolve_clip(w, bits, symmetric, sub_channels, clip)
    return _qat_core(x, w, clip, (bits, symmetric, sub_channels, compute_dtype))


def _quantize_with_clip(w, bits, symmetric, sub_channels, clip):
    wg = _grouped(w, sub_channels)
    scale, zero = _scale_and_zero(wg, bits, symmetric, clip)
    q = _quantize_grouped(wg, scale, zero, bits, symmetric).reshape(w.shape)
    zp = None if zero is None else zero.astype(jnp.int8)
    return QuantizedArray(q.astype(jnp.int8), scale, zp, bits, symmetric)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _qat_core(x, w, clip, static):
    bits, symmetric, g, dt = static
    return native_matmul(x, _quantize_with_clip(w, bits, symmetric, g, clip), compute_dtype=dt)


def _qat_fwd(x, w, clip, static):
    bits, symmetric, g, dt = static
    q = _quantize_with_clip(w, bits, symmetric, g, clip)
    y = native_matmul(x, q, compute_dtype=dt)
    return y, (x, w, q, clip)


def _qat_bwd(static, res, dy):
    bits, symmetric, g, dt = static
    x, w, q, clip = res
    w_hat = dequantize(q)
    lo, hi = _clip_bounds(w, bits, symmetric, g, clip)
    inside = (w >= lo) & (w <= hi)
    cdt = dt or x.dtype
    dx = jnp.einsum(
        "...j,ij->...i", dy.astype(cdt), w_hat.astype(cdt), preferred_element_type=jnp.float32
    ).astype(x.dtype)
    x2 = x.reshape(-1, x.shape[-1]).astype(cdt)
    dy2 = dy.reshape(-1, dy.shape[-1]).astype(cdt)
    dw = jnp.einsum("ni,nj->ij", x2, dy2, preferred_element_type=jnp.float32)
    dw = jnp.where(inside, dw, 0.0).astype(w.dtype)
    return dx, dw, jnp.zeros_like(clip)


_qat_core.defvjp(_qat_fwd, _qat_bwd)


def quantize_activations(x: jax.Array, bits: int = 8) -> tuple[jax.Array, jax.Array]:
    """Dynamic symmetric per-row (per token) quantization of activations ``(..., I)``.

    Returns ``(int8 values, float32 scale of shape (..., 1))``.
    """
    check_quant_args(bits, True, 1, 1.0)
    qmin, qmax = int_range(bits, True)
    amax = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
    scale = jnp.where(amax > 0, amax / qmax, 1.0).astype(jnp.float32)
    return jnp.clip(jnp.round(x / scale), qmin, qmax).astype(jnp.int8), scale


def int8_matmul(x: jax.Array, q: QuantizedArray, *, act_bits: int = 8) -> jax.Array:
    """int8 activations x int8 weights -> int32 accumulation -> float output.

    ``x`` is quantized per row with :func:`quantize_activations`; the integer product
    ``xq @ q`` runs in ``jax.lax.dot_general`` with ``preferred_element_type=int32``, which
    XLA:CPU compiles to a dot with ``s8`` operands and an ``s32`` result (an integer dot,
    the kind of arithmetic AMX / VNNI / tensor cores execute); then both scales are
    applied in float32. Equals ``dequant(xq) @ dequantize(q)`` up to float32 rounding of
    the final multiply.
    """
    if q.sub_channels != 1 or q.zero_point is not None:
        raise ValueError(
            "int8_matmul supports symmetric per-channel weights (sub_channels=1)"
            "; use native_matmul for sub-channel or asymmetric weights"
        )
    xq, xs = quantize_activations(x, act_bits)
    acc = jax.lax.dot_general(
        xq, q.values, (((xq.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.int32
    )
    return acc.astype(jnp.float32) * xs * q.scale[0]


# --------------------------------------------------------------------------- bit packing
# The package's one bit packer: the packed files (:mod:`usmlite_edu.deploy.export`) and the
# int4 inference kernels (:func:`pack_int4`) both write their codes with :func:`pack_bits`.
def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned integer codes, each ``< 2**bits``, into bytes, least-significant first.

    Code ``k`` occupies bits ``k*bits .. (k+1)*bits - 1`` of the little-endian bit stream:
    with ``bits=8`` one code per byte; ``bits=4`` two per byte, the first in the low
    nibble (``byte = c0 | c1 << 4``); ``bits=2`` four per byte (``c0 | c1 << 2 | c2 << 4
    | c3 << 6``). Widths that do not divide 8 (3, 5, 6, 7) run across byte boundaries. The
    last byte is padded with zero bits. Returns ``ceil(len(codes) * bits / 8)`` bytes.
    """
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"pack_bits: bits must be an integer from 1 to 8, got {bits!r}")
    codes = np.asarray(codes).ravel()
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise ValueError(
            f"pack_bits: codes must lie in [0, {2**bits - 1}] for {bits} bits, "
            f"got [{codes.min()}, {codes.max()}]"
        )
    codes = codes.astype(np.uint8)
    if 8 % bits == 0:  # whole codes per byte: shift each into its slot and OR them
        per = 8 // bits
        padded = np.zeros(-(-codes.size // per) * per, np.uint8)
        padded[: codes.size] = codes
        slots = padded.reshape(-1, per)
        out = np.zeros(slots.shape[0], np.uint8)
        for t in range(per):
            out |= slots[:, t] << (bits * t)
        return out
    # other widths: write every code's bits, lowest first, into one bit stream
    planes = (codes[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.ravel(), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The inverse of :func:`pack_bits`: ``count`` codes of ``bits`` bits, as ``uint8``.

    Refuses (``ValueError``) a byte count other than ``ceil(count * bits / 8)`` and
    padding bits that are not zero, the signs of a damaged or misread array.
    """
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"unpack_bits: bits must be an integer from 1 to 8, got {bits!r}")
    packed = np.asarray(packed, np.uint8).ravel()
    need = -(-count * bits // 8)
    if packed.size != need:
        raise ValueError(
            f"unpack_bits: {count} codes of {bits} bits need {need} bytes, got {packed.size}"
        )
    if 8 % bits == 0:
        per, mask = 8 // bits, (1 << bits) - 1
        slots = np.empty((packed.size, per), np.uint8)
        for t in range(per):
            slots[:, t] = (packed >> (bits * t)) & mask
        codes, pad = slots.ravel()[:count], slots.ravel()[count:]
    else:
        stream = np.unpackbits(packed, bitorder="little")
        planes = stream[: count * bits].reshape(count, bits)
        codes = (planes << np.arange(bits, dtype=np.uint8)).sum(axis=1).astype(np.uint8)
        pad = stream[count * bits :]
    if pad.any():
        raise ValueError("unpack_bits: the padding bits after the last code are not zero")
    return codes


def to_codes(q: np.ndarray, bits: int) -> np.ndarray:
    """Integer grid values ``q`` (Eq. 2, ``int8``) as unsigned codes ``q + 2**(bits-1)``."""
    return (np.asarray(q, np.int16) + 2 ** (bits - 1)).astype(np.uint8)


def from_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes back to the grid values ``q = code - 2**(bits-1)``, as ``int8``."""
    return (np.asarray(codes, np.int16) - 2 ** (bits - 1)).astype(np.int8)


# --------------------------------------------------------------------------- inference kernels
#: the integer arithmetics of :class:`IntKernel` (``usmlite-edu ... --arith``)
INT_ARITHS = ("w8", "w4", "w8a8")


def pack_int4(values: Any) -> np.ndarray:
    """Int4 grid values ``(I, J)`` in ``[-8, 7]`` -> ``uint8`` ``(ceil(I/2), J)``, two per byte
    (:func:`pack_bits` at 4 bits, on the host).

    Byte ``k`` of a column holds row ``2k`` in its low nibble and row ``2k + 1`` in its high
    nibble, each as the code ``q + 8``; an odd ``I`` gets a row of zeros (code 8) as padding.
    """
    v = np.asarray(values, np.int8)
    if v.shape[0] % 2:
        v = np.concatenate([v, np.zeros((1, v.shape[1]), np.int8)])
    rows, cols = v.shape[0] // 2, v.shape[1]
    # (pair, row in pair, column) -> (pair, column, row in pair): the two rows of one
    # byte next to each other in the code stream, the first in the low nibble
    pairs = to_codes(v, 4).reshape(rows, 2, cols).transpose(0, 2, 1)
    return pack_bits(pairs, 4).reshape(rows, cols)


def unpack_int4(packed: jax.Array, rows: int) -> jax.Array:
    """Inverse of :func:`pack_int4`: ``int8`` ``(rows, J)``. Under ``jit`` XLA fuses the
    shifts, masks and the conversion that follows into one elementwise pass."""
    p = packed.astype(jnp.int32)
    both = jnp.stack([(p & 15) - 8, (p >> 4) - 8], axis=1)
    return both.reshape(-1, packed.shape[1])[:rows].astype(jnp.int8)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class IntKernel:
    """A dense ``(I, J)`` weight stored for integer inference, with the arithmetic to run.

    Attributes:
      values: ``int8`` ``(I, J)`` grid values (``arith`` ``"w8"``, ``"w8a8"``), or ``uint8``
        ``(ceil(I/2), J)``, two int4 values a byte (``"w4"``, :func:`pack_int4`).
      scale, zero_point: as in :class:`QuantizedArray` (``(g, J)``).
      bits, symmetric: the grid; ``arith``: which arithmetic :meth:`matmul` runs; ``rows``:
        ``I`` (static metadata, not traced).

    :meth:`matmul`:

    * ``"w8"`` / ``"w4"`` (weight-only): the int8 values (``"w4"``: unpacked from their
      nibbles inside the jitted function) are converted to bfloat16 and multiplied by the
      activations rounded to bfloat16, accumulating in float32; then Eq. (1)'s scale (and
      zero point) as :func:`native_matmul` applies them. XLA:CPU fuses unpacking and
      conversion into one elementwise pass that writes a bfloat16 copy of the weight,
      which the ``bf16`` dot then reads (XLA has no mixed int4 x bf16 dot on CPU).
    * ``"w8a8"``: :func:`int8_matmul`: the activations quantized per token (row) to int8
      with a dynamic scale, an ``s8 x s8 -> s32`` dot, both scales applied in float32.
      Symmetric per-channel weights only (no zero point, one group).
    """

    values: jax.Array
    scale: jax.Array
    zero_point: jax.Array | None
    bits: int
    symmetric: bool
    arith: str
    rows: int

    def tree_flatten(self):
        aux = (self.bits, self.symmetric, self.arith, self.rows)
        return (self.values, self.scale, self.zero_point), aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children, *aux)

    @classmethod
    def from_quantized(cls, q: QuantizedArray, arith: str) -> IntKernel:
        """Store ``q`` for ``arith``, refusing (``ValueError``) a grid that does not fit it."""
        if arith not in INT_ARITHS:
            raise ValueError(f"arith must be one of {INT_ARITHS}, got {arith!r}")
        if arith == "w4" and q.bits > 4:
            raise ValueError(
                f"arith w4 holds 4-bit weights; these are int{q.bits} (use w8, or a 4-bit spec)"
            )
        if arith == "w8a8" and (q.sub_channels != 1 or q.zero_point is not None):
            raise ValueError(
                "arith w8a8 multiplies symmetric per-channel weights (one scale per output "
                "channel, no zero point); this weight has "
                f"{q.sub_channels} group(s) per channel"
                + (" and zero points" if q.zero_point is not None else "")
                + ": use w8 or w4 (weight-only) for int2 / sub-channel specs"
            )
        rows = int(q.values.shape[0])
        values = (
            jnp.asarray(pack_int4(q.values)) if arith == "w4" else jnp.asarray(q.values, jnp.int8)
        )
        return cls(values, q.scale, q.zero_point, q.bits, q.symmetric, arith, rows)

    def quantized(self) -> QuantizedArray:
        """The :class:`QuantizedArray` these bytes hold (int4 unpacked)."""
        v = unpack_int4(self.values, self.rows) if self.arith == "w4" else self.values
        return QuantizedArray(v, self.scale, self.zero_point, self.bits, self.symmetric)

    def matmul(self, x: jax.Array) -> jax.Array:
        """``x @ W`` in this kernel's arithmetic (class docstring); float32 out."""
        if self.arith == "w8a8":
            return int8_matmul(x, self.quantized()).astype(x.dtype)
        return native_matmul(x, self.quantized(), compute_dtype=jnp.bfloat16)


# --------------------------------------------------------------------------- LSQ
# Learned step size quantization (Esser et al. 2019, "Learned Step Size Quantization",
# arXiv 1902.08153; the USM-Lite paper's future work). The step size ``s`` of each
# (group, channel) is a trained parameter instead of Eq. (2)'s ``max|w| / qmax``.
# Symmetric grid only (the library's ``[-qmax, qmax]``, so the paper's ``Q_N = Q_P =
# qmax``); the asymmetric variant (LSQ+) is not implemented.


def _lsq_args(w: jax.Array, step: jax.Array, bits: int, sub_channels: int) -> None:
    check_quant_args(bits, True, sub_channels, 1.0, w.shape[0] if w.ndim == 2 else None)
    if w.ndim != 2:
        raise ValueError(f"LSQ expects a 2-D (in, out) weight, got shape {w.shape}")
    want = (sub_channels, w.shape[1])
    if tuple(step.shape) != want:
        raise ValueError(
            f"LSQ step size has shape {tuple(step.shape)}, expected (groups, out) = {want} "
            "for this weight; make it with lsq_init_step(w, bits, sub_channels=...)"
        )


def lsq_init_step(
    w: jax.Array, bits: int, *, sub_channels: int = 1, method: str = "minmax"
) -> jax.Array:
    """Initial step size per ``(group, channel)``, float32 ``(g, J)``; no gradient.

    ``method="minmax"`` (what the library's ``/lsq`` specs use): Eq. (2)'s scale
    ``max|w| / qmax``, so a model starts exactly where min/max quantization puts it and
    whatever LSQ changes comes from learning the step (for fine-tuning a trained model this
    is the natural baseline). ``method="paper"``: LSQ's ``2 mean|w| / sqrt(Q_P)``
    (section 2.1), designed for training from scratch; for int8 (``Q_P = 127``) it is
    several times coarser than the min/max step (notebook 11 measures the gap). An all-zero
    group gets step 1, as in :func:`quantize`.
    """
    w = jax.lax.stop_gradient(jnp.asarray(w, jnp.float32))
    if w.ndim != 2:
        raise ValueError(f"LSQ expects a 2-D (in, out) weight, got shape {w.shape}")
    check_quant_args(bits, True, sub_channels, 1.0, w.shape[0])
    _, qmax = int_range(bits, True)
    wg = jnp.abs(_grouped(w, sub_channels))
    if method == "minmax":
        step = jnp.max(wg, axis=1) / qmax
    elif method == "paper":
        step = 2.0 * jnp.mean(wg, axis=1) / np.sqrt(qmax)
    else:
        raise ValueError(f"LSQ init method must be 'minmax' or 'paper', got {method!r}")
    return jnp.where(step > 0, step, 1.0).astype(jnp.float32)


def lsq_grad_scale(n_w: int, bits: int) -> float:
    """LSQ's step-size gradient scale ``g = 1 / sqrt(N_W * Q_P)`` (section 2.2).

    ``N_W`` is the number of weights that share one step size: ``I / g`` per (group,
    channel) here (the paper has one step per layer, so its ``N_W`` is the layer's size).
    """
    _, qmax = int_range(bits, True)
    return float(1.0 / np.sqrt(n_w * qmax))


def lsq_quantize(
    w: jax.Array, step: jax.Array, bits: int, *, sub_channels: int = 1
) -> QuantizedArray:
    """``q = clip(round(w / s), -Q_P, Q_P)`` with the given step sizes ``(g, J)`` as the
    scale (LSQ Eq. 1): a symmetric :class:`QuantizedArray` that :func:`native_matmul`,
    :func:`dequantize` and the size accounting treat like any other. No gradient."""
    w = jnp.asarray(w, jnp.float32)
    step = jnp.asarray(step, jnp.float32)
    _lsq_args(w, step, bits, sub_channels)
    q = _quantize_grouped(_grouped(w, sub_channels), step, None, bits, True).reshape(w.shape)
    return QuantizedArray(q.astype(jnp.int8), step, None, bits, True)


def lsq_step_gradient(w: jax.Array, step: jax.Array, bits: int, *, sub_channels: int = 1):
    """``d w^ / d s`` per element, LSQ Eq. (3) (before the scale ``g``), shape ``(I, J)``:
    ``-v/s + round(v/s)`` where ``-Q_P < v/s < Q_P``, else the clip bound ``-Q_P`` or
    ``Q_P``. The hand-written formula the custom gradients below implement."""
    w = jnp.asarray(w, jnp.float32)
    _, qmax = int_range(bits, True)
    v = _grouped(w, sub_channels) / jnp.asarray(step, jnp.float32)[:, None, :]
    inside = (v > -qmax) & (v < qmax)
    return jnp.where(inside, jnp.round(v) - v, jnp.clip(v, -qmax, qmax)).reshape(w.shape)


def _lsq_backward(w, step, bits, g, dw_hat):
    """Weight and step gradients from ``dL/dw^`` (``(I, J)``): the STE through ``round``,
    zero outside the grid (Eq. 3's clip), and ``g * sum_group dL/dw^ * dw^/ds``."""
    _, qmax = int_range(bits, True)
    v = _grouped(w, g) / step[:, None, :]
    inside = (v > -qmax) & (v < qmax)
    dwg = _grouped(dw_hat, g)
    dw = jnp.where(inside, dwg, 0.0).reshape(w.shape)
    ds_elem = jnp.where(inside, jnp.round(v) - v, jnp.clip(v, -qmax, qmax))
    ds = jnp.sum(dwg * ds_elem, axis=1) * lsq_grad_scale(w.shape[0] // g, bits)
    return dw.astype(w.dtype), ds.astype(step.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _lsq_fq(w, step, bits, g):
    return dequantize(lsq_quantize(w, step, bits, sub_channels=g))


def _lsq_fq_fwd(w, step, bits, g):
    return _lsq_fq(w, step, bits, g), (w, step)


def _lsq_fq_bwd(bits, g, res, dw_hat):
    w, step = res
    return _lsq_backward(w, step, bits, g, dw_hat)


_lsq_fq.defvjp(_lsq_fq_fwd, _lsq_fq_bwd)


def lsq_fake_quant(w: jax.Array, step: jax.Array, bits: int, *, sub_channels: int = 1) -> jax.Array:
    """LSQ quantize-dequantize in float: ``w^ = s * clip(round(w / s), -Q_P, Q_P)``.

    Gradients (Esser et al. 2019, Eq. 3 and section 2.2): ``d w^ / d w = 1`` where
    ``-Q_P < w/s < Q_P`` (straight through ``round``), 0 outside; ``d w^ / d s`` is
    :func:`lsq_step_gradient`, summed over the ``I / g`` weights of each step size and
    multiplied by ``g = 1 / sqrt(N_W * Q_P)`` (:func:`lsq_grad_scale`). ``step`` is
    ``(g, J)``; every value must be positive.
    """
    w = jnp.asarray(w, jnp.float32)
    step = jnp.asarray(step, jnp.float32)
    _lsq_args(w, step, bits, sub_channels)
    return _lsq_fq(w, step, bits, sub_channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _lsq_mm(x, w, step, static):
    bits, g, dt = static
    return native_matmul(x, lsq_quantize(w, step, bits, sub_channels=g), compute_dtype=dt)


def _lsq_mm_fwd(x, w, step, static):
    bits, g, dt = static
    q = lsq_quantize(w, step, bits, sub_channels=g)
    return native_matmul(x, q, compute_dtype=dt), (x, w, step, q)


def _lsq_mm_bwd(static, res, dy):
    bits, g, dt = static
    x, w, step, q = res
    cdt = dt or x.dtype
    dx = jnp.einsum(
        "...j,ij->...i",
        dy.astype(cdt),
        dequantize(q).astype(cdt),
        preferred_element_type=jnp.float32,
    ).astype(x.dtype)
    x2 = x.reshape(-1, x.shape[-1]).astype(cdt)
    dy2 = dy.reshape(-1, dy.shape[-1]).astype(cdt)
    dw_hat = jnp.einsum("ni,nj->ij", x2, dy2, preferred_element_type=jnp.float32)
    dw, ds = _lsq_backward(w, step, bits, g, dw_hat)
    return dx, dw, ds


_lsq_mm.defvjp(_lsq_mm_fwd, _lsq_mm_bwd)


def lsq_matmul(
    x: jax.Array,
    w: jax.Array,
    step: jax.Array,
    bits: int,
    *,
    sub_channels: int = 1,
    compute_dtype=None,
) -> jax.Array:
    """Native QAT with a learned step: Eq. (1) ``Y_j = s_j * (X @ q_j)`` with ``q`` from
    :func:`lsq_quantize` (the forward of :func:`native_matmul`, float dot), and the LSQ
    gradients of :func:`lsq_fake_quant` for ``w`` and ``step`` in the backward pass
    (``dL/dw^ = X^T dY``, then Eq. 3). Differentiable in ``x``, ``w`` and ``step``."""
    w = jnp.asarray(w, jnp.float32)
    step = jnp.asarray(step, jnp.float32)
    _lsq_args(w, step, bits, sub_channels)
    return _lsq_mm(x, w, step, (bits, sub_channels, compute_dtype))


# --------------------------------------------------------------------------- what compiles
_HLO_INSTR = re.compile(
    r"^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+)\s*=\s*(?P<dtype>[a-z]\w*)\[(?P<shape>[\d,]*)\]\S*"
    r"\s+(?P<op>[a-z][\w\-]*)\((?P<args>[^)]*)\)"
)


@dataclasses.dataclass(frozen=True)
class HloOp:
    """One instruction of an optimized HLO module: its opcode, result and operand types."""

    opcode: str
    dtype: str
    shape: tuple[int, ...]
    operand_dtypes: tuple[str, ...]
    computation: str


def compiled_ops(fn, *args, opcode: str | None = None) -> list[HloOp]:
    """The instructions of ``jax.jit(fn)(*args)`` as XLA compiles it for the default backend.

    Parses ``jax.jit(fn).lower(*args).compile().as_text()``: every instruction with an
    array result, in every computation (fused ones included), with the element types of
    its result (``"f32"``, ``"s8"``, ``"s32"``, ...) and of its operands. ``opcode``
    keeps only, e.g., ``"dot"`` or ``"convert"``. This is what the tests use to check
    which arithmetic a matmul really runs (see the module docstring).
    """
    text = jax.jit(fn).lower(*args).compile().as_text()
    ops: list[HloOp] = []
    types: dict[str, str] = {}
    comp = ""
    pending: list[tuple[re.Match, str]] = []
    for line in text.splitlines():
        head = re.match(r"^(?:ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$", line)
        if head:
            comp, types = head.group(1), {}
            continue
        if line.startswith("}"):
            for m, c in pending:
                operands = re.findall(r"%([\w.\-]+)", m.group("args"))
                ops.append(
                    HloOp(
                        m.group("op"),
                        m.group("dtype"),
                        tuple(int(d) for d in m.group("shape").split(",") if d),
                        tuple(types.get(o, "?") for o in operands),
                        c,
                    )
                )
            pending = []
            continue
        m = _HLO_INSTR.match(line)
        if m:
            types[m.group("name")] = m.group("dtype")
            pending.append((m, comp))
    return [o for o in ops if opcode is None or o.opcode == opcode]
