"""Conformer-CTC with compressible dense layers, in Flax NNX: USM-Lite sections 3.1 and 4.2.

Architecture (Gulati et al. 2020, as configured by :class:`~usmlite_edu.speech.configs.ConformerConfig`)::

    log-mel (B, T, F)
      -> conv 3x3 stride 2 -> ReLU -> conv 3x3 stride 2 -> ReLU      ("frontend", float)
      -> linear projection to model_dim                              (compressible)
      -> num_layers x Conformer block (model.encoder.blocks[i]):
           x + 1/2 FFN(x)          LN, dense 4d, swish, dense d
           x + MHSA(x)             LN, relative-position self-attention (Transformer-XL)
           x + Conv(x)             LN, pointwise 2d, GLU, depthwise k, LN, swish, pointwise d
           x + 1/2 FFN(x)
           LN
      -> softmax layer (vocab)                                       (float)

Every dense matrix of the encoder (and the projection) runs through one
:class:`~usmlite_edu.core.specs.CompressionSpec`: the native int8 forward of Eq. (1) with
the STE backward (:func:`usmlite_edu.core.compress.compressed_matmul`). N:M masks are applied
to the parameters *before* the model sees them (:func:`apply_masks`, Eq. 4), so the
quantizer computes its scale on the pruned weight: prune-then-quantize, Algorithm 1.
The convolutions and the softmax stay float unless ``compress_convs`` / ``compress_softmax``.

Padding invariance: every layer that mixes time steps (the strided convolutions, the
depthwise convolution, attention) sees zeros, or is masked, at padded frames, so an
utterance gives the same outputs alone or in a padded batch. The strided convolutions
pad one frame on each side explicitly (``T -> ceil(T / 2)`` whatever T's parity), which a
'SAME' convolution would not do consistently.

Two ways to run it:

* as an object: ``model = build_model(cfg, "int4")``, ``logits, out_mask = model(feats,
  mask)``; a weight is an attribute, e.g. ``model.encoder.blocks[0].mhsa.query.kernel``;
* as a function of a parameter tree, for training: ``graphdef, params =
  split_model(model)`` (or :func:`model_graph` and :func:`init_params`), then
  ``forward(graphdef, params, feats, mask)``. ``params`` is a plain nested dict of arrays
  (the keys of ``encoder/blocks`` are ints), so optax, Orbax and ``jax.tree.map`` take it
  as it is; its paths are the names of :func:`param_table`.

The attention weights of every block are sown as ``nnx.Intermediate`` named
``"attention"`` when the call runs under ``nnx.capture`` (see :func:`attention_maps`;
loop layout only).

Every parameter declares what it is where it is created: its ``role`` (``dense``,
``conv``, ``softmax``, ``other``) and its logical sharding axes (flax's ``out_sharding``
metadata, names of :data:`usmlite_edu.scale.mesh.LOGICAL_RULES`). :func:`param_table`
reads them off the abstract model; the size accounting (:mod:`usmlite_edu.core.sizes`),
the N:M mask rule (:func:`compressible_mask_tree`) and the mesh's sharding
(:mod:`usmlite_edu.scale.mesh`) all use that table, so a new layer is described once.

Two parameter layouts (:attr:`ModelOptions.scan_layers`): the *loop* layout above (the
default; every checkpoint and per-layer tool uses it), and the *scan* layout, where the
blocks' parameters are stacked on a leading ``layers`` axis (``encoder/blocks/ffn1/...``)
and one ``jax.lax.scan`` runs them, the layout MaxText calls ``scan_layers``: XLA compiles
one block instead of ``num_layers``, which is what lets the 32-block 2B step compile on a
small machine (:mod:`usmlite_edu.training.plan`). :func:`stack_blocks` and
:func:`unstack_blocks` convert trees (params, masks, Adam moments, checkpoints) between
them; the logits agree to float rounding (``tests/test_scan_layers.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from usmlite_edu.core import compress, quant, sizes, sparsity
from usmlite_edu.core.sizes import ParamInfo
from usmlite_edu.core.specs import CompressionSpec, Spec, SpecMap, as_spec, layer_name
from usmlite_edu.scale import mesh as mesh_lib
from usmlite_edu.speech.configs import ConformerConfig
from usmlite_edu.speech.frontend import subsampled_lengths
from usmlite_edu.speech.presets import model_config

__all__ = [
    "ModelOptions",
    "ConformerCTC",
    "rel_shift",
    "relative_positions",
    "relative_logits_reference",
    "relative_logits",
    "subsampled_lengths",
    "check_spec",
    "build_model",
    "abstract_model",
    "split_model",
    "model_graph",
    "init_params",
    "forward",
    "attention_maps",
    "param_shapes",
    "param_table",
    "num_params",
    "compressible_weights",
    "compressible_layers",
    "resolve_specs",
    "layer_table",
    "LAYERS_AXIS",
    "is_stacked",
    "stack_blocks",
    "unstack_blocks",
    "normalize_param_keys",
    "compressible_mask_tree",
    "apply_masks",
    "LSQ_LEAF",
    "weight_at",
    "graphdef_with_kernels",
    "conform_lsq",
]

# The Linen model's initialisers and LayerNorm epsilon (nnx.LayerNorm's default is the
# same 1e-6 today; passed explicitly so a change of default cannot move the maths).
_KERNEL_INIT = jax.nn.initializers.lecun_normal()
_LN_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """How the model is compressed and computed (not part of the architecture).

    Attributes:
      spec: the compression applied to every compressible dense weight.
      compress_softmax: also compress the output layer (the paper keeps it float).
      compress_convs: also compress the convolution kernels (the paper keeps them float);
        the kernel is flattened to ``(taps * in, out)`` and fake-quantized.
      compute_dtype: dtype of the dense matmuls (``None`` = float32; ``"bfloat16"`` uses
        the CPU's AMX / a GPU's tensor cores, accumulating in float32).
      remat: rematerialisation of each encoder block (``"none"``, ``"block"``, ``"dots"``;
        see :class:`usmlite_edu.speech.configs.TrainConfig`).
      scan_layers: hold the Conformer blocks *stacked* (every block parameter gets a
        leading ``num_layers`` axis, logical axis ``"layers"``) and run them with one
        ``jax.lax.scan`` whose body is one block (rematerialised per block when ``remat``
        is set), as MaxText's ``scan_layers``: the compiler sees one block instead of
        ``num_layers`` copies, so compile time and compiler memory stop growing with depth.
        Off by default (the loop layout ``encoder/blocks/{i}/...`` of every checkpoint and
        of the per-layer tools); :func:`stack_blocks` / :func:`unstack_blocks` convert a
        parameter tree (or a mask tree, or a checkpoint) between the two layouts. The
        logits are the same to float rounding. Needs one spec for every block: a
        :class:`~usmlite_edu.core.specs.SpecMap` is refused (the loop runs it).
    """

    spec: CompressionSpec = CompressionSpec()
    compress_softmax: bool = False
    compress_convs: bool = False
    compute_dtype: str | None = None
    remat: str = "none"
    scan_layers: bool = False

    @property
    def quant_spec(self) -> CompressionSpec:
        """The spec without its N:M part (masks are applied to the params outside).

        For a per-layer :class:`~usmlite_edu.core.specs.SpecMap`: float, the placeholder
        each dense layer is built with before :class:`ConformerCTC` gives it its own."""
        if isinstance(self.spec, SpecMap):
            return CompressionSpec()
        return _quant_only(self.spec)


def _quant_only(spec: CompressionSpec) -> CompressionSpec:
    return spec.replace(n=None, m=None, mask_update_steps=1, sr_ste=False)


def _param(value: Any, axes: tuple[str | None, ...], role: str = "other") -> nnx.Param:
    """A parameter carrying its logical sharding axes (flax's ``out_sharding`` metadata,
    names of :data:`usmlite_edu.scale.mesh.LOGICAL_RULES`; not applied at creation) and its
    ``role`` (``"dense"``, ``"conv"``, ``"softmax"`` or ``"other"``)."""
    return nnx.Param(value, out_sharding=axes, eager_sharding=False, role=role)


def _tag(var: nnx.Variable, axes: tuple[str | None, ...], role: str = "other") -> None:
    """Give a parameter made by a flax layer (LayerNorm, Linear) the metadata of
    :func:`_param`."""
    var.set_metadata(out_sharding=axes, role=role)


def _layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    norm = nnx.LayerNorm(dim, epsilon=_LN_EPS, rngs=rngs)
    _tag(norm.scale, ("vector",))
    _tag(norm.bias, ("vector",))
    return norm


# --------------------------------------------------------------------------- layers
class QDense(nnx.Module):
    """A dense layer whose kernel goes through the quantizer (Eq. 1 forward, STE backward).

    ``kernel`` is ``(in, out)``, LeCun-normal; ``bias`` (if any) starts at zero. A model
    read from a packed file (:mod:`usmlite_edu.deploy.export`) holds a
    :class:`~usmlite_edu.core.quant.QuantizedArray` there instead, and the layer computes Eq. (1)
    from the stored integers; a model for integer inference (:mod:`usmlite_edu.deploy.infer`)
    holds a :class:`~usmlite_edu.core.quant.IntKernel`, whose own arithmetic runs.

    With an ``/lsq`` spec the layer also holds ``log_step`` (``(g, out)``): the logarithm of
    the LSQ step size of each (group, channel), initialised to Eq. 2's min/max scale, and
    runs :func:`usmlite_edu.core.quant.lsq_matmul` with ``s = exp(log_step)``. The gradient for
    ``s`` is LSQ's (Esser et al. 2019, Eq. 3, scaled by ``1/sqrt(N_W Q_P)``); the optimizer
    sees ``s * dL/ds``. Why the logarithm: Adam moves every parameter by about its learning
    rate per step whatever the gradient's scale, and step sizes range from about 1e-3
    (int8) to 1e-1 (int2); in log space the same learning rate is the same relative change
    for all of them, and ``s`` stays positive.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        spec: CompressionSpec,
        *,
        use_bias: bool = True,
        compute_dtype: str | None = None,
        axes: tuple[str, str] = ("embed", "mlp"),
        role: str = "dense",
        rngs: nnx.Rngs,
    ):
        self.spec = spec
        self.compute_dtype = compute_dtype
        kernel = _KERNEL_INIT(rngs.params(), (in_features, out_features))
        self.kernel = _param(kernel, axes, role)
        self.bias = _param(jnp.zeros((out_features,)), ("vector",)) if use_bias else None
        if spec.lsq:
            g = spec.for_input_dim(in_features).sub_channels
            step = quant.lsq_init_step(self.kernel.get_value(), spec.bits, sub_channels=g)
            self.log_step = _param(jnp.log(step), (None, None))

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel.get_value()
        if isinstance(kernel, quant.IntKernel):  # integer inference (usmlite_edu.deploy.infer)
            y = kernel.matmul(x)
        else:
            log_step = getattr(self, "log_step", None)
            step = None if log_step is None else jnp.exp(log_step.get_value())
            y = compress.compressed_matmul(
                x, kernel, self.spec, compute_dtype=self.compute_dtype, step=step
            )
        if self.bias is not None:
            y = y + self.bias[...]
        return y


