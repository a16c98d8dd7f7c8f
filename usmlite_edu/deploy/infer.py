"""Inference arithmetic: which numbers the dense layers multiply (``--arith``).

Training and the default inference compute Eq. (1) of USM-Lite (section 3.2) with a float
dot: the integer weights are converted to float32 inside the matmul
(:func:`usmlite_edu.core.quant.native_matmul`), so a quantized model is stored small but runs
at float speed. This module swaps in other arithmetic for inference only, never by
default:

==========  =================================================================  ==============
arith       the dense layers compute                                            weights
==========  =================================================================  ==============
float32     float32 x float32 -> float32 (a quantized spec: Eq. (1), the        the run's
            integer weight converted to float32 inside the dot)
bf16        bfloat16 x bfloat16 -> float32 (the activations rounded to bf16)    the run's
w8          weight-only: int8 weights converted to bf16 in the jitted            int8 a value
            function, bf16 activations, float32 accumulation
w4          weight-only: int4 weights, two a byte, unpacked and converted to    int4 a value
            bf16 in the jitted function, bf16 activations
w8a8        int8 activations (dynamic per-token scale) x int8 weights ->        int8 a value
            int32 accumulation, both scales applied in float32
==========  =================================================================  ==============

Only the compressible dense layers change (the projection and every encoder matrix: the
layers the spec compresses). The convolutions, attention's score products, the norms and
the softmax layer stay float32 in every arith.

The integer ariths hold each dense kernel as a :class:`usmlite_edu.core.quant.IntKernel`. Their
weights are the spec's own integers when the spec is quantized (Algorithm 1 on the
run's weights and masks, or the integers a packed file stores), so ``w8`` on an ``int4``
run changes only the activations' rounding; a float spec's weights are quantized per
channel for the arith (``int8`` for ``w8`` / ``w8a8``, ``int4`` for ``w4``: post-training
quantization, :func:`weight_spec` says which). Refused (``ValueError`` saying what to use
instead): an unknown name; ``w4`` on a spec wider than 4 bits; ``w8a8`` on a spec with
sub-channel groups or zero points (the paper's int2), whose integer dot would need a
grouped, zero-point-corrected kernel this module does not have.

A per-layer :class:`~usmlite_edu.core.specs.SpecMap` runs layer by layer: each dense
layer's integers are its own spec's (a float or float N:M layer's: quantized for the arith,
as above), and the refusals above apply to each layer, naming the first layer that cannot
run (``w4`` on a map with an ``int8`` layer, ``w8a8`` on one with an ``int2`` layer).

What each costs, and how fast each runs on the processor at hand: ``benchmarks/bench_infer.py``;
what each does to the WER: ``scripts/infer_wer.py`` (README "Export a packed model").
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from usmlite_edu.core import compress, quant
from usmlite_edu.core.specs import CompressionSpec, Spec, SpecMap, as_spec, layer_name
from usmlite_edu.deploy.forward import Forward, get_forward
from usmlite_edu.speech import frontend, model
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig
from usmlite_edu.speech.model import param_table

__all__ = [
    "ARITHS",
    "check_arith",
    "weight_spec",
    "train_config_for",
    "int_params",
    "int_forward",
    "prepare",
    "arith_models",
    "interleaved_min",
    "time_forward",
    "matmul_peak",
    "matmul_peaks",
]

#: every arithmetic, float first
ARITHS = ("float32", "bf16", *quant.INT_ARITHS)


def check_arith(arith: str | None) -> str | None:
    """``arith`` if it names an arithmetic (``None``: the run's own), else ``ValueError``."""
    if arith is not None and arith not in ARITHS:
        raise ValueError(f"--arith {arith!r}: choose one of {', '.join(ARITHS)}")
    return arith


def weight_spec(
    spec: Spec | str, arith: str, cfg: ConformerConfig | None = None
) -> CompressionSpec | SpecMap:
    """The spec whose integers an integer ``arith`` multiplies (module docstring).

    A quantized spec is returned as it is, after checking that its grid fits ``arith``; a
    float spec (N:M or dense) gets per-channel symmetric int8 (``w8``, ``w8a8``) or int4
    (``w4``) weights, keeping its N:M pattern. A :class:`~usmlite_edu.core.specs.SpecMap`
    (``cfg`` required: which layers use which rule) gets each rule's spec converted, and
    its default if some layer uses it; ``ValueError`` names the first layer whose spec
    ``arith`` cannot run.
    """
    spec = as_spec(spec)
    if isinstance(spec, SpecMap):
        return _map_weight_spec(spec, arith, cfg)
    if check_arith(arith) not in quant.INT_ARITHS:
        raise ValueError(f"weight_spec: {arith!r} is not an integer arith {quant.INT_ARITHS}")
    if not spec.quantized:
        return spec.replace(bits=4 if arith == "w4" else 8)
    if getattr(spec, "lsq", False):
        raise ValueError(
            f"--arith {arith}: spec {spec} learns its step sizes (LSQ), and integer inference "
            "builds its kernels from min/max scales; evaluate it without --arith"
        )
    if arith == "w4" and spec.bits > 4:
        raise ValueError(
            f"--arith w4 holds 4-bit weights; spec {spec} has {spec.bits}-bit weights: use "
            "--arith w8, or a 4-bit spec (e.g. --spec int4)"
        )
    if arith == "w8a8" and (spec.sub_channels != 1 or spec.group_size or not spec.symmetric):
        raise ValueError(
            f"--arith w8a8 multiplies symmetric per-channel weights; spec {spec} has "
            "sub-channel groups or zero points: use --arith w8 or w4 (weight-only) for it"
        )
    return spec


def _map_weight_spec(spec: SpecMap, arith: str, cfg: ConformerConfig | None) -> SpecMap:
    if cfg is None:
        raise ValueError(f"weight_spec: a spec map under --arith {arith} needs the model config")
    used = set()
    for name, s in model.resolve_specs(spec, cfg).items():
        try:
            weight_spec(s, arith)
        except ValueError as e:
            raise ValueError(f"spec map layer {layer_name(name)} ({s}): {e}") from None
        used.add(s)

    def convert(s: CompressionSpec) -> CompressionSpec:
        return weight_spec(s, arith) if s in used else s  # an unused default stays

    return SpecMap(tuple((p, convert(s)) for p, s in spec.rules), convert(spec.default))


def train_config_for(tcfg: TrainConfig, arith: str | None) -> TrainConfig:
    """The evaluation config for ``arith``: ``float32`` and ``bf16`` set the dense
    layers' ``compute_dtype``; the others leave it (an :class:`~usmlite_edu.core.quant.IntKernel`
    ignores it)."""
    if arith == "float32":
        return tcfg.replace(compute_dtype=None)
    if arith == "bf16":
        return tcfg.replace(compute_dtype="bfloat16")
    return tcfg


def _dense_names(cfg: ConformerConfig) -> list[tuple[str, tuple[int, int]]]:
    return [(w.name, w.shape) for w in param_table(cfg) if w.role == "dense"]


def _replace_leaves(tree: Any, new: dict[str, Any]) -> Any:
    """A copy of the nested dict ``tree`` with the leaves named in ``new`` replaced."""

    def walk(node, prefix):
        if not isinstance(node, dict):
            return new.get(prefix, node)
        return {k: walk(v, f"{prefix}/{k}" if prefix else str(k)) for k, v in node.items()}

    return walk(tree, "")


def int_params(
    params: Any,
    masks: Any | None,
    cfg: ConformerConfig,
    spec: CompressionSpec | str,
    arith: str,
) -> dict:
    """``params`` with every dense kernel an :class:`~usmlite_edu.core.quant.IntKernel` for
    ``arith`` (the other leaves as they are).

    A kernel that is a float array is compressed with ``weight_spec(spec, arith)``
    (Algorithm 1: its mask from ``masks``, one-shot Eq. 3 when ``masks`` is ``None`` and
    the spec is N:M, then Eq. 2), a :class:`~usmlite_edu.core.quant.QuantizedArray` (a packed
    file's) is stored as it is.
    """
    wspec = weight_spec(spec, arith, cfg)
    new = {}
    for name, _ in _dense_names(cfg):
        k = model.weight_at(params, name)
        if not isinstance(k, quant.QuantizedArray):
            lspec = wspec.spec_for(name) if isinstance(wspec, SpecMap) else wspec
            m = None
            if lspec.sparse and masks is not None:
                m = model.weight_at(masks, name)
                m = None if np.ndim(m) == 0 else m
            _, k = compress.prune_then_quantize_jit(k, lspec, m)
        new[name] = quant.IntKernel.from_quantized(k, arith)
    return _replace_leaves(params, new)


def _abstract_int_kernel(ls: CompressionSpec, shape: tuple[int, int], arith: str) -> Any:
    """The :class:`~usmlite_edu.core.quant.IntKernel` of an ``(in, out)`` kernel under
    ``ls`` for ``arith``, with ``jax.ShapeDtypeStruct`` leaves (no memory)."""
    i, j = shape
    g = ls.groups_for(i)
    values = (
        jax.ShapeDtypeStruct((-(-i // 2), j), np.uint8)  # two int4 values a byte
        if arith == "w4"
        else jax.ShapeDtypeStruct((i, j), np.int8)
    )
    zero = None if ls.symmetric else jax.ShapeDtypeStruct((g, j), np.int8)
    scale = jax.ShapeDtypeStruct((g, j), np.float32)
    return quant.IntKernel(values, scale, zero, ls.bits, ls.symmetric, arith, i)


@functools.lru_cache(maxsize=2)
def int_forward(cfg: ConformerConfig, spec: Spec, tcfg: TrainConfig, arith: str) -> Forward:
    """A :class:`~usmlite_edu.deploy.forward.Forward` whose model holds an
    :class:`~usmlite_edu.core.quant.IntKernel` for every dense kernel (the parameters of
    :func:`int_params` with the same ``spec`` and ``arith``): each dense layer runs
    ``arith``'s integer arithmetic; the rest of the model as under ``spec``."""
    wspec = weight_spec(spec, arith, cfg)
    kernels = {}
    for name, shape in _dense_names(cfg):
        ls = wspec.spec_for(name) if isinstance(wspec, SpecMap) else wspec
        kernels[name] = _abstract_int_kernel(ls, shape, arith)
    options = {"compute_dtype": tcfg.compute_dtype}
    graphdef = model.graphdef_with_kernels(cfg, wspec, kernels, **options)
    return Forward(cfg, wspec, graphdef=graphdef, remat=tcfg.remat, **options)


def prepare(
    cfg: ConformerConfig,
    spec: Spec,
    tcfg: TrainConfig,
    params: Any,
    masks: Any | None,
    arith: str | None,
    float_forward: Callable[[TrainConfig], Forward] | None = None,
) -> tuple[Forward, Any, Any, TrainConfig]:
    """``(forward, params, masks, train_config)`` that run ``arith`` (``None``: the run's own
    arithmetic). ``float_forward(tcfg)`` makes the forward of the float ariths (default:
    :func:`~usmlite_edu.deploy.forward.get_forward`), with the evaluation config of
    :func:`train_config_for`."""
    check_arith(arith)
    tcfg = train_config_for(tcfg, arith)
    if arith not in quant.INT_ARITHS:
        make = float_forward or (lambda t: get_forward(cfg, spec, t))
        return make(tcfg), params, masks, tcfg
    fwd = int_forward(cfg, as_spec(spec), tcfg, arith)
    return fwd, int_params(params, masks, cfg, spec, arith), None, tcfg


# --------------------------------------------------------------------------- timing
def arith_models(cfg: ConformerConfig, params: Any, ariths=ARITHS) -> dict[str, tuple]:
    """``{arith: (graphdef, params)}`` of a float model's parameters in each arith (the
    integer ones quantize its dense weights per channel: :func:`weight_spec` of float)."""
    out = {}
    for a in ariths:
        check_arith(a)
        if a in quant.INT_ARITHS:
            fwd = int_forward(cfg, weight_spec("float", a), TrainConfig(), a)
            out[a] = (fwd.graphdef, int_params(params, None, cfg, "float", a))
        else:
            dt = "bfloat16" if a == "bf16" else None
            out[a] = (model.model_graph(cfg, "float", compute_dtype=dt), params)
    return out


def interleaved_min(fns: dict, reps: int) -> dict:
    """``{name: seconds}`` of ``{name: (f, args)}``: each compiled by a first call, then one
    call of each per round for ``reps`` rounds, the fastest round kept (on a shared
    machine other jobs only ever add time, and interleaving gives every variant the same
    background load)."""
    for f, args in fns.values():
        jax.block_until_ready(f(*args))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for k, (f, args) in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(*args))
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def time_forward(
    cfg: ConformerConfig,
    params: Any,
    batch: int,
    seconds: float,
    *,
    ariths=ARITHS,
    parts=("encoder", "model"),
    reps: int = 10,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Seconds per call of the jitted forward pass in each arith, on ``batch`` utterances
    of ``seconds`` of noise: ``{arith: {"encoder": s, "model": s}}``. ``encoder``: the
    Conformer blocks on the subsampled ``(B, T', D)`` input; ``model``: subsampling
    convolutions + encoder + softmax on precomputed log-mel features (``parts`` chooses;
    each is one compile per arith). Timed with :func:`interleaved_min`."""
    n = int(seconds * cfg.sample_rate)
    wav = jnp.asarray(0.1 * np.random.default_rng(seed).standard_normal((batch, n)), jnp.float32)
    feats, mask = frontend.log_mel(
        wav, jnp.full((batch,), n, jnp.int32), frontend.LogMelConfig.from_model(cfg)
    )
    fns = {}
    for a, (gd, p) in arith_models(cfg, params, ariths).items():
        x, xm = jax.jit(lambda p, f, m, gd=gd: nnx.merge(gd, p).frontend(f, m))(p, feats, mask)
        enc = jax.jit(lambda p, x, m, gd=gd: nnx.merge(gd, p).encoder(x, m, True, None))
        whole = jax.jit(lambda p, f, m, gd=gd: model.forward(gd, p, f, m)[0])
        if "encoder" in parts:
            fns[(a, "encoder")] = (enc, (p, x, xm))
        if "model" in parts:
            fns[(a, "model")] = (whole, (p, feats, mask))
    t = interleaved_min(fns, reps)
    return {a: {part: t[(a, part)] for part in parts} for a in ariths}


def _square_matmul(dtype, n: int):
    """A jitted ``(n, n) x (n, n)`` product in ``dtype`` and its operand (see
    :func:`matmul_peak`)."""
    a = jnp.ones((n, n), dtype)
    if jnp.dtype(dtype) == jnp.int8:
        dims = (((1,), (0,)), ((), ()))
        f = jax.jit(lambda a: jax.lax.dot_general(a, a, dims, preferred_element_type=jnp.int32))
    else:
        f = jax.jit(lambda a: jnp.matmul(a, a, preferred_element_type=jnp.float32))
    return f, (a,)


def matmul_peak(dtype, n: int = 1024, reps: int = 20) -> float:
    """Operations per second of one jitted ``(n, n) x (n, n)`` product in ``dtype``:
    ``float32``, ``bfloat16`` (accumulating in float32), or ``int8`` (``int8 x int8 ->
    int32`` through ``jax.lax.dot_general``): the ceiling of what an arith can gain on
    a matmul-bound model. Mean of ``reps`` back-to-back calls after a warm-up call; to
    compare dtypes on a shared machine use :func:`matmul_peaks`."""
    f, args = _square_matmul(dtype, n)
    f(*args).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(*args)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def matmul_peaks(dtypes: dict[str, Any], n: int = 1024, reps: int = 20) -> dict[str, float]:
    """``{name: operations per second}`` of the :func:`matmul_peak` product for each of
    ``dtypes`` (``{name: dtype}``), timed by :func:`interleaved_min`: one call of each
    per round for ``reps`` rounds, the fastest call kept, so every dtype sees the same
    background load and the ratios between them are measured side by side."""
    fns = {name: _square_matmul(dt, n) for name, dt in dtypes.items()}
    return {k: 2 * n**3 / sec for k, sec in interleaved_min(fns, reps).items()}
