"""Joint prune-then-quantize of one weight: USM-Lite section 3.4, Algorithm 1.

The spec (what is done to a weight, and its string grammar ``"int4+2:4"``, ``"int2/g64"``,
...) is :class:`usmlite_edu.core.specs.CompressionSpec`; this module applies one.

Prune-then-quantize (Algorithm 1, lines 7-8): the mask is applied first; the scale is then
computed on the masked weight, so pruned entries do not widen the range, and because
zero is on every grid (see :mod:`usmlite_edu.core.quant`) the pruned entries quantize to the
zero point and dequantize to exactly 0.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from usmlite_edu.core import quant, sparsity
from usmlite_edu.core.specs import CompressionSpec, as_spec

__all__ = [
    "prune_then_quantize",
    "prune_then_quantize_jit",
    "compress_weight",
    "compressed_matmul",
]


def _prune(w: jax.Array, spec: CompressionSpec | str, mask: jax.Array | None):
    """Shared first half of Algorithm 1 for one weight: validate the spec against the
    shape, resolve a group size to this layer's group count, and apply Eq. (4).

    Returns ``(spec, pruned float32 weight, mask or None)``. The mask, if not given, is
    Eq. (3) on the weight's current values (no gradient flows into the mask).
    """
    spec = as_spec(spec)
    w = jnp.asarray(w, jnp.float32)
    spec.check_shape(w.shape)
    spec = spec.for_input_dim(w.shape[0])
    if not spec.sparse:
        return spec, w, None
    if mask is None:
        mask = sparsity.nm_mask(jax.lax.stop_gradient(w), spec.n, spec.m, axis=0)
    return spec, sparsity.apply_mask(w, mask, straight_through=spec.sr_ste), mask


def _lsq_step(w: jax.Array, spec: CompressionSpec, step: jax.Array | None) -> jax.Array:
    """The step sizes of an ``/lsq`` spec: the trained ones, or (``None``, e.g. post-training
    quantization of a float model) their initialisation, Eq. 2's min/max scale of the
    pruned weight, so that LSQ before any training is min/max quantization."""
    if step is None:
        return quant.lsq_init_step(w, spec.bits, sub_channels=spec.sub_channels)
    return step


def prune_then_quantize(
    w: jax.Array,
    spec: CompressionSpec | str,
    mask: jax.Array | None = None,
    *,
    step: jax.Array | None = None,
) -> tuple[jax.Array, quant.QuantizedArray | None]:
    """Algorithm 1, lines 5-8, for one ``(I, J)`` weight.

    Returns ``(mask, q)``: the N:M mask (``None`` if dense; computed with Eq. 3 if not
    given) and the quantized masked weight (``None`` if float). The scale is computed on
    ``W * mask``; pruned entries quantize to the zero point, i.e. exactly 0. An ``/lsq``
    spec uses ``step`` (``(g, J)``; default: its min/max initialisation) as the scale.
    """
    spec, w, mask = _prune(w, spec, mask)
    q = None
    if spec.lsq:
        return mask, quant.lsq_quantize(
            w, _lsq_step(w, spec, step), spec.bits, sub_channels=spec.sub_channels
        )
    if spec.quantized:
        q = quant.quantize(
            w, spec.bits, symmetric=spec.symmetric, sub_channels=spec.sub_channels, clip=spec.clip
        )
    return mask, q


@functools.partial(jax.jit, static_argnums=1)
def prune_then_quantize_jit(w, spec: CompressionSpec, mask=None):
    """:func:`prune_then_quantize` under ``jax.jit``, as the model's forward computes it:
    XLA folds constants that op-by-op execution rounds separately, so a weight compressed
    outside the model (a packed file, an integer kernel) equals the one the model uses only
    when both are compiled. ``spec`` is static (hashable)."""
    return prune_then_quantize(w, spec, mask)


def compress_weight(
    w: jax.Array,
    spec: CompressionSpec | str,
    mask: jax.Array | None = None,
    *,
    step: jax.Array | None = None,
) -> jax.Array:
    """The float weight the compressed layer effectively uses: ``dequant(Q(W * M))``.

    Differentiable with the STE (quantization) and through the mask (gradients of pruned
    entries are zero). This is the "fake" path; :func:`compressed_matmul` is the native one.
    An ``/lsq`` spec quantizes with ``step`` (:func:`usmlite_edu.core.quant.lsq_fake_quant`,
    differentiable in ``step`` too; default: the min/max initialisation).
    """
    spec, w, _ = _prune(w, spec, mask)
    if spec.lsq:
        return quant.lsq_fake_quant(
            w, _lsq_step(w, spec, step), spec.bits, sub_channels=spec.sub_channels
        )
    if spec.quantized:
        w = quant.fake_quant(
            w, spec.bits, symmetric=spec.symmetric, sub_channels=spec.sub_channels, clip=spec.clip
        )
    return w


def compressed_matmul(
    x: jax.Array,
    w: jax.Array | quant.QuantizedArray,
    spec: CompressionSpec | str,
    mask: jax.Array | None = None,
    *,
    compute_dtype=None,
    step: jax.Array | None = None,
) -> jax.Array:
    """``x @ W`` through the spec, as a QAT layer runs it (Algorithm 1, lines 7-8).

    Prune with ``mask`` (Eq. 4), then the native int8 forward of Eq. (1) with the STE in
    the backward pass (:func:`usmlite_edu.core.quant.qat_matmul`). A float spec is a plain
    matmul (in ``compute_dtype`` if given). A ``w`` that is already quantized (a
    :class:`~usmlite_edu.core.quant.QuantizedArray`, e.g. read from a packed file by
    :mod:`usmlite_edu.deploy.export`) goes straight to that forward,
    :func:`usmlite_edu.core.quant.native_matmul`: the same arithmetic, without re-deriving
    ``q``, scale and zero point from float weights (and without a gradient). An ``/lsq``
    spec runs :func:`usmlite_edu.core.quant.lsq_matmul` with ``step`` (``(g, J)``, trained by
    the caller; default: the min/max initialisation, which then gets no gradient).
    """
    if isinstance(w, quant.QuantizedArray):
        return quant.native_matmul(x, w, compute_dtype=compute_dtype)
    spec, w, _ = _prune(w, spec, mask)
    if spec.lsq:
        return quant.lsq_matmul(
            x,
            w,
            _lsq_step(w, spec, step),
            spec.bits,
            sub_channels=spec.sub_channels,
            compute_dtype=compute_dtype,
        )
    if spec.quantized:
        return quant.qat_matmul(
            x,
            w,
            spec.bits,
            symmetric=spec.symmetric,
            sub_channels=spec.sub_channels,
            clip=spec.clip,
            compute_dtype=compute_dtype,
        )
    dt = compute_dtype or x.dtype
    return jnp.matmul(x.astype(dt), w.astype(dt), preferred_element_type=jnp.float32).astype(
        x.dtype
    )