def _maybe_fake_quant_kernel(kernel: jax.Array, spec: CompressionSpec) -> jax.Array:
    """Quantize a convolution kernel per output channel over its flattened taps x inputs.

    Min/max scales always: an ``/lsq`` spec learns step sizes for the dense layers only."""
    if not spec.quantized:
        return kernel
    flat = kernel.reshape(-1, kernel.shape[-1])
    if flat.shape[0] % (spec.group_size or spec.sub_channels):
        return kernel  # groups only defined for the dense layers; keep float
    spec = spec.for_input_dim(flat.shape[0])
    return quant.fake_quant(
        flat, spec.bits, symmetric=spec.symmetric, sub_channels=spec.sub_channels, clip=spec.clip
    ).reshape(kernel.shape)


# Channels-last layouts of 1-D and 2-D convolutions (input, kernel, output).
_CONV_DIMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def conv_s2(x: jax.Array, k: jax.Array) -> jax.Array:
    """A 3x3 stride-2 convolution with one row and column of zero padding on each side,
    ``(B, T, F, C)`` by ``(3, 3, C, O)``: the subsampler's, as XLA runs it."""
    return jax.lax.conv_general_dilated(
        x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_CONV_DIMS[2]
    )


def conv_s2_space_to_depth(x: jax.Array, k: jax.Array) -> jax.Array:
    """:func:`conv_s2` computed another way: ``x`` folded into 2x2 blocks (four times the
    channels) and convolved, stride 1, with the kernel zero-padded to 4x4 and folded the
    same way (tap ``i = 2 * di + p`` of the 3x3 kernel reads block row ``t + di``, phase
    ``p``). Same sums; used for the input gradient only."""
    b, t, f, c = x.shape
    to, fo = (t + 1) // 2, (f + 1) // 2
    xp = jnp.pad(x, ((0, 0), (1, 2 * (to + 1) - t - 1), (1, 2 * (fo + 1) - f - 1), (0, 0)))
    z = xp.reshape(b, to + 1, 2, fo + 1, 2, c).transpose(0, 1, 3, 2, 4, 5)
    z = z.reshape(b, to + 1, fo + 1, 4 * c)
    kp = jnp.pad(k, ((0, 1), (0, 1), (0, 0), (0, 0)))
    k2 = kp.reshape(2, 2, 2, 2, c, -1).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * c, -1)
    return jax.lax.conv_general_dilated(z, k2, (1, 1), "VALID", dimension_numbers=_CONV_DIMS[2])


def conv_s2_with_input_grad(input_grad: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]):
    """:func:`conv_s2` (XLA's forward and kernel gradient) whose input gradient is
    ``input_grad(x, k, cotangent)``, a ``jax.custom_vjp`` function of ``(x, k)``."""

    @jax.custom_vjp
    def conv(x: jax.Array, k: jax.Array) -> jax.Array:
        return conv_s2(x, k)

    def fwd(x, k):
        return conv_s2(x, k), (x, k)

    def bwd(res, ct):
        x, k = res
        dk = jax.vjp(lambda k_: conv_s2(x, k_), k)[1](ct)[0]
        return input_grad(x, k, ct), dk

    conv.defvjp(fwd, bwd)
    return conv


def _input_grad_space_to_depth(x: jax.Array, k: jax.Array, ct: jax.Array) -> jax.Array:
    return jax.vjp(lambda x_: conv_s2_space_to_depth(x_, k), x)[1](ct)[0]


#: The subsampler's convolution (:func:`conv_s2`), with its input gradient taken through
#: :func:`conv_s2_space_to_depth`: XLA:CPU runs the usual input gradient (a base-dilated
#: convolution) slowly; the folded form made the ``an4`` training step 5-6% faster at B0's
#: width and 9-17% at B3's in two runs (``benchmarks/bench_train.py --preset an4 --sizes``,
#: Intel Xeon, ``results/an4/README.md``). The forward and the kernel gradient are XLA's.
conv3x3_stride2 = conv_s2_with_input_grad(_input_grad_space_to_depth)


