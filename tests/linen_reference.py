"""Frozen Flax Linen Conformer-CTC: the golden reference for ``tests/test_model_golden.py``.

A verbatim copy of ``usmlite_edu/speech/model.py`` as of commit 57ad0d4, the last Linen version
(the same maths and parameter tree as the version that trained the committed
``results/cpu`` checkpoints). The library's model is now written with ``flax.nnx``;
this file only exists so a test can check that the NNX model, given a converted Linen
checkpoint, computes the same logits. It is not part of the library and must not be
edited to follow it: it imports only the library's pure functions (quantizer, compressed
matmul, configs, frame lengths), which the two models share.

Original module docstring (USM-Lite sections 3.1 and 4.2) follows.

Conformer-CTC with compressible dense layers: USM-Lite sections 3.1 and 4.2.

Architecture (Gulati et al. 2020, as configured by :class:`~usmlite_edu.speech.configs.ConformerConfig`)::

    log-mel (B, T, F)
      -> conv 3x3 stride 2 -> ReLU -> conv 3x3 stride 2 -> ReLU      ("frontend", float)
      -> linear projection to model_dim                              (compressible)
      -> num_layers x Conformer block:
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
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu.core import compress, quant, sparsity
from usmlite_edu.core.specs import CompressionSpec
from usmlite_edu.speech.configs import ConformerConfig
from usmlite_edu.speech.frontend import subsampled_lengths

__all__ = [
    "ModelOptions",
    "ConformerCTC",
    "rel_shift",
    "relative_logits_reference",
    "relative_logits",
    "subsampled_lengths",
    "compressible_mask_tree",
    "apply_masks",
    "build_model",
    "param_shapes",
]


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
    """

    spec: CompressionSpec = CompressionSpec()
    compress_softmax: bool = False
    compress_convs: bool = False
    compute_dtype: str | None = None

    @property
    def quant_spec(self) -> CompressionSpec:
        """The spec without its N:M part (masks are applied to the params outside)."""
        return self.spec.replace(n=None, m=None, mask_update_steps=1, sr_ste=False)


# --------------------------------------------------------------------------- layers
class QDense(nn.Module):
    """A dense layer whose kernel goes through the quantizer (Eq. 1 forward, STE backward)."""

    features: int
    spec: CompressionSpec
    use_bias: bool = True
    compute_dtype: Any = None

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        self.spec.check_shape(kernel.shape, self.name or "dense")
        y = compress.compressed_matmul(x, kernel, self.spec, compute_dtype=self.compute_dtype)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return y


def _maybe_fake_quant_kernel(kernel, spec: CompressionSpec):
    """Quantize a convolution kernel per output channel over its flattened taps x inputs."""
    if not spec.quantized:
        return kernel
    flat = kernel.reshape(-1, kernel.shape[-1])
    if flat.shape[0] % (spec.group_size or spec.sub_channels):
        return kernel  # groups only defined for the dense layers; keep float
    spec = spec.for_input_dim(flat.shape[0])
    return quant.fake_quant(
        flat, spec.bits, symmetric=spec.symmetric, sub_channels=spec.sub_channels, clip=spec.clip
    ).reshape(kernel.shape)


class QConv(nn.Module):
    """``nn.Conv`` with explicit padding whose kernel may be fake-quantized."""

    features: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    padding: Any
    spec: CompressionSpec | None = None
    feature_group_count: int = 1

    @nn.compact
    def __call__(self, x):
        in_features = x.shape[-1] // self.feature_group_count
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, in_features, self.features),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.spec is not None:
            kernel = _maybe_fake_quant_kernel(kernel, self.spec)
        y = jax.lax.conv_general_dilated(
            x,
            kernel,
            self.strides,
            self.padding,
            dimension_numbers=nn.linear._conv_dimension_numbers(x.shape),
            feature_group_count=self.feature_group_count,
        )
        return y + bias


