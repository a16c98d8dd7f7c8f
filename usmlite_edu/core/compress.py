"""Joint prune-then-quantize of one weight: USM-Lite section 3.4, Algorithm 1.

A :class:`CompressionSpec` names everything that is done to a dense weight: the integer
grid (bits, symmetric or not, sub-channels, clipping) and the N:M pattern with its mask
schedule. Specs are written as short strings used everywhere in the project, the CLI and
the notebooks::

    float            no compression (B0)
    int8, int4       symmetric per-channel grid [-127,127], [-7,7]   (E0-E3)
    int2             asymmetric 4-level grid                          (E4)
    int2/g64         ... with 64 sub-channel groups per channel       (E5-E7)
    int2/gs24        ... groups of 24 inputs in every layer (g = in_dim / 24)
    2:4, 1:4         N:M magnitude pruning, one-shot mask             (E8, E10)
    2:4/fs100        ... few-shot: mask updated for the first 100 steps  (E9, E11)
    int4+2:4         prune, then quantize the kept weights            (E12, E13)
    int4/lsq         learned step sizes (LSQ, Esser et al. 2019; the paper's future work)

Options after ``/``: ``g<G>`` sub-channels (a count), ``gs<N>`` (a group size), ``sym`` / ``asym``, ``clip<r>`` (e.g.
``clip0.9``) or ``clipsearch`` on a quantizer, or ``lsq`` (a trained step size per
(group, channel) instead of Eq. 2's min/max scale; symmetric grids only, no clip); ``fs<T>`` (few-shot, ``T_p = T``),
``oneshot``, ``srste`` on a pattern. ``str(spec)`` is the canonical name and
``CompressionSpec.parse(str(spec)) == spec``.

Prune-then-quantize (Algorithm 1, lines 7-8): the mask is applied first; the scale is then
computed on the masked weight, so pruned entries do not widen the range, and because
zero is on every grid (see :mod:`usmlite_edu.core.quant`) the pruned entries quantize to the
zero point and dequantize to exactly 0.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Literal

import jax
import jax.numpy as jnp

from usmlite_edu.core import quant, sparsity

__all__ = [
    "CompressionSpec",
    "as_spec",
    "prune_then_quantize",
    "prune_then_quantize_jit",
    "compress_weight",
    "compressed_matmul",
]

Clip = float | Literal["search"]


@dataclasses.dataclass(frozen=True)
class CompressionSpec:
    """What is done to every compressible dense weight.

    Attributes:
      bits: integer bit width 2..8, or ``None`` for float weights.
      symmetric: symmetric grid (default for >= 3 bits) or asymmetric (default for int2,
        as in the paper).
      sub_channels: groups per output channel along the input dimension.
      group_size: alternatively, inputs per group (``/gs<N>``): each layer gets
        ``in_dim / N`` groups, so layers of different widths share one group size.
      clip: clip ratio in (0, 1] or ``"search"``.
      n, m: N:M pattern (both ``None`` = dense).
      mask_update_steps: ``T_p``; 1 = one-shot.
      sr_ste: SR-STE instead of plain gradient masking (the paper's future work).
      lsq: learned step size quantization (Esser et al. 2019, the paper's future work):
        each (group, channel) step size is a trained parameter (initialised to Eq. 2's
        min/max scale), see :func:`usmlite_edu.core.quant.lsq_matmul`.
    """

    bits: int | None = None
    symmetric: bool = True
    sub_channels: int = 1
    group_size: int | None = None
    clip: Clip = 1.0
    n: int | None = None
    m: int | None = None
    mask_update_steps: int = 1
    sr_ste: bool = False
    lsq: bool = False

    def __post_init__(self):
        if self.bits is not None:
            quant.check_quant_args(self.bits, self.symmetric, self.sub_channels, self.clip)
        elif (
            self.sub_channels != 1
            or self.group_size is not None
            or self.clip != 1.0
            or not self.symmetric
        ):
            raise ValueError(
                "sub_channels / clip / asym only make sense with a bit width "
                "(e.g. 'int2/g64'); float weights take none of them"
            )
        if self.lsq:
            if self.bits is None:
                raise ValueError(
                    "lsq learns a quantizer's step size: give a bit width, e.g. 'int4/lsq'"
                )
            if not self.symmetric:
                raise ValueError(
                    "lsq is implemented for symmetric grids only (asymmetric LSQ+ is not); "
                    f"write 'int{self.bits}/sym/lsq'"
                )
            if self.clip != 1.0:
                raise ValueError(
                    "lsq learns the range that clip<r> / clipsearch would fix; use one or the other"
                )
        if self.group_size is not None:
            if not isinstance(self.group_size, int) or self.group_size < 1:
                raise ValueError(f"group_size must be a positive integer, got {self.group_size!r}")
            if self.sub_channels != 1:
                raise ValueError("give sub-channels as a count (g<G>) or a size (gs<N>), not both")
        if (self.n is None) != (self.m is None):
            raise ValueError("give both n and m for N:M sparsity, or neither")
        if self.n is not None:
            sparsity.check_nm(self.n, self.m)
        elif self.mask_update_steps != 1 or self.sr_ste:
            raise ValueError(
                "mask schedule options (fs<T>, srste) need an N:M pattern, e.g. '2:4/fs100'"
            )
        if not isinstance(self.mask_update_steps, int) or self.mask_update_steps < 1:
            raise ValueError(
                f"mask_update_steps (T_p) must be >= 1, got {self.mask_update_steps!r}"
            )

    # ------------------------------------------------------------------ properties
    @property
    def quantized(self) -> bool:
        return self.bits is not None

    @property
    def sparse(self) -> bool:
        return self.n is not None

    @property
    def is_float(self) -> bool:
        return not (self.quantized or self.sparse)

    @property
    def density(self) -> float:
        """Fraction of weights kept (``n / m``; 1 for dense)."""
        return 1.0 if self.n is None else self.n / self.m

    @property
    def few_shot(self) -> bool:
        return self.sparse and self.mask_update_steps > 1

    # ------------------------------------------------------------------ validation
    def groups_for(self, in_dim: int) -> int:
        """Sub-channel groups of a layer with ``in_dim`` inputs."""
        return in_dim // self.group_size if self.group_size else self.sub_channels

    def for_input_dim(self, in_dim: int) -> CompressionSpec:
        """This spec with a group size resolved to a group count for one layer."""
        if self.group_size is None:
            return self
        return self.replace(sub_channels=max(in_dim // self.group_size, 1), group_size=None)

    def check_shape(self, shape: tuple[int, ...], name: str = "weight") -> None:
        """Refuse (``ValueError`` naming ``name``) a weight this spec cannot compress."""
        if len(shape) != 2:
            raise ValueError(f"{name}: compressible weights are 2-D (in, out), got {shape}")
        if self.quantized and self.group_size and shape[0] % self.group_size:
            raise ValueError(
                f"{name}: group size {self.group_size} does not divide its input dimension "
                f"{shape[0]} (spec '{self}'); choose a group size that divides every layer"
            )
        if self.quantized and shape[0] % self.sub_channels:
            raise ValueError(
                f"{name}: {self.sub_channels} sub-channels do not divide its input dimension "
                f"{shape[0]} (spec '{self}'); choose a group count that divides {shape[0]}"
            )
        if self.sparse and shape[0] % self.m:
            raise ValueError(
                f"{name}: N:M group size m={self.m} does not divide its input "
                f"dimension {shape[0]} (spec '{self}')"
            )

    # ------------------------------------------------------------------ names
    def __str__(self) -> str:
        parts = []
        if self.quantized:
            q = f"int{self.bits}"
            default_sym = self.bits >= 3
            if self.symmetric != default_sym:
                q += "/sym" if self.symmetric else "/asym"
            if self.sub_channels != 1:
                q += f"/g{self.sub_channels}"
            if self.group_size is not None:
                q += f"/gs{self.group_size}"
            if self.clip == "search":
                q += "/clipsearch"
            elif float(self.clip) != 1.0:
                q += f"/clip{float(self.clip):g}"
            if self.lsq:
                q += "/lsq"
            parts.append(q)
        if self.sparse:
            s = f"{self.n}:{self.m}"
            if self.mask_update_steps != 1:
                s += f"/fs{self.mask_update_steps}"
            if self.sr_ste:
                s += "/srste"
            parts.append(s)
        return "+".join(parts) if parts else "float"

    @classmethod
    def parse(cls, text: str) -> CompressionSpec:
        """Parse a spec name such as ``"int4+2:4/fs100"`` (grammar in the module doc)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"empty compression spec {text!r}; try 'float', 'int4' or '2:4'")
        kw: dict = {}
        for part in text.strip().lower().split("+"):
            head, *opts = part.split("/")
            if head in ("float", "fp32", "float32", "dense"):
                if opts:
                    raise ValueError(f"'{head}' takes no options in spec {text!r}")
                continue
            mq = re.fullmatch(r"int(\d+)", head)
            mn = re.fullmatch(r"(\d+):(\d+)", head)
            if mq:
                if "bits" in kw:
                    raise ValueError(f"spec {text!r} names two bit widths")
                bits = int(mq.group(1))
                kw.update(bits=bits, symmetric=bits >= 3)
                for o in opts:
                    if o == "sym":
                        kw["symmetric"] = True
                    elif o == "asym":
                        kw["symmetric"] = False
                    elif re.fullmatch(r"g\d+", o):
                        kw["sub_channels"] = int(o[1:])
                    elif re.fullmatch(r"gs\d+", o):
                        kw["group_size"] = int(o[2:])
                    elif o == "clipsearch":
                        kw["clip"] = "search"
                    elif o == "lsq":
                        kw["lsq"] = True
                    elif re.fullmatch(r"clip\d*\.?\d+", o):
                        kw["clip"] = float(o[4:])
                    else:
                        raise ValueError(
                            f"unknown quantizer option '{o}' in spec {text!r} "
                            "(known: sym, asym, g<G>, gs<N>, clip<r>, clipsearch, lsq)"
                        )
            elif mn:
                if "n" in kw:
                    raise ValueError(f"spec {text!r} names two N:M patterns")
                kw.update(n=int(mn.group(1)), m=int(mn.group(2)))
                for o in opts:
                    if re.fullmatch(r"fs\d+", o):
                        kw["mask_update_steps"] = int(o[2:])
                    elif o == "oneshot":
                        kw["mask_update_steps"] = 1
                    elif o == "srste":
                        kw["sr_ste"] = True
                    elif o == "lsq":
                        raise ValueError(
                            f"lsq is a quantizer option, not a sparsity one, in spec {text!r}: "
                            "write it after the bit width, e.g. 'int4/lsq+2:4'"
                        )
                    else:
                        raise ValueError(
                            f"unknown sparsity option '{o}' in spec {text!r} "
                            "(known: fs<T>, oneshot, srste)"
                        )
            else:
                raise ValueError(
                    f"cannot read '{part}' in spec {text!r}: expected 'float', "
                    "'int<bits>[/opts]' or '<n>:<m>[/opts]', joined by '+'"
                )
        try:
            return cls(**kw)
        except ValueError as e:  # the field checks name the field; say which spec too
            raise ValueError(f"spec {text!r}: {e}") from None

    def replace(self, **changes) -> CompressionSpec:
        return dataclasses.replace(self, **changes)


def as_spec(
    spec: CompressionSpec | str | None, default: CompressionSpec | None = None
) -> CompressionSpec:
    """Anything that names a compression, as a :class:`CompressionSpec`.

    Accepts a spec (returned as is), its string name (``"int4+2:4"``), or ``None``, which
    gives ``default`` (or ``float`` without one). The one place where names become specs.
    A per-layer :class:`usmlite_edu.core.layer_specs.SpecMap` or its name (``"map:{...}"``) is
    returned as a ``SpecMap``: code that needs one spec per model refuses it by type.
    """
    if spec is None:
        return default if default is not None else CompressionSpec()
    if isinstance(spec, CompressionSpec):
        return spec
    from usmlite_edu.core.layer_specs import MAP_PREFIX, SpecMap  # a map names specs itself

    if isinstance(spec, SpecMap):
        return spec
    if isinstance(spec, str) and spec.startswith(MAP_PREFIX):
        return SpecMap.parse(spec)
    if isinstance(spec, str):
        return CompressionSpec.parse(spec)
    raise TypeError(
        f"expected a CompressionSpec or a spec name such as 'int4+2:4', "
        f"got {type(spec).__name__} {spec!r}"
    )


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