class QConv(nnx.Module):
    """A convolution with explicit padding whose kernel may be fake-quantized.

    ``kernel`` is ``(*kernel_size, in / groups, out)``, LeCun-normal; ``bias`` is zero.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: tuple[int, ...],
        strides: tuple[int, ...],
        padding: Any,
        spec: CompressionSpec | None = None,
        *,
        feature_group_count: int = 1,
        rngs: nnx.Rngs,
    ):
        self.strides = tuple(strides)
        self.padding = tuple(tuple(p) for p in padding)
        self.spec = spec
        self.feature_group_count = feature_group_count
        shape = (*kernel_size, in_features // feature_group_count, out_features)
        axes = ("taps",) * len(kernel_size) + ("embed", "mlp")
        self.kernel = _param(_KERNEL_INIT(rngs.params(), shape), axes, "conv")
        self.bias = _param(jnp.zeros((out_features,)), ("vector",))

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...]
        if self.spec is not None:
            kernel = _maybe_fake_quant_kernel(kernel, self.spec)
        if x.ndim == 3 and self.strides == (1,) and kernel.shape[1] == 1:
            # 1-D depthwise (the Conformer's convolution module): k shifted copies of x
            # times one tap each. XLA:CPU runs a grouped convolution and its gradient
            # slowly; this makes the cpu preset's training step 9-16% faster
            # (benchmarks/bench_train.py --rewrites). Same sums, another rounding order.
            (lo, hi), t = self.padding[0], x.shape[1]
            xp = jnp.pad(x, ((0, 0), (lo, hi), (0, 0)))
            y = sum(xp[:, j : j + t, :] * kernel[j, 0] for j in range(kernel.shape[0]))
        elif (
            x.ndim == 4
            and self.strides == (2, 2)
            and self.padding == ((1, 1), (1, 1))
            and kernel.shape[:2] == (3, 3)
            and self.feature_group_count == 1
        ):
            y = conv3x3_stride2(x, kernel)  # the subsampler's: a faster input gradient
        else:
            y = jax.lax.conv_general_dilated(
                x,
                kernel,
                self.strides,
                self.padding,
                dimension_numbers=_CONV_DIMS[x.ndim - 2],
                feature_group_count=self.feature_group_count,
            )
        return y + self.bias[...]


def _subsample_mask(mask: jax.Array) -> jax.Array:
    """Frame mask after one stride-2 conv with one frame of padding on each side."""
    lengths = jnp.sum(mask, axis=-1)
    t = (mask.shape[-1] + 1) // 2
    return jnp.arange(t)[None, :] < ((lengths + 1) // 2)[:, None]


class Subsampler(nnx.Module):
    """Two 3x3 stride-2 convolutions (4x in time and frequency) and a linear projection."""

    def __init__(self, cfg: ConformerConfig, opts: ModelOptions, *, rngs: nnx.Rngs):
        c1, c2 = cfg.subsample_channels
        conv_spec = opts.quant_spec if opts.compress_convs else None
        pad = ((1, 1), (1, 1))
        self.conv1 = QConv(1, c1, (3, 3), (2, 2), pad, conv_spec, rngs=rngs)
        self.conv2 = QConv(c1, c2, (3, 3), (2, 2), pad, conv_spec, rngs=rngs)
        self.proj = QDense(
            cfg.proj_in_dim,
            cfg.model_dim,
            opts.quant_spec,
            compute_dtype=opts.compute_dtype,
            rngs=rngs,
        )

    def __call__(self, feats: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = (feats * mask[..., None])[..., None]  # (B, T, F, 1), pads = 0
        x = self.conv1(x)
        mask = _subsample_mask(mask)
        x = jax.nn.relu(x) * mask[:, :, None, None]
        x = self.conv2(x)
        mask = _subsample_mask(mask)
        x = jax.nn.relu(x) * mask[:, :, None, None]
        b, t, f, c = x.shape
        x = self.proj(x.reshape(b, t, f * c))
        return x * mask[..., None], mask


#: Logical axes of a kernel that maps the hidden side back to the model dimension
#: (``dense2``, ``out``, ``pointwise2``); every other dense kernel is ``(embed, mlp)``.
_DOWN = ("mlp", "embed")


class FeedForward(nnx.Module):
    """LayerNorm, dense to ``ffn_dim``, swish, dropout, dense back to ``model_dim``, dropout."""

    def __init__(self, cfg: ConformerConfig, opts: ModelOptions, *, rngs: nnx.Rngs):
        dt = opts.compute_dtype
        self.norm = _layer_norm(cfg.model_dim, rngs)
        self.dense1 = QDense(
            cfg.model_dim, cfg.ffn_dim, opts.quant_spec, compute_dtype=dt, rngs=rngs
        )
        self.dense2 = QDense(
            cfg.ffn_dim, cfg.model_dim, opts.quant_spec, compute_dtype=dt, axes=_DOWN, rngs=rngs
        )
        self.dropout = nnx.Dropout(cfg.dropout)

    def __call__(self, x: jax.Array, deterministic: bool, rngs: nnx.Rngs | None) -> jax.Array:
        y = jax.nn.swish(self.dense1(self.norm(x)))
        y = self.dropout(y, deterministic=deterministic, rngs=rngs)
        return self.dropout(self.dense2(y), deterministic=deterministic, rngs=rngs)


# --------------------------------------------------------------------------- attention
def rel_shift(x: jax.Array) -> jax.Array:
    """Relative shift (Transformer-XL, Lingvo convention).

    ``x[..., i, r]`` holds a score for query ``i`` and relative distance ``r - (T-1)``
    (distances ordered from ``-(T-1)`` to ``T-1``, last axis of length ``2T - 1``). Returns
    ``out[..., i, j] = x[..., i, (T-1) + i - j]``: the score for distance ``i - j``.

    Lingvo's golden case: ``T = 3``, ``x[i, r] = i + 3 r`` gives
    ``[[6, 3, 0], [10, 7, 4], [14, 11, 8]]``.
    """
    # Without a gather (whose gradient is a slow scatter-add on XLA:CPU): reverse the last
    # axis (y[i, c] = x[i, 2T-2-c], so out[i, j] = y[i, j + T-1-i]), pad it to 2T, flatten
    # the last two axes (z[2T i + c] = y[i, c]); then out[i, j] = z[(T-1) + (2T-1) i + j],
    # a slice reshaped to (T, 2T-1) and cut to T columns. Bit-identical to indexing; the
    # training step is 0-7% faster (benchmarks/bench_train.py --rewrites).
    t = x.shape[-2]
    y = jnp.pad(x[..., ::-1], [(0, 0)] * (x.ndim - 1) + [(0, 1)])
    z = y.reshape(*x.shape[:-2], 2 * t * t)[..., t - 1 : t - 1 + t * (2 * t - 1)]
    return z.reshape(*x.shape[:-2], t, 2 * t - 1)[..., :t]


def relative_positions(t: int, dim: int) -> jax.Array:
    """Sinusoidal embeddings of distances ``-(T-1) .. T-1`` (rows in that order)."""
    pos = jnp.arange(-(t - 1), t, dtype=jnp.float32)[:, None]
    inv = 1.0 / (10000 ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    ang = pos * inv[None, :]
    return jnp.concatenate([jnp.sin(ang), jnp.cos(ang)], axis=-1)


def relative_logits(q, k, p, u, v):
    """Transformer-XL attention logits for a batch, via :func:`rel_shift`.

    ``q, k``: (B, T, H, Dh); ``p``: (2T-1, H, Dh) projected relative embeddings, rows
    ordered from distance -(T-1); ``u, v``: (H, Dh) the global content / position biases.
    Returns (B, H, T, T) with ``logit[i, j] = (q_i + u).k_j + (q_i + v).p[i - j]``
    (unscaled).
    """
    ac = jnp.einsum("bihd,bjhd->bhij", q + u, k)
    bd = rel_shift(jnp.einsum("bihd,rhd->bhir", q + v, p))
    return ac + bd


def relative_logits_reference(q, k, p, u, v):
    """The direct definition, one (i, j) at a time: ``(q_i + u).k_j + (q_i + v).P[i - j]``.

    ``q, k``: (T, H, Dh); ``p``: (2T-1, H, Dh) rows ordered from distance -(T-1);
    ``u, v``: (H, Dh). Returns (H, T, T). Slow; for tests and the notebook.
    """
    t = q.shape[0]
    out = np.zeros((q.shape[1], t, t), np.float64)
    for i in range(t):
        for j in range(t):
            ac = np.sum((q[i] + u) * k[j], axis=-1)
            bd = np.sum((q[i] + v) * p[(t - 1) + i - j], axis=-1)
            out[:, i, j] = ac + bd
    return out


class RelPositionAttention(nnx.Module):
    """Multi-head self-attention with Transformer-XL relative positions (Dai et al. 2019).

    ``logit[i, j] = (q_i + u).k_j + (q_i + v).W_p P[i - j]``, scaled by ``1/sqrt(Dh)``;
    padded keys are masked, and so are keys outside ``[i - left, i + right]`` when a
    limited context is configured (the paper: 128 frames each side). Under
    ``nnx.capture(..., nnx.Intermediate)`` the softmax weights ``(B, H, T, T)`` are sown
    as ``"attention"``.
    """

    def __init__(self, cfg: ConformerConfig, opts: ModelOptions, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, dt = cfg.model_dim, opts.compute_dtype
        dense = lambda bias=True, axes=("embed", "mlp"): QDense(
            d, d, opts.quant_spec, use_bias=bias, compute_dtype=dt, axes=axes, rngs=rngs
        )
        self.norm = _layer_norm(d, rngs)
        self.query, self.key, self.value = dense(), dense(), dense()
        self.pos = dense(bias=False)
        bias_axes = ("heads", "head_dim")
        self.u_bias = _param(jnp.zeros((cfg.num_heads, cfg.head_dim)), bias_axes)
        self.v_bias = _param(jnp.zeros((cfg.num_heads, cfg.head_dim)), bias_axes)
        self.out = dense(axes=_DOWN)
        self.dropout = nnx.Dropout(cfg.dropout)

    def __call__(
        self, x: jax.Array, mask: jax.Array, deterministic: bool, rngs: nnx.Rngs | None
    ) -> jax.Array:
        cfg = self.cfg
        h, dh = cfg.num_heads, cfg.head_dim
        b, t, _ = x.shape
        y = self.norm(x)
        q = self.query(y).reshape(b, t, h, dh)
        k = self.key(y).reshape(b, t, h, dh)
        v = self.value(y).reshape(b, t, h, dh)
        p = self.pos(relative_positions(t, cfg.model_dim)).reshape(2 * t - 1, h, dh)
        logits = relative_logits(q, k, p, self.u_bias[...], self.v_bias[...]) / np.sqrt(dh)
        allowed = mask[:, None, None, :]
        if cfg.left_context is not None or cfg.right_context is not None:
            i = jnp.arange(t)[:, None]
            j = jnp.arange(t)[None, :]
            ok = jnp.ones((t, t), bool)
            if cfg.left_context is not None:
                ok &= j >= i - cfg.left_context
            if cfg.right_context is not None:
                ok &= j <= i + cfg.right_context
            allowed = allowed & ok[None, None]
        logits = jnp.where(allowed, logits, -1e9)
        attn = jax.nn.softmax(logits, axis=-1)
        # Sow only under nnx.capture: outside it flax 0.12 stores every call's maps on the
        # module (deprecated), which would grow without bound in an eager loop.
        if hasattr(self, "__captures__"):
            self.sow(nnx.Intermediate, "attention", attn)
        attn = self.dropout(attn, deterministic=deterministic, rngs=rngs)
        out = jnp.einsum("bhij,bjhd->bihd", attn, v).reshape(b, t, cfg.model_dim)
        return self.dropout(self.out(out), deterministic=deterministic, rngs=rngs)


class ConvModule(nnx.Module):
    """Pointwise (2d) + GLU, depthwise conv (kernel k), LayerNorm, swish, pointwise (d).

    LayerNorm replaces the original BatchNorm: no batch statistics, so outputs do not
    depend on what else is in the batch (padding invariance) and eval equals train.
    """

    def __init__(self, cfg: ConformerConfig, opts: ModelOptions, *, rngs: nnx.Rngs):
        d, k, dt = cfg.model_dim, cfg.conv_kernel, opts.compute_dtype
        conv_spec = opts.quant_spec if opts.compress_convs else None
        self.norm = _layer_norm(d, rngs)
        self.pointwise1 = QDense(d, 2 * d, opts.quant_spec, compute_dtype=dt, rngs=rngs)
        self.depthwise = QConv(
            d, d, (k,), (1,), ((k // 2, k // 2),), conv_spec, feature_group_count=d, rngs=rngs
        )
        self.conv_norm = _layer_norm(d, rngs)
        self.pointwise2 = QDense(d, d, opts.quant_spec, compute_dtype=dt, axes=_DOWN, rngs=rngs)
        self.dropout = nnx.Dropout(cfg.dropout)

    def __call__(
        self, x: jax.Array, mask: jax.Array, deterministic: bool, rngs: nnx.Rngs | None
    ) -> jax.Array:
        y = self.pointwise1(self.norm(x))
        y = jax.nn.glu(y, axis=-1) * mask[..., None]  # zeros at padded frames
        y = jax.nn.swish(self.conv_norm(self.depthwise(y)))
        return self.dropout(self.pointwise2(y), deterministic=deterministic, rngs=rngs)


class ConformerBlock(nnx.Module):
    """Macaron block: ``x + FFN/2, + MHSA, + Conv, + FFN/2``, then LayerNorm; pads zeroed."""

    def __init__(self, cfg: ConformerConfig, opts: ModelOptions, *, rngs: nnx.Rngs):
        self.ffn1 = FeedForward(cfg, opts, rngs=rngs)
        self.mhsa = RelPositionAttention(cfg, opts, rngs=rngs)
        self.conv = ConvModule(cfg, opts, rngs=rngs)
        self.ffn2 = FeedForward(cfg, opts, rngs=rngs)
        self.final_norm = _layer_norm(cfg.model_dim, rngs)

    def __call__(
        self, x: jax.Array, mask: jax.Array, deterministic: bool, rngs: nnx.Rngs | None
    ) -> jax.Array:
        x = x + 0.5 * self.ffn1(x, deterministic, rngs)
        x = x + self.mhsa(x, mask, deterministic, rngs)
        x = x + self.conv(x, mask, deterministic, rngs)
        x = x + 0.5 * self.ffn2(x, deterministic, rngs)
        return self.final_norm(x) * mask[..., None]


def _constrain_act(x: jax.Array) -> jax.Array:
    """The batch axis of a ``(B, T, D)`` activation on the mesh's batch axes (a no-op
    without a mesh: :func:`usmlite_edu.scale.mesh.constrain`)."""
    return mesh_lib.constrain(x, ("batch", "length", "act_embed"))


class Encoder(nnx.Module):
    """``num_layers`` Conformer blocks, ``blocks[0]`` first.

    Loop layout (default): ``blocks`` is an ``nnx.List`` of blocks, run by a Python loop
    (the compiled program holds ``num_layers`` copies of the block).

    Scan layout (``opts.scan_layers``): ``blocks`` is *one* :class:`ConformerBlock` whose
    every parameter has a leading ``num_layers`` axis (block ``i``'s weights at index
    ``i``: the blocks are built one after another from the same RNG stream as the loop
    layout's and then stacked, so both layouts start from the same numbers). The call is
    ``jax.lax.scan`` over that axis; the body merges one slice back into a block and runs
    it (what ``nnx.scan`` does, written out). With ``remat`` the body is wrapped in
    ``jax.checkpoint``: the backward pass keeps each block's input only and recomputes
    the inside, one block at a time. Dropout draws one key per block from ``rngs``
    before the scan, so its masks differ from the loop layout's (eval is identical).
    """

    def __init__(self, cfg: ConformerConfig, opts: ModelOptions, *, rngs: nnx.Rngs):
        blocks = [ConformerBlock(cfg, opts, rngs=rngs) for _ in range(cfg.num_layers)]
        self.scan_layers = opts.scan_layers
        self.num_layers = cfg.num_layers
        self.blocks = _stack_modules(blocks) if opts.scan_layers else nnx.List(blocks)
        self.remat = opts.remat

    def _policy(self):
        if self.remat == "dots":
            return jax.checkpoint_policies.dots_with_no_batch_dims_saveable
        return None

    def __call__(
        self, x: jax.Array, mask: jax.Array, deterministic: bool, rngs: nnx.Rngs | None
    ) -> jax.Array:
        if self.scan_layers:
            return self._scan(x, mask, deterministic, rngs)

        def call(block, x, mask, rngs):  # positional only: nnx.remat's signature
            return block(x, mask, deterministic, rngs)

        if self.remat != "none":
            # jax.checkpoint per block: the backward pass recomputes the block's insides
            # from its input (and, for "dots", keeps the weight products).
            call = nnx.remat(call, policy=self._policy())
        for block in self.blocks:
            x = _constrain_act(call(block, x, mask, rngs))
        return x

    def _scan(
        self, x: jax.Array, mask: jax.Array, deterministic: bool, rngs: nnx.Rngs | None
    ) -> jax.Array:
        graphdef, stacked = nnx.split(self.blocks)
        keys = None if rngs is None else jax.random.split(rngs.dropout(), self.num_layers)

        def body(x, xs):
            state, key = xs
            block = nnx.merge(graphdef, state)
            r = None if key is None else nnx.Rngs(dropout=key)
            return _constrain_act(block(x, mask, deterministic, r)), None

        if self.remat != "none":
            body = jax.checkpoint(body, policy=self._policy())
        x, _ = jax.lax.scan(body, x, (stacked, keys))
        return x


#: Logical axis name of the leading (block) axis of a stacked parameter.
LAYERS_AXIS = "layers"


def _stack_modules(blocks: list[nnx.Module]) -> nnx.Module:
    """One module whose every parameter is the stack (new leading axis) of ``blocks``'
    parameters, with :data:`LAYERS_AXIS` prepended to its ``out_sharding`` metadata."""
    graphdef, first = nnx.split(blocks[0])
    states = [first] + [nnx.split(b)[1] for b in blocks[1:]]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    for v in jax.tree.leaves(stacked, is_leaf=lambda x: isinstance(x, nnx.Variable)):
        if isinstance(v, nnx.Variable):
            axes = v.get_metadata().get("out_sharding")
            if axes is not None:
                v.set_metadata(out_sharding=(LAYERS_AXIS, *axes))
    return nnx.merge(graphdef, stacked)


def check_spec(cfg: ConformerConfig, opts: ModelOptions) -> None:
    """Refuse (``ValueError`` naming the weight) a spec that some compressible weight of
    ``cfg`` cannot take, e.g. a sub-channel count that does not divide its input dimension."""
    if isinstance(opts.spec, SpecMap):
        if opts.scan_layers:
            raise ValueError(
                "scan_layers stacks the blocks under one spec; a per-layer spec map runs "
                "in the loop layout (scan_layers=False)"
            )
        if opts.compress_convs:
            raise ValueError(
                "a per-layer spec map compresses dense layers only; drop compress_convs"
            )
        resolve_specs(opts.spec, cfg, opts.compress_softmax)  # checks every layer's shape
        return
    if opts.spec.is_float:
        return  # float: nothing to check (and param_table builds a float model)
    for w in param_table(cfg):
        if w.role == "dense" or (w.role == "softmax" and opts.compress_softmax):
            opts.spec.check_shape(w.shape, w.name)


class ConformerCTC(nnx.Module):
    """Log-mel features ``(B, T, F)`` and frame mask ``(B, T)`` -> CTC logits and mask.

    Builds its parameters from ``rngs`` (LeCun-normal kernels, zero biases, unit
    LayerNorm scales) after checking every compressible weight against ``opts.spec``.
    """

    def __init__(
        self, cfg: ConformerConfig, opts: ModelOptions = ModelOptions(), *, rngs: nnx.Rngs
    ):
        check_spec(cfg, opts)
        self.cfg, self.opts = cfg, opts
        self.frontend = Subsampler(cfg, opts, rngs=rngs)
        self.encoder = Encoder(cfg, opts, rngs=rngs)
        if opts.compress_softmax:
            # As in the Linen model: a compressed softmax computes in float32 whatever
            # compute_dtype is.
            self.softmax = QDense(
                cfg.model_dim,
                cfg.vocab_size,
                opts.quant_spec,
                axes=("embed", "vocab"),
                role="softmax",
                rngs=rngs,
            )
        else:
            self.softmax = nnx.Linear(
                cfg.model_dim, cfg.vocab_size, kernel_init=_KERNEL_INIT, rngs=rngs
            )
            _tag(self.softmax.kernel, ("embed", "vocab"), "softmax")
            _tag(self.softmax.bias, ("vector",))
        if isinstance(opts.spec, SpecMap):
            # Each dense layer was built float; give it its own spec (a static attribute,
            # so it is part of the graphdef, like a one-spec model's).
            resolved = resolve_specs(opts.spec, cfg, opts.compress_softmax)
            for path, node in nnx.iter_graph(self):
                if isinstance(node, QDense):
                    name = "/".join(str(k) for k in path) + "/kernel"
                    node.spec = _quant_only(resolved[name])

    def __call__(
        self,
        feats: jax.Array,
        mask: jax.Array,
        *,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """``(logits (B, T', vocab), out_mask (B, T'))`` with ``T' = ceil(ceil(T/2)/2)``.

        Dropout (rate ``cfg.dropout``) runs only when ``deterministic`` is False, with keys
        drawn from ``rngs``'s ``dropout`` stream (e.g. ``nnx.Rngs(dropout=key)``).
        """
        if not deterministic and self.cfg.dropout > 0 and rngs is None:
            raise ValueError(
                "dropout with deterministic=False needs rngs, e.g. "
                "model(feats, mask, deterministic=False, "
                "rngs=nnx.Rngs(dropout=key))"
            )
        feats = mesh_lib.constrain(feats, ("batch", "length", None))
        x, mask = self.frontend(feats, mask)
        x = self.encoder(_constrain_act(x), mask, deterministic, rngs)
        return _constrain_act(self.softmax(x)), mask


# --------------------------------------------------------------------------- functional core
def build_model(
    cfg: ConformerConfig, spec: Spec | str = "float", *, seed: int = 0, **options
) -> ConformerCTC:
    """A model whose every compressible weight is checked against ``spec`` up front.

    ``options`` are the other :class:`ModelOptions` fields. Raises ``ValueError``
    (naming the weight) before any parameter is made if, e.g., the sub-channel count does
    not divide some layer's input dimension.
    """
    opts = ModelOptions(spec=as_spec(spec), **options)
    return ConformerCTC(cfg, opts, rngs=nnx.Rngs(seed))  # checks the spec first


def abstract_model(cfg: ConformerConfig, spec: Spec | str = "float", **options) -> ConformerCTC:
    """The model with ``jax.ShapeDtypeStruct`` for every parameter (``nnx.eval_shape``):
    the tree and shapes of any preset, the 2B one included, without allocating it.

    Tracing is quadratic in the number of parameters (flax 0.12 inspects every RNG count
    update of the trace): about 10 s for ``usm_2b`` on two CPU cores, well under 1 s for
    ``cpu``.
    """
    return nnx.eval_shape(lambda: build_model(cfg, spec, **options))


def weight_at(tree: Any, name: str) -> Any:
    """The leaf of a parameter tree at a slash-separated weight name
    (``encoder/blocks/0/ffn1/dense1/kernel``); block indices as ints or strings."""
    node = tree
    for k in name.split("/"):
        node = node[int(k)] if k.isdigit() and int(k) in node else node[k]
    return node


def graphdef_with_kernels(
    cfg: ConformerConfig,
    spec: Spec | str,
    kernels: Mapping[str, Any],
    **options,
) -> nnx.GraphDef:
    """The graphdef of :func:`abstract_model` with the kernels named in ``kernels``
    replaced by the given abstract values (e.g. a :class:`~usmlite_edu.core.quant.QuantizedArray`
    or :class:`~usmlite_edu.core.quant.IntKernel` of ``jax.ShapeDtypeStruct`` leaves): the
    structure of a model whose dense layers hold stored integers instead of floats."""
    m = abstract_model(cfg, spec, **options)
    for name, value in kernels.items():
        owner = m
        for k in name.split("/")[:-1]:
            owner = owner[int(k)] if k.isdigit() else getattr(owner, k)
        setattr(owner, name.rsplit("/", 1)[1], nnx.Param(value))
    return split_model(m)[0]


def split_model(model: ConformerCTC) -> tuple[nnx.GraphDef, dict]:
    """``(graphdef, params)``: the static structure and a plain nested dict of arrays.

    ``nnx.merge(graphdef, params)`` (what :func:`forward` does) rebuilds the model.
    """
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, nnx.to_pure_dict(params)


def model_graph(cfg: ConformerConfig, spec: Spec | str = "float", **options) -> nnx.GraphDef:
    """The graphdef of ``build_model(cfg, spec, **options)``, built abstractly (no memory)."""
    return split_model(abstract_model(cfg, spec, **options))[0]


def init_params(cfg: ConformerConfig, spec: Spec | str = "float", seed: int = 0, **options) -> dict:
    """Fresh parameters of ``build_model(cfg, spec, seed=seed, **options)``, as a dict."""
    params = split_model(build_model(cfg, spec, seed=seed, **options))[1]
    spec = as_spec(spec)
    if spec.lsq and spec.sparse:  # the step of a pruned layer starts from the kept weights
        params = conform_lsq(
            params,
            cfg,
            spec,
            one_shot_masks(params, spec, cfg, **options),
            reset=True,
            compress_softmax=options.get("compress_softmax", False),
        )
    return params


def forward(
    graphdef: nnx.GraphDef,
    params: Any,
    feats: jax.Array,
    mask: jax.Array,
    *,
    deterministic: bool = True,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The model as a pure function of its parameters: ``nnx.merge`` then call.

    ``params`` is the dict of :func:`split_model` / :func:`init_params` (N:M masks
    already applied, see :func:`apply_masks`). ``dropout_key`` seeds every dropout layer
    of this call (a new key per layer, drawn in order); needed when ``deterministic`` is
    False and ``cfg.dropout > 0``. Differentiable and jittable (``graphdef`` is hashable,
    so it can also be a static argument). Raises ``ValueError`` if ``params`` is not the
    graphdef's tree, e.g. string block keys (see :func:`normalize_param_keys`).
    """
    model = nnx.merge(graphdef, params)
    # merge places a dict's leaves by flattening order, not by name: a tree with other
    # keys (Orbax's "0", "1", ..., "10" sort differently from ints) would run silently
    # with the blocks permuted. Refuse it (checked once per trace under jit).
    want = jax.tree.structure(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    if jax.tree.structure(params) != want:
        got_names = {_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
        want_names = set(param_shapes(model))
        diff = sorted(got_names ^ want_names)[:3]
        raise ValueError(
            "forward: params do not match the model's parameter tree"
            + (
                f"; first differing paths: {diff}"
                if diff
                else "; same names but other key types: a tree Orbax restored without a target "
                "has string keys for encoder/blocks, fix it with normalize_param_keys"
            )
        )
    rngs = None if dropout_key is None else nnx.Rngs(dropout=dropout_key)
    return model(feats, mask, deterministic=deterministic, rngs=rngs)


def attention_maps(
    model: ConformerCTC, feats: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array, list[jax.Array]]:
    """``(logits, out_mask, [attention of block i, (B, H, T', T')])`` of one eval call,
    captured with ``nnx.capture`` from the weights each block sows."""
    (logits, out_mask), inter = nnx.capture(model, nnx.Intermediate)(feats, mask)
    blocks = inter["encoder"]["blocks"]
    maps = [blocks[i]["mhsa"]["attention"].get_value()[0] for i in range(len(model.encoder.blocks))]
    return logits, out_mask, maps


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def param_shapes(model: ConformerCTC | ConformerConfig) -> dict[str, tuple[int, ...]]:
    """``{"frontend/conv1/kernel": shape, ...}``, "/"-joined NNX paths.

    A config is built abstractly (:func:`abstract_model`), so no memory is used.
    """
    if isinstance(model, ConformerConfig):
        model = abstract_model(model)
    flat = jax.tree_util.tree_flatten_with_path(split_model(model)[1])[0]
    return {_path_name(path): tuple(v.shape) for path, v in flat}


def _params_in_creation_order(node: Any, path: tuple = ()) -> list[tuple[tuple, nnx.Param]]:
    """``(path, Param)`` of every parameter under ``node``, in the order the modules
    assigned them (attribute order; list items by index): frontend, blocks 0, 1, ...,
    softmax, as a reader of the architecture expects (``nnx.iter_graph`` sorts by name)."""
    if isinstance(node, nnx.Param):
        return [(path, node)]
    if isinstance(node, nnx.List):
        items = list(enumerate(node))
    elif isinstance(node, nnx.Module):
        items = list(vars(node).items())
    else:
        return []
    out = []
    for k, child in items:
        out += _params_in_creation_order(child, (*path, k))
    return out


@functools.lru_cache(maxsize=256)
def _declared_rows(cfg: ConformerConfig, spec: Any, options: tuple) -> tuple[ParamInfo, ...]:
    """The rows of :func:`param_table` for ``cfg`` exactly as built (``nnx.eval_shape``)."""
    order: list[tuple] = []

    def build() -> ConformerCTC:
        model = build_model(cfg, spec, **dict(options))
        # static: the paths in the order the modules made them (eval_shape's output
        # module holds its attributes sorted by name)
        order.extend(path for path, _ in _params_in_creation_order(model))
        return model

    m = nnx.eval_shape(build)
    params = dict(_params_in_creation_order(m))
    rows = []
    for path in order:
        v = params[path]
        meta = v.get_metadata()
        role = meta.get("role", "other")
        rows.append(
            ParamInfo(
                "/".join(str(k) for k in path),
                tuple(v.shape),
                role,
                role == "dense" or (role == "softmax" and m.opts.compress_softmax),
                tuple(meta["out_sharding"]),
            )
        )
    return tuple(rows)


@functools.lru_cache(maxsize=64)
def _param_table(cfg: ConformerConfig, spec: Any, options: tuple) -> tuple[ParamInfo, ...]:
    # Built for one block and repeated: every block is the same module with the same
    # parameters (Encoder), and tracing grows quadratically with the model (about 10 s
    # for the 32-block usm_2b, well under 1 s for one block).
    rows = _declared_rows(cfg.replace(num_layers=1), spec, options)
    scan = dict(options).get("scan_layers", False)
    out: list[ParamInfo] = []
    block = [r for r in rows if r.name.startswith("encoder/blocks/")]
    for r in rows:
        if r not in block:
            out.append(r)
        elif r is block[0]:  # the blocks' rows are contiguous: emit all blocks here
            if scan:
                out += [b._replace(shape=(cfg.num_layers, *b.shape[1:])) for b in block]
            else:
                out += [
                    b._replace(name=b.name.replace("encoder/blocks/0/", f"encoder/blocks/{i}/", 1))
                    for i in range(cfg.num_layers)
                    for b in block
                ]
    return tuple(out)


def param_table(
    cfg: ConformerConfig, spec: Spec | str = "float", **options
) -> tuple[ParamInfo, ...]:
    """Every parameter of ``build_model(cfg, spec, **options)``, as the model declares it:
    path, shape, role, compressible, logical axes (:class:`usmlite_edu.core.sizes.ParamInfo`).

    Read off the abstract model (:func:`abstract_model`, no memory): shapes from
    ``nnx.eval_shape``, role and axes from the metadata each parameter is created with
    (:func:`_param`). With ``scan_layers=True`` the block parameters are stacked
    (``encoder/blocks/ffn1/...``, leading ``num_layers`` axis, axis name ``"layers"``).
    Cached per (config, spec, options); built for one block and repeated for the others
    (the blocks are one module built ``num_layers`` times), so it is fast at any depth.
    """
    if isinstance(spec, SpecMap):
        # a map builds every dense layer float and then sets its spec: the same parameters
        spec = "float"
    return _param_table(cfg, as_spec(spec), tuple(sorted(options.items())))


def _table_of(model: ConformerConfig | str) -> tuple[tuple[ParamInfo, ...], int]:
    """``(param_table, model_dim)`` of a preset name or config: the resolver
    :mod:`usmlite_edu.core.sizes` uses for names and configs."""
    cfg = model_config(model) if isinstance(model, str) else model
    return param_table(cfg), cfg.model_dim


sizes.register_model_tables(_table_of)


def num_params(cfg: ConformerConfig) -> int:
    """The number of parameters of ``cfg``'s model (float, loop layout), from :func:`param_table`."""
    return sum(w.size for w in param_table(cfg))


def compressible_weights(
    cfg: ConformerConfig, compress_softmax: bool = False
) -> dict[str, tuple[int, ...]]:
    """``{kernel name: shape}`` of ``cfg``'s compressible weights, in model order: role
    ``dense`` in :func:`param_table`, plus the output layer with ``compress_softmax`` (the
    rule of :func:`compressible_mask_tree`)."""
    return {
        w.name: tuple(w.shape)
        for w in param_table(cfg)
        if w.role == "dense" or (w.role == "softmax" and compress_softmax)
    }


def compressible_layers(cfg: ConformerConfig, compress_softmax: bool = False) -> list[str]:
    """Layer names (kernel names without ``/kernel``) of ``cfg``'s compressible weights."""
    return [layer_name(n) for n in compressible_weights(cfg, compress_softmax)]


def resolve_specs(
    spec: Spec, cfg: ConformerConfig, compress_softmax: bool = False
) -> dict[str, CompressionSpec]:
    """``{kernel name: spec}`` for every compressible weight of ``cfg``, each checked against
    its shape (a map's rules also against the layer names: :meth:`SpecMap.resolve`); one
    spec gives every layer itself."""
    weights = compressible_weights(cfg, compress_softmax)
    if isinstance(spec, SpecMap):
        return spec.resolve(weights, cfg.name)
    for name, shape in weights.items():
        spec.check_shape(shape, name)
    return dict.fromkeys(weights, spec)


def layer_table(spec_map: Spec, cfg: ConformerConfig) -> list[dict[str, Any]]:
    """One row per compressible weight of ``cfg`` under ``spec_map``: its layer, shape,
    spec and stored bits (exact convention: values, scales, zero points, N:M index) and the
    paper's estimate (%), from :mod:`usmlite_edu.core.sizes` on that weight's table row."""
    rows_of = {w.name: w for w in param_table(cfg)}
    rows = []
    for name, spec in resolve_specs(spec_map, cfg).items():
        w = rows_of[name]
        rows.append(
            {
                "layer": layer_name(name),
                "shape": tuple(w.shape),
                "spec": str(spec),
                "exact_bits": sizes.model_size(spec, [w]).total,
                "paper_percent": sizes.size_ratio(spec, [w], "paper", paper_in_dim=cfg.model_dim),
            }
        )
    return rows


def normalize_param_keys(tree: Any) -> Any:
    """The tree with every all-digit string key turned into an int.

    Orbax restores a checkpoint without a target with string keys, so ``encoder/blocks``
    comes back as ``{"0": ..., "1": ...}``; ``nnx.merge`` needs the ints of ``nnx.List``.
    """
    if isinstance(tree, dict):
        return {
            (int(k) if isinstance(k, str) and k.isdigit() else k): normalize_param_keys(v)
            for k, v in tree.items()
        }
    return tree


def _blocks_of(tree: Any) -> Any:
    enc = tree.get("encoder") if isinstance(tree, Mapping) else None
    if not isinstance(enc, Mapping) or "blocks" not in enc:
        raise ValueError("not a Conformer-CTC tree: no encoder/blocks")
    return enc["blocks"]


def is_stacked(tree: Any) -> bool:
    """Whether ``tree`` (params, masks, a restored checkpoint) is in the scan layout:
    ``encoder/blocks`` holds one block's names with stacked leaves, not block indices."""
    blocks = _blocks_of(tree)
    return not any(isinstance(k, int) or str(k).isdigit() for k in blocks)


def stack_blocks(tree: Any) -> dict:
    """Loop layout -> scan layout (:attr:`ModelOptions.scan_layers`): the blocks'
    subtrees ``encoder/blocks/{i}/...`` become one subtree ``encoder/blocks/...`` whose
    leaves are ``jnp.stack`` of block 0, 1, ... (a new leading axis). Works on params,
    N:M mask trees and Adam moments; a 0-d leaf (the scalar ``True`` mask of an unpruned
    leaf) is kept as it is. Digit-string keys (Orbax) are accepted; a tree already
    stacked is returned unchanged. ``unstack_blocks(stack_blocks(t)) == t``."""
    tree = normalize_param_keys(tree)
    if is_stacked(tree):
        return tree
    blocks = _blocks_of(tree)
    per = [blocks[i] for i in range(len(blocks))]
    stacked = jax.tree.map(lambda *xs: xs[0] if np.ndim(xs[0]) == 0 else jnp.stack(xs), *per)
    return {**tree, "encoder": {**tree["encoder"], "blocks": stacked}}


def unstack_blocks(tree: Any) -> dict:
    """Scan layout -> loop layout, the inverse of :func:`stack_blocks`: leaf ``[i]`` of
    every stacked leaf goes to ``encoder/blocks/{i}`` (0-d leaves are copied to every
    block). A tree already in the loop layout is returned unchanged."""
    tree = normalize_param_keys(tree)
    if not is_stacked(tree):
        return tree
    stacked = _blocks_of(tree)
    n = {np.shape(x)[0] for x in jax.tree.leaves(stacked) if np.ndim(x) > 0}
    if len(n) != 1:
        raise ValueError(f"unstack_blocks: stacked leaves disagree on the block count: {n}")
    (n,) = n
    blocks = {
        i: jax.tree.map(lambda x, i=i: x if np.ndim(x) == 0 else x[i], stacked) for i in range(n)
    }
    return {**tree, "encoder": {**tree["encoder"], "blocks": blocks}}


def _loop_name(name: str) -> str:
    """A scan-layout parameter name as block 0's loop-layout name
    (``encoder/blocks/ffn1/dense1/kernel`` -> ``encoder/blocks/0/ffn1/dense1/kernel``);
    other names unchanged."""
    return re.sub(r"^encoder/blocks/(?!\d+(/|$))", "encoder/blocks/0/", name)


def compressible_mask_tree(
    params: Any, cfg: ConformerConfig, opts: ModelOptions = ModelOptions()
) -> Any:
    """Pytree of bools like ``params``: which leaves get N:M masks (Eq. 4).

    One rule, from the roles the parameters declare (:func:`param_table`): ``dense``
    weights are masked, the ``softmax`` kernel only with ``opts.compress_softmax``, nothing
    else (N:M on convolutions is not part of the paper's recipe). Works on any subtree of
    the parameters (keys as ints or digit strings); an unknown path is a ``ValueError``.
    """
    roles = {w.name: w.role for w in param_table(cfg)}

    def pick(path, _leaf) -> bool:
        name = _loop_name(_path_name(path))
        if name not in roles:
            raise ValueError(
                f"compressible_mask_tree: {name!r} is not a parameter of config {cfg.name!r}"
            )
        role = roles[name]
        return role == "dense" or (role == "softmax" and opts.compress_softmax)

    def pick_or_lsq(path, leaf) -> bool:
        if _path_name(path).endswith("/" + LSQ_LEAF):
            return False  # an LSQ step size (see conform_lsq) is never pruned
        return pick(path, leaf)

    return jax.tree_util.tree_map_with_path(pick_or_lsq, params)


def apply_masks(params: Any, masks: Any | None, straight_through: bool = False) -> Any:
    """Eq. (4) on every masked leaf: ``W * M`` (SR-STE: the gradient passes the mask).

    ``masks`` is a tree like ``params``: a bool mask on each pruned leaf, a scalar
    ``True`` elsewhere (as :func:`usmlite_edu.core.sparsity.nm_masked` keeps them); ``None``
    returns ``params`` unchanged.
    """
    if masks is None:
        return params
    return jax.tree.map(lambda w, m: sparsity.apply_mask(w, m, straight_through), params, masks)


def one_shot_masks(params: Any, spec: Spec | str, cfg: ConformerConfig, **options) -> Any | None:
    """Eq. (3) once on the given weights, on every compressible kernel: post-training
    N:M pruning (``None`` for a dense spec). Other leaves get a scalar ``True``, as in the
    masks :func:`usmlite_edu.core.sparsity.nm_masked` keeps during training."""
    spec = as_spec(spec)
    if not spec.sparse:
        return None
    where = nm_pattern_tree(params, cfg, ModelOptions(spec=spec, **options))
    return jax.tree.map(
        lambda w, p: sparsity.nm_mask(w, p.n, p.m, axis=-2) if p else jnp.ones((), bool),
        params,
        where,
    )


def nm_pattern_tree(params: Any, cfg: ConformerConfig, opts: ModelOptions) -> Any:
    """Like :func:`compressible_mask_tree`, with each pruned leaf's N:M pattern: a
    :class:`usmlite_edu.core.sparsity.Pattern` where ``opts.spec`` (or, for a
    :class:`~usmlite_edu.core.specs.SpecMap`, that layer's spec) is sparse, ``False``
    elsewhere. The ``where`` of :func:`usmlite_edu.core.sparsity.nm_masked`."""
    spec = opts.spec

    def pattern(path, keep):
        if not keep:
            return False
        s = spec.spec_for(_path_name(path)) if isinstance(spec, SpecMap) else spec
        return sparsity.Pattern(s.n, s.m) if s.sparse else False

    where = compressible_mask_tree(params, cfg, opts)
    return jax.tree_util.tree_map_with_path(pattern, where)


#: The leaf name of an LSQ layer's step size (its logarithm), beside ``kernel``.
LSQ_LEAF = "log_step"


def conform_lsq(
    params: Any,
    cfg: ConformerConfig,
    spec: Spec | str,
    masks: Any | None = None,
    *,
    reset: bool = False,
    compress_softmax: bool = False,
) -> Any:
    """``params`` with exactly the LSQ step sizes (``log_step`` leaves) that ``spec`` needs.

    An ``/lsq`` spec gives every compressible dense layer a ``log_step`` (see
    :class:`QDense`); a layer without one (a float model fine-tuned or evaluated under
    LSQ: post-training quantization) gets the initial value, the log of Eq. 2's min/max
    scale of ``kernel * mask`` (``masks``: the N:M mask tree, or ``None`` for the weights as
    given), so LSQ before training is min/max quantization. ``reset`` re-initialises
    existing ones too. A spec without ``lsq`` drops every ``log_step`` (evaluating an LSQ
    run under min/max scales). Pure; works under ``jax.jit``.
    """
    spec = as_spec(spec)
    want: set[str] = set()
    if spec.lsq:
        want = {
            w.name.rsplit("/", 1)[0]
            for w in param_table(cfg)
            if w.role == "dense" or (w.role == "softmax" and compress_softmax)
        }
        want |= {re.sub(r"^encoder/blocks/0/", "encoder/blocks/", n) for n in want}  # scan

    def walk(node, mnode, prefix):
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k == LSQ_LEAF:
                continue
            sub = mnode.get(k) if isinstance(mnode, dict) else None
            out[k] = walk(v, sub, f"{prefix}/{k}" if prefix else str(k))
        if prefix in want:
            if LSQ_LEAF in node and not reset:
                out[LSQ_LEAF] = node[LSQ_LEAF]
            else:
                w = jnp.asarray(node["kernel"], jnp.float32)
                m = mnode.get("kernel") if isinstance(mnode, dict) else None
                if m is not None and jnp.ndim(m) >= 2:
                    w = jnp.where(m, w, 0.0)
                g = spec.for_input_dim(w.shape[-2]).sub_channels
                init = lambda k: quant.lsq_init_step(k, spec.bits, sub_channels=g)  # noqa: E731
                for _ in range(w.ndim - 2):  # stacked blocks (scan layout): one per block
                    init = jax.vmap(init)
                out[LSQ_LEAF] = jnp.log(init(w))
        return out

    return walk(params, masks, "")