def _subsample_mask(mask: jax.Array) -> jax.Array:
    """Frame mask after one stride-2 conv with one frame of padding on each side."""
    lengths = jnp.sum(mask, axis=-1)
    t = (mask.shape[-1] + 1) // 2
    return jnp.arange(t)[None, :] < ((lengths + 1) // 2)[:, None]


class Subsampler(nn.Module):
    """Two 3x3 stride-2 convolutions (4x in time and frequency) and a linear projection."""

    cfg: ConformerConfig
    opts: ModelOptions

    @nn.compact
    def __call__(self, feats, mask):
        c1, c2 = self.cfg.subsample_channels
        conv_spec = self.opts.quant_spec if self.opts.compress_convs else None
        x = (feats * mask[..., None])[..., None]  # (B, T, F, 1), pads = 0
        pad = ((1, 1), (1, 1))
        x = QConv(c1, (3, 3), (2, 2), pad, conv_spec, name="conv1")(x)
        mask = _subsample_mask(mask)
        x = nn.relu(x) * mask[:, :, None, None]
        x = QConv(c2, (3, 3), (2, 2), pad, conv_spec, name="conv2")(x)
        mask = _subsample_mask(mask)
        x = nn.relu(x) * mask[:, :, None, None]
        b, t, f, c = x.shape
        x = x.reshape(b, t, f * c)
        x = QDense(
            self.cfg.model_dim,
            self.opts.quant_spec,
            compute_dtype=self.opts.compute_dtype,
            name="proj",
        )(x)
        return x * mask[..., None], mask


class FeedForward(nn.Module):
    cfg: ConformerConfig
    opts: ModelOptions

    @nn.compact
    def __call__(self, x, deterministic):
        dt = self.opts.compute_dtype
        y = nn.LayerNorm(name="norm")(x)
        y = QDense(self.cfg.ffn_dim, self.opts.quant_spec, compute_dtype=dt, name="dense1")(y)
        y = nn.swish(y)
        y = nn.Dropout(self.cfg.dropout)(y, deterministic=deterministic)
        y = QDense(self.cfg.model_dim, self.opts.quant_spec, compute_dtype=dt, name="dense2")(y)
        return nn.Dropout(self.cfg.dropout)(y, deterministic=deterministic)


# --------------------------------------------------------------------------- attention
def rel_shift(x: jax.Array) -> jax.Array:
    """Relative shift (Transformer-XL, Lingvo convention).

    ``x[..., i, r]`` holds a score for query ``i`` and relative distance ``r - (T-1)``
    (distances ordered from ``-(T-1)`` to ``T-1``, last axis of length ``2T - 1``). Returns
    ``out[..., i, j] = x[..., i, (T-1) + i - j]``: the score for distance ``i - j``.

    Lingvo's golden case: ``T = 3``, ``x[i, r] = i + 3 r`` gives
    ``[[6, 3, 0], [10, 7, 4], [14, 11, 8]]``.
    """
    t = x.shape[-2]
    idx = (t - 1) + jnp.arange(t)[:, None] - jnp.arange(t)[None, :]
    return jnp.take_along_axis(x, jnp.broadcast_to(idx, (*x.shape[:-1], t)), axis=-1)


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


class RelPositionAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (Dai et al. 2019).

    ``logit[i, j] = (q_i + u).k_j + (q_i + v).W_p P[i - j]``, scaled by ``1/sqrt(Dh)``;
    padded keys are masked, and so are keys outside ``[i - left, i + right]`` when a
    limited context is configured (the paper: 128 frames each side).
    """

    cfg: ConformerConfig
    opts: ModelOptions

    @nn.compact
    def __call__(self, x, mask, deterministic):
        cfg, dt = self.cfg, self.opts.compute_dtype
        h, dh = cfg.num_heads, cfg.head_dim
        b, t, _ = x.shape
        y = nn.LayerNorm(name="norm")(x)
        dense = lambda name, bias=True: QDense(
            cfg.model_dim, self.opts.quant_spec, use_bias=bias, compute_dtype=dt, name=name
        )
        q = dense("query")(y).reshape(b, t, h, dh)
        k = dense("key")(y).reshape(b, t, h, dh)
        v = dense("value")(y).reshape(b, t, h, dh)
        p = dense("pos", bias=False)(relative_positions(t, cfg.model_dim)).reshape(2 * t - 1, h, dh)
        u_bias = self.param("u_bias", nn.initializers.zeros, (h, dh))
        v_bias = self.param("v_bias", nn.initializers.zeros, (h, dh))
        logits = relative_logits(q, k, p, u_bias, v_bias) / np.sqrt(dh)
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
        self.sow("intermediates", "attention", attn)  # for notebooks: capture without recomputing
        attn = nn.Dropout(cfg.dropout)(attn, deterministic=deterministic)
        out = jnp.einsum("bhij,bjhd->bihd", attn, v).reshape(b, t, cfg.model_dim)
        out = dense("out")(out)
        return nn.Dropout(cfg.dropout)(out, deterministic=deterministic)


class ConvModule(nn.Module):
    """Pointwise (2d) + GLU, depthwise conv (kernel k), LayerNorm, swish, pointwise (d).

    LayerNorm replaces the original BatchNorm: no batch statistics, so outputs do not
    depend on what else is in the batch (padding invariance) and eval equals train.
    """

    cfg: ConformerConfig
    opts: ModelOptions

    @nn.compact
    def __call__(self, x, mask, deterministic):
        cfg, dt = self.cfg, self.opts.compute_dtype
        y = nn.LayerNorm(name="norm")(x)
        y = QDense(2 * cfg.model_dim, self.opts.quant_spec, compute_dtype=dt, name="pointwise1")(y)
        y = nn.glu(y, axis=-1) * mask[..., None]  # zeros at padded frames
        k = cfg.conv_kernel
        conv_spec = self.opts.quant_spec if self.opts.compress_convs else None
        y = QConv(
            cfg.model_dim,
            (k,),
            (1,),
            ((k // 2, k // 2),),
            conv_spec,
            feature_group_count=cfg.model_dim,
            name="depthwise",
        )(y)
        y = nn.LayerNorm(name="conv_norm")(y)
        y = nn.swish(y)
        y = QDense(cfg.model_dim, self.opts.quant_spec, compute_dtype=dt, name="pointwise2")(y)
        return nn.Dropout(cfg.dropout)(y, deterministic=deterministic)


class ConformerBlock(nn.Module):
    cfg: ConformerConfig
    opts: ModelOptions

    @nn.compact
    def __call__(self, x, mask, deterministic):
        m = mask[..., None]
        x = x + 0.5 * FeedForward(self.cfg, self.opts, name="ffn1")(x, deterministic)
        x = x + RelPositionAttention(self.cfg, self.opts, name="mhsa")(x, mask, deterministic)
        x = x + ConvModule(self.cfg, self.opts, name="conv")(x, mask, deterministic)
        x = x + 0.5 * FeedForward(self.cfg, self.opts, name="ffn2")(x, deterministic)
        return nn.LayerNorm(name="final_norm")(x) * m


class Encoder(nn.Module):
    cfg: ConformerConfig
    opts: ModelOptions

    @nn.compact
    def __call__(self, x, mask, deterministic):
        for i in range(self.cfg.num_layers):
            x = ConformerBlock(self.cfg, self.opts, name=f"block_{i}")(x, mask, deterministic)
        return x


class ConformerCTC(nn.Module):
    """Log-mel features ``(B, T, F)`` and frame mask ``(B, T)`` -> CTC logits and mask."""

    cfg: ConformerConfig
    opts: ModelOptions = ModelOptions()

    @nn.compact
    def __call__(self, feats, mask, deterministic: bool = True):
        x, mask = Subsampler(self.cfg, self.opts, name="frontend")(feats, mask)
        x = Encoder(self.cfg, self.opts, name="encoder")(x, mask, deterministic)
        if self.opts.compress_softmax:
            logits = QDense(self.cfg.vocab_size, self.opts.quant_spec, name="softmax")(x)
        else:
            logits = nn.Dense(self.cfg.vocab_size, name="softmax")(x)
        return logits, mask


# --------------------------------------------------------------------------- helpers
def build_model(
    cfg: ConformerConfig, spec: CompressionSpec | str = "float", **options
) -> ConformerCTC:
    """A model whose every compressible weight is checked against ``spec`` up front.

    Raises ``ValueError`` (naming the weight) before any work if, e.g., the sub-channel
    count does not divide some layer's input dimension.
    """
    from usmlite_edu.speech.model import param_table

    spec = spec if isinstance(spec, CompressionSpec) else CompressionSpec.parse(spec)
    opts = ModelOptions(spec=spec, **options)
    for w in param_table(cfg):
        if w.role == "dense" or (w.role == "softmax" and opts.compress_softmax):
            spec.check_shape(w.shape, w.name)
    return ConformerCTC(cfg, opts)


def param_shapes(model: ConformerCTC) -> dict[str, tuple[int, ...]]:
    """``{"frontend/conv1/kernel": shape, ...}`` from ``jax.eval_shape`` (no memory used)."""
    cfg = model.cfg
    feats = jax.ShapeDtypeStruct((1, 16, cfg.num_mels), jnp.float32)
    mask = jax.ShapeDtypeStruct((1, 16), jnp.bool_)
    shapes = jax.eval_shape(lambda f, m: model.init(jax.random.key(0), f, m), feats, mask)
    flat = jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
    return {"/".join(k.key for k in path): tuple(v.shape) for path, v in flat}


def compressible_mask_tree(params: Any, opts: ModelOptions) -> Any:
    """Pytree of bools: which leaves get N:M masks (the compressible dense kernels)."""

    def pick(path, leaf):
        names = [getattr(k, "key", str(k)) for k in path]
        if names[-1] != "kernel":
            return False
        if names[0] == "softmax":
            return opts.compress_softmax
        if names[-2] in ("conv1", "conv2", "depthwise"):
            return False  # N:M on convolutions is not part of the paper's recipe
        return True

    return jax.tree_util.tree_map_with_path(pick, params)


def apply_masks(params: Any, masks: Any | None, straight_through: bool = False) -> Any:
    """Eq. (4) on every masked leaf: ``W * M`` (SR-STE: the gradient passes the mask)."""
    if masks is None:
        return params

    return jax.tree.map(lambda w, m: sparsity.apply_mask(w, m, straight_through), params, masks)
