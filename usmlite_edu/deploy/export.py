"""Packed model files: the compressed weights at their real bit widths, in one safetensors file.

Orbax checkpoints (:mod:`usmlite_edu.speech.runs`) keep every weight as float32 and the N:M mask
as a dense array, so no file on disk has the size of the paper's "Model Size Ratio"
column (Tables 1-3). :func:`write_packed` writes one that does, and :func:`read_packed`
reads it back. The bytes are those of the ``exact`` convention of
:mod:`usmlite_edu.core.sizes`, one for one:

* **values**: the integer grid values ``q`` of Eq. (2) (section 3.2) at their bit width,
  as unsigned *codes* ``q + 2**(bits-1)`` (``0 .. 2**bits - 1``): int8 one per byte,
  int4 two per byte, int2 four per byte (:func:`usmlite_edu.core.quant.pack_bits`, the
  package's one bit packer); for N:M (section 3.3, Eq. 3)
  only the ``n`` kept values of every group of ``m`` (:func:`pack_nm`); a float (not
  quantized) N:M spec keeps its kept values as float32;
* **scales**: one float32 per output channel and sub-channel group (Eq. 2);
* **zero points**: the asymmetric grid's integer zero points (the paper's int2, after the
  2-bit Conformer paper), as codes at the grid's bit width;
* **index**: the position of each kept value inside its group of ``m``, in
  ``ceil(log2 m)`` bits (2 bits for 2:4 and 1:4, the metadata layout of sparse tensor
  cores); :func:`nm_index_bits` says when numbering the ``C(m, n)`` patterns of a group
  would take fewer bits;
* **float32**: every parameter the paper keeps float (the subsampling and depthwise
  convolutions, the softmax layer, norms, biases, relative-position biases).

safetensors has no 4- or 2-bit type, so the packed arrays are ``U8`` tensors and the header's
``__metadata__`` (a string-to-string map) says how to read them: ``layout`` (JSON: bit
width, grid, groups, N:M, zero points, packing order and one row per kernel), the spec,
the model and training configs, the tokenizer and a SHA-256 per tensor. The file is
self-contained: :func:`read_packed` rebuilds the model config, spec, parameters and
tokenizer from it alone. Five tensors hold everything (one per kind above, the kernels
one after another in :func:`usmlite_edu.speech.model.param_table` order), so that the header
stays a fraction of a percent of even the ``cpu`` preset's int4 + 2:4 file.

Exactness. :func:`write_packed` compresses each kernel exactly as transcription does
(Algorithm 1: the run's N:M masks, or one-shot masks for post-training pruning, then
Eq. 2 on the masked weight). :func:`read_packed` returns either the dequantized float
weights ``s * (q - z)``, bit for bit the weights :func:`usmlite_edu.core.compress.compress_weight`
(the fake-quantized, masked weight) gives under ``jax.jit``, or, with ``dequantize=False``, the integer
arrays themselves (:class:`usmlite_edu.core.quant.QuantizedArray`). Transcription from a file
(:func:`inference`) multiplies those integers by the activations and then by the scale,
Eq. (1), which is the very computation the model's native QAT forward runs from a
checkpoint, so ``transcribe --model FILE`` prints what ``transcribe --checkpoint RUN --spec
SPEC`` prints: the tests find the logits bit-identical for the ``cpu`` widths and their
test models. Not for every shape: XLA:CPU may fuse the whole model's computation
differently from the file's, and then logits differ in the last bits (about 1e-6 seen on
a 40-input ``frontend/proj`` of a tiny model, and for asymmetric grids with 16 or 20
groups of 8 inputs), which can change a transcript only at a near tie. (Handing the model the dequantized floats instead would not do: it
re-derives the scale from them, and ``max|s q| / qmax`` is ``s`` only up to a float32
rounding: one unit in the last place off in 3% of the channels of a random Gaussian weight
at int8, 43% at int4.)

Per-layer specs. Under a :class:`usmlite_edu.core.specs.SpecMap` (``export --spec-map
FILE``) each dense kernel is packed under its own spec (:func:`kernel_specs`) and a layer
whose spec is float goes to the ``float32`` tensor; the layout's row of each kernel
names its spec, and the metadata's ``spec`` is the map's name (``map:{...}``), from which
:func:`read_packed` rebuilds every row. The five tensors stay: a map that mixes quantized
layers with unquantized N:M ones (``2:4``) stores the latter's kept values as their
little-endian float32 bytes inside the ``U8`` values tensor (4 bytes a value, what the
``exact`` accounting counts), so the tensor bytes still equal :func:`usmlite_edu.core.sizes.model_size`
of the map, component by component.

Checks. Version 2 files carry :data:`HEADER_SUM`, a SHA-256 over the canonical metadata
(:func:`header_checksum`: configs, spec, layout, tokenizer, the per-tensor checksums), so
that every byte of the file is covered by one checksum or another; version 1 files (no
header checksum) are still read, with a warning. The configs read from a file pass the
same validation as the command line's (the config classes' ``__post_init__``), and a
memory estimate of one evaluation batch of the largest bucket
(:func:`batch_memory_bytes`) must fit in this machine's memory. The file is written with
the mode the umask gives (0666 less the umask), like any file the user creates.

A file that is not a safetensors file, not one of ours, of another format version,
truncated, whose bytes changed (checksums), whose header was edited, or whose settings
are out of range, is refused with a ``ValueError`` that names
the file and says what is wrong, before any array reaches JAX.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import struct
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from usmlite_edu.core import compress, quant, sizes
from usmlite_edu.core.quant import from_codes, pack_bits, to_codes, unpack_bits
from usmlite_edu.core.specs import CompressionSpec, Spec, SpecMap, as_spec
from usmlite_edu.deploy.forward import Forward, get_forward
from usmlite_edu.speech import model, runs
from usmlite_edu.speech.configs import ConformerConfig, TrainConfig, config_from_dict
from usmlite_edu.speech.model import param_table
from usmlite_edu.speech.tokenizer import Tokenizer

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "pack_bits",
    "unpack_bits",
    "to_codes",
    "from_codes",
    "nm_index_bits",
    "enumeration_is_smaller",
    "pack_nm",
    "unpack_nm",
    "PackedKernel",
    "pack_kernel",
    "unpack_kernel",
    "Packed",
    "ExportInfo",
    "write_packed",
    "read_packed",
    "file_layout",
    "kernel_specs",
    "inference",
    "packed_forward",
]

#: the ``format`` entry of the header's metadata that marks a file as ours
FORMAT = "usmlite_edu.packed"
#: the layout version this module writes (version 2 adds :data:`HEADER_SUM`)
FORMAT_VERSION = "2"
#: versions :func:`read_packed` reads; version 1 has no header checksum and is read with a
#: warning that its metadata is unchecked
READ_VERSIONS = ("1", "2")
#: the metadata entry holding :func:`header_checksum` of every other metadata entry
HEADER_SUM = "header_sha256"
_LOG = logging.getLogger(__name__)
#: the order every packed array follows (also written into the file's layout)
ORDER = (
    "kernels in model.param_table order, one after another; each (in, out) kernel "
    "transposed to (out, in) and read row-major, so that one output channel's inputs, its "
    "sub-channel groups and its N:M groups are contiguous; codes packed least-significant "
    "bit first, each kernel's codes, zero points and indices padded to a whole byte; "
    "scales and zero points (out, groups) row-major; float32 holds every other parameter "
    "in param_table order, each row-major"
)
#: the five tensors of a packed file
TENSORS = ("values", "scales", "zero_points", "index", "float32")
_MAX_HEADER = 64 * 2**20  # a header larger than this is not one we wrote


def header_checksum(meta: dict) -> str:
    """SHA-256 (hex) of a packed file's metadata in canonical form: every entry except
    :data:`HEADER_SUM` itself, as one JSON object with sorted keys, no spaces, UTF-8.

    It covers what the per-tensor checksums do not: format, spec, configs, tokenizer,
    layout and the per-tensor checksums themselves, so a changed header byte is caught.
    """
    body = {k: v for k, v in meta.items() if k != HEADER_SUM}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def memory_limit_bytes() -> int:
    """The bound :func:`read_packed` holds a file's largest evaluation batch to: the
    machine's physical memory (``os.sysconf``), or 64 GiB where it cannot be read."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return 64 * 2**30


def batch_memory_bytes(cfg: ConformerConfig, tcfg: TrainConfig) -> int:
    """A lower estimate of the float32 memory one padded evaluation batch of the largest
    bucket takes: ``eval_batch_size`` waveforms, their log-mel frames, and one Conformer
    layer's widest activations (the feed-forward's ``ffn_dim`` and the attention scores
    over the context window) after the 4x subsampling. Used to refuse, before anything is
    allocated, a file whose frontend and buckets could never run (``sample_rate`` or
    ``bucket_seconds`` edited to absurd values)."""
    batch = tcfg.eval_batch_size
    samples = math.ceil(max(tcfg.bucket_seconds) * cfg.sample_rate)
    hop = max(1, round(cfg.sample_rate * cfg.hop_ms / 1000))
    frames = samples // hop + 1
    sub = -(-frames // 4)
    span = sub
    if cfg.left_context is not None and cfg.right_context is not None:
        span = min(sub, cfg.left_context + cfg.right_context + 1)
    per_row = samples + frames * cfg.num_mels + sub * (cfg.ffn_dim + cfg.num_heads * span)
    return 4 * batch * per_row


# --------------------------------------------------------------------------- N:M
def nm_index_bits(n: int, m: int) -> tuple[int, int]:
    """Index bits per group of ``m`` under N:M: ``(positions, enumeration)``.

    ``positions = n * ceil(log2 m)``: the in-group position of each kept value, what this
    file stores and what sparse tensor cores read (2:4: two 2-bit indices, 4 bits per
    group; 1:4: 2 bits). ``enumeration = ceil(log2 C(m, n))``: the number of the group's
    pattern among all ``C(m, n)`` (2:4: 6 patterns, 3 bits; 1:4: 4 patterns, 2 bits).
    The paper's estimate counts a 1-bit mask per weight instead, ``m`` bits per group.
    """
    pos = n * (m - 1).bit_length()  # (m-1).bit_length() == ceil(log2 m), exactly
    enum = (math.comb(m, n) - 1).bit_length()
    return pos, enum


def enumeration_is_smaller(n: int, m: int) -> bool:
    """Whether numbering the ``C(m, n)`` patterns of a group takes fewer whole bits than
    storing the ``n`` positions (2:4: 3 < 4 bits, yes; 1:4: 2 = 2 bits, no). The file
    stores positions anyway: that is the layout sparse kernels read without decoding."""
    pos, enum = nm_index_bits(n, m)
    return enum < pos


def pack_nm(values: np.ndarray, mask: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The kept entries of an out-major ``(out, in)`` array and their in-group positions.

    Groups are ``m`` consecutive inputs of one output channel (section 3.3: the
    contraction dimension). Every group must keep exactly ``n`` entries (what
    :func:`usmlite_edu.core.sparsity.nm_mask` gives). Returns ``(kept, positions)``, both 1-D
    of length ``out * in * n / m``, group after group, inside a group by increasing
    position; ``positions`` are ``0 .. m-1`` as ``uint8``.
    """
    values, mask = np.asarray(values), np.asarray(mask, bool)
    out_dim, in_dim = values.shape
    if mask.shape != values.shape or in_dim % m:
        raise ValueError(
            f"pack_nm: mask {mask.shape} / values {values.shape} with m={m}: need equal "
            f"shapes and m dividing the input dimension"
        )
    groups = mask.reshape(out_dim, in_dim // m, m)
    counts = groups.sum(axis=-1)
    if not np.all(counts == n):
        bad = np.argwhere(counts != n)[0]
        raise ValueError(
            f"pack_nm: group {tuple(int(b) for b in bad)} keeps {int(counts[tuple(bad)])} "
            f"entries, not n={n}: the mask is not an {n}:{m} mask"
        )
    # Boolean indexing walks the array in C order: group by group, positions ascending.
    kept = values.reshape(out_dim, in_dim // m, m)[groups]
    positions = np.nonzero(groups)[2].astype(np.uint8)
    return kept, positions


def unpack_nm(
    kept: np.ndarray, positions: np.ndarray, shape: tuple[int, int], n: int, m: int, fill
) -> np.ndarray:
    """The dense out-major ``(out, in)`` array of :func:`pack_nm`'s output; pruned entries
    get ``fill`` (a scalar, or an ``(out, in)`` array: the zero point of each entry's
    quantization group, which is what a pruned weight quantizes to)."""
    out_dim, in_dim = shape
    ngroups = out_dim * in_dim // m
    kept, positions = np.asarray(kept), np.asarray(positions)
    if kept.size != ngroups * n or positions.size != ngroups * n:
        raise ValueError(
            f"unpack_nm: {kept.size} values / {positions.size} positions for {ngroups} "
            f"groups of {n}:{m}, expected {ngroups * n} of each"
        )
    pos = positions.reshape(out_dim, in_dim // m, n).astype(np.int64)
    if pos.size and (pos.max() >= m or np.any(np.diff(pos, axis=-1) <= 0)):
        raise ValueError(
            f"unpack_nm: positions must increase strictly inside each group and stay below m={m}"
        )
    dense = np.broadcast_to(np.asarray(fill, kept.dtype), shape).copy()
    dense = dense.reshape(out_dim, in_dim // m, m)
    np.put_along_axis(dense, pos, kept.reshape(pos.shape), axis=-1)
    return dense.reshape(shape)


# --------------------------------------------------------------------------- one kernel
class PackedKernel(NamedTuple):
    """One compressible ``(in, out)`` kernel as the file stores it (all 1-D arrays).

    ``values``: packed codes (``uint8``), or the kept float32 values of an unquantized
    N:M spec; ``scales``: float32 ``(out, groups)`` row-major (empty if unquantized);
    ``zero_points``: packed codes (empty if symmetric); ``index``: packed positions
    (empty if dense).
    """

    values: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    index: np.ndarray


_EMPTY_U8 = np.zeros(0, np.uint8)
_EMPTY_F32 = np.zeros(0, np.float32)


def pack_kernel(w, spec: CompressionSpec | str, mask=None) -> PackedKernel:
    """Algorithm 1 on one ``(in, out)`` weight, packed: mask (Eq. 4; ``mask`` or a
    one-shot Eq. 3 mask), quantize the masked weight (Eq. 2), then the arrays of
    :class:`PackedKernel`. Float specs are refused (nothing to pack)."""
    spec = as_spec(spec)
    if spec.is_float:
        raise ValueError("pack_kernel: a float spec stores the weight as it is (float32)")
    # Under jit, as the model's forward computes it: XLA folds constants (e.g. a clip
    # ratio times 1/qmax) that op-by-op execution would round separately.
    mask, q = compress.prune_then_quantize_jit(w, spec, mask)
    w = np.asarray(w, np.float32)
    keep = None if mask is None else np.asarray(mask, bool).T  # out-major
    if q is None:  # N:M on float weights: the kept values as float32
        kept, pos = pack_nm(np.where(keep, w.T, np.float32(0)), keep, spec.n, spec.m)
        return PackedKernel(kept.astype(np.float32), _EMPTY_F32, _EMPTY_U8, _index(pos, spec))
    codes = to_codes(np.asarray(q.values).T, spec.bits)
    pos = None
    if keep is not None:
        codes, pos = pack_nm(codes, keep, spec.n, spec.m)
    zero = (
        _EMPTY_U8
        if q.zero_point is None
        else pack_bits(to_codes(np.asarray(q.zero_point).T, spec.bits), spec.bits)
    )
    return PackedKernel(
        pack_bits(codes, spec.bits),
        np.ascontiguousarray(np.asarray(q.scale, np.float32).T).ravel(),
        zero,
        _EMPTY_U8 if pos is None else _index(pos, spec),
    )


def _index(pos: np.ndarray, spec: CompressionSpec) -> np.ndarray:
    bits = (spec.m - 1).bit_length()
    return pack_bits(pos, bits) if bits else _EMPTY_U8


def _kernel_sizes(shape: tuple[int, int], spec: CompressionSpec) -> dict[str, int]:
    """Bytes of each array of one packed kernel (what the layout implies)."""
    i, j = shape
    kept = i * j * spec.n // spec.m if spec.sparse else i * j
    g = spec.groups_for(i) if spec.quantized else 0
    ibits = (spec.m - 1).bit_length() if spec.sparse else 0
    return {
        "values": -(-kept * spec.bits // 8) if spec.quantized else 4 * kept,
        "scales": 4 * g * j,
        "zero_points": -(-g * j * spec.bits // 8) if spec.quantized and not spec.symmetric else 0,
        "index": -(-kept * ibits // 8),
    }


def unpack_kernel(
    packed: PackedKernel, shape: tuple[int, int], spec: CompressionSpec | str
) -> tuple[Any, np.ndarray]:
    """``(QuantizedArray or None, float32 (in, out) weight)`` of one packed kernel.

    The float weight is ``s * (q - z)`` computed as :func:`usmlite_edu.core.quant.dequantize`
    computes it (so bit for bit the fake-quantized weight), or the kept float values with
    zeros elsewhere for an unquantized N:M spec. Raises ``ValueError`` for codes off the
    grid, non-finite or non-positive scales, or positions that are not an N:M pattern.
    """
    spec = as_spec(spec)
    i, j = shape
    kept = i * j * spec.n // spec.m if spec.sparse else i * j
    pos = None
    if spec.sparse:
        ibits = (spec.m - 1).bit_length()
        pos = (
            unpack_bits(packed.index, ibits, kept)
            if ibits
            else np.zeros(kept, np.uint8)  # 1:1 keeps every position: nothing stored
        )
    if not spec.quantized:
        vals = np.asarray(packed.values, np.float32)
        dense = unpack_nm(vals, pos, (j, i), spec.n, spec.m, np.float32(0))
        return None, np.ascontiguousarray(dense.T)
    layer = spec.for_input_dim(i)
    g, bits = layer.sub_channels, spec.bits
    qmin, qmax = quant.int_range(bits, spec.symmetric)
    q = from_codes(unpack_bits(packed.values, bits, kept), bits)
    if q.size and (q.min() < qmin or q.max() > qmax):
        raise ValueError(
            f"values outside the int{bits} grid [{qmin}, {qmax}] (found {q.min()}..{q.max()})"
        )
    scale = np.asarray(packed.scales, np.float32)
    if scale.size != g * j or not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError("scales must be finite and positive, one per channel and group")
    scale = scale.reshape(j, g)
    zero = None
    if not spec.symmetric:
        zero = from_codes(unpack_bits(packed.zero_points, bits, g * j), bits).reshape(j, g)
    if spec.sparse:  # pruned weights quantize to the zero point (0 on a symmetric grid)
        fill = 0 if zero is None else np.repeat(zero, i // g, axis=1)
        q = unpack_nm(q, pos, (j, i), spec.n, spec.m, fill)
    q = q.reshape(j, g, i // g)
    # dequantize exactly as quant.dequantize: (q - z) in float32, times s
    qf = q.astype(np.float32)
    if zero is not None:
        qf = qf - zero.astype(np.float32)[..., None]
    w = (qf * scale[..., None]).reshape(j, i).T
    qa = quant.QuantizedArray(
        np.ascontiguousarray(q.reshape(j, i).T),
        np.ascontiguousarray(scale.T),
        None if zero is None else np.ascontiguousarray(zero.T),
        bits,
        spec.symmetric,
    )
    return qa, np.ascontiguousarray(w)


# --------------------------------------------------------------------------- the file
class Packed(NamedTuple):
    """What :func:`read_packed` returns: ``(config, spec, params, tokenizer, train_config,
    meta)``.

    ``params`` is the model's parameter dict (``encoder/blocks`` keys as ints, NumPy
    arrays): float32 everywhere, or, with ``dequantize=False``, a
    :class:`usmlite_edu.core.quant.QuantizedArray` for every quantized kernel.
    ``train_config`` (buckets, batch size, compute dtype: what inference pads and
    computes with) and ``tokenizer`` are ``None`` if the writer had none; ``meta`` is the
    header's ``__metadata__`` as stored (strings; JSON where structured).
    """

    config: ConformerConfig
    spec: Spec
    params: dict
    tokenizer: Any
    train_config: TrainConfig | None = None
    meta: dict | None = None


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """Bytes of a written file beside the ``exact`` accounting of :mod:`usmlite_edu.core.sizes`.

    ``tensor_bytes`` per tensor of :data:`TENSORS`; ``exact``: the
    :class:`usmlite_edu.core.sizes.SizeBreakdown` of the spec on this model (bits).
    """

    path: Path
    spec: Spec
    file_bytes: int
    header_bytes: int  # the 8-byte length and the JSON header
    tensor_bytes: dict
    exact: Any

    @property
    def data_bytes(self) -> int:
        return sum(self.tensor_bytes.values())

    @property
    def exact_bytes(self) -> float:
        return self.exact.total / 8

    def by_component(self) -> list[tuple[str, int, float]]:
        """``(component, file bytes, exact bytes)`` per component of the accounting."""
        e = self.exact
        return [
            ("values", self.tensor_bytes["values"], e.values / 8),
            ("scales", self.tensor_bytes["scales"], e.scales / 8),
            ("zero_points", self.tensor_bytes["zero_points"], e.zero_points / 8),
            ("index", self.tensor_bytes["index"], e.index / 8),
            ("float32", self.tensor_bytes["float32"], e.float_layers / 8),
        ]

    def summary(self) -> str:
        """Two lines: the file's bytes, and the ``sizes`` exact figure beside them."""
        e = self.exact
        diff = self.data_bytes - self.exact_bytes
        return (
            f"wrote {self.path}: {self.file_bytes:,} bytes = {self.header_bytes:,} header "
            f"+ {self.data_bytes:,} tensor data ({100 * self.file_bytes * 8 / e.float_total:.2f}% "
            f"of float32)\n"
            f"sizes, exact convention ({self.spec}): {self.exact_bytes:,.0f} bytes "
            f"({e.ratio:.2f}% of float32); tensor data - exact = {diff:+,.0f} bytes"
        )


def _set(tree: dict, name: str, value) -> None:
    keys = [int(k) if k.isdigit() else k for k in name.split("/")]
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def kernel_specs(cfg: ConformerConfig, spec: Spec | str) -> dict[str, CompressionSpec]:
    """``{weight name: spec}`` of every kernel a packed file of ``cfg`` under ``spec``
    packs, in file order: the dense kernels, each under its own spec for a
    :class:`~usmlite_edu.core.specs.SpecMap`, except those whose spec is float (they go
    to the ``float32`` tensor). Refuses (``ValueError`` naming the weight) a spec some
    layer cannot take, and a map rule that matches no layer."""
    spec = as_spec(spec)
    if isinstance(spec, SpecMap):
        return {n: s for n, s in model.resolve_specs(spec, cfg).items() if not s.is_float}
    out = {}
    if not spec.is_float:
        for w in param_table(cfg):
            if w.role == "dense":
                spec.check_shape(w.shape, w.name)
                out[w.name] = spec
    return out


#: how a spec map's file stores its kernels (the ``per_layer`` entry of the layout)
PER_LAYER = (
    "each kernel under its own spec (the fifth entry of its row): codes, scales, zero "
    "points and index at that spec's widths, as for a one-spec file; the kept values of an "
    "unquantized N:M kernel as little-endian float32 bytes inside the U8 values tensor when "
    "other kernels are quantized"
)


def file_layout(cfg: ConformerConfig, spec: Spec | str) -> dict:
    """The ``layout`` entry of a packed file's metadata for ``cfg`` under ``spec``.

    ``kernels`` lists ``[name, in, out, groups]`` per packed kernel in file order (a
    :class:`~usmlite_edu.core.specs.SpecMap`: ``[name, in, out, groups, spec]``, each
    kernel's own spec); ``float32`` counts the parameters that stay float (their names
    and shapes are the rest of :func:`usmlite_edu.speech.model.param_table`, in its order).
    """
    spec = as_spec(spec)
    specs = kernel_specs(cfg, spec)
    shapes = {w.name: w.shape for w in param_table(cfg)}
    kernels = []
    for name, s in specs.items():
        i, j = shapes[name]
        row = [name, i, j, s.groups_for(i) if s.quantized else 0]
        kernels.append(row + [str(s)] if isinstance(spec, SpecMap) else row)
    nfloat = len(param_table(cfg)) - len(kernels)
    if isinstance(spec, SpecMap):
        return {
            "order": ORDER,
            "per_layer": PER_LAYER,
            "codes": "q + 2**(bits-1), unsigned" if spec.quantized else None,
            "values_dtype": "U8" if spec.quantized else "F32",
            "index_bits_per_value": "ceil(log2 m) of each kernel's N:M" if spec.sparse else None,
            "kernels": kernels,
            "float32_params": nfloat,
        }
    ibits, enum = nm_index_bits(spec.n, spec.m) if spec.sparse else (0, 0)
    return {
        "order": ORDER,
        "codes": "q + 2**(bits-1), unsigned" if spec.quantized else None,
        "bits": spec.bits,
        "symmetric": spec.symmetric if spec.quantized else None,
        "zero_points": spec.quantized and not spec.symmetric,
        "values_dtype": "U8" if spec.quantized else "F32",
        "n": spec.n,
        "m": spec.m,
        "index_bits_per_value": (spec.m - 1).bit_length() if spec.sparse else None,
        "index_bits_per_group": ibits or None,
        "enumeration_bits_per_group": enum or None,
        "kernels": kernels,
        "float32_params": nfloat,
    }


def _tokenizer_meta(tok) -> dict:
    """The tokenizer in a few hundred bytes: the sentencepiece model without its
    normalisation table when sentencepiece rebuilds that table, byte for byte, from the
    rule's name (``nmt_nfkc``: 240 kB, larger than a packed ``cpu`` model's header budget);
    the whole model otherwise. The SHA-256 of the full model checks the rebuild."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = tok._proto
    m = pb.ModelProto()
    m.ParseFromString(proto)
    charsmap = "included"
    if m.normalizer_spec.precompiled_charsmap and _builtin_charsmap(m.normalizer_spec.name) == (
        m.normalizer_spec.precompiled_charsmap
    ):
        m.normalizer_spec.precompiled_charsmap = b""
        charsmap = f"sentencepiece rule {m.normalizer_spec.name}"
        stored = m.SerializeToString()
    else:
        stored = proto
    return {
        "settings": tok.settings,
        "model": base64.b64encode(stored).decode("ascii"),
        "charsmap": charsmap,
        "sha256": hashlib.sha256(proto).hexdigest(),
    }


def _builtin_charsmap(rule: str) -> bytes | None:
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    try:
        spec = pb.NormalizerSpec()
        spec.ParseFromString(
            spm.SentencePieceNormalizer(rule_name=rule).serialized_normalizer_spec()
        )
    except Exception:  # noqa: BLE001 - an unknown rule name: no built-in table
        return None
    return spec.precompiled_charsmap


def _tokenizer_from_meta(d: dict):
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = base64.b64decode(d["model"], validate=True)
    if d["charsmap"] != "included":
        m = pb.ModelProto()
        m.ParseFromString(proto)
        table = _builtin_charsmap(m.normalizer_spec.name)
        if table is None:
            raise ValueError(f"this sentencepiece has no rule {m.normalizer_spec.name!r}")
        m.normalizer_spec.precompiled_charsmap = table
        proto = m.SerializeToString()
    if hashlib.sha256(proto).hexdigest() != d["sha256"]:
        raise ValueError(
            "the tokenizer rebuilt from the file differs from the one exported "
            "(another sentencepiece version?)"
        )
    return Tokenizer(proto, d["settings"])


def _json_default(o):
    return runs.json_default(o)


def write_packed(
    source: str | os.PathLike | dict,
    spec: Spec | str | None,
    path: str | os.PathLike,
    *,
    config: ConformerConfig | None = None,
    tokenizer=None,
    train_config: TrainConfig | None = None,
    masks: Any = None,
    source_meta: dict[str, str] | None = None,
) -> ExportInfo:
    """Pack a run's (or a parameter dict's) weights under ``spec`` into ``path``.

    Args:
      source: a run directory (``usmlite-edu train --out``), or a parameter dict (then
        ``config`` is required; ``tokenizer`` and ``train_config`` are optional, and a
        file without them cannot transcribe).
      spec: the compression (default: the run's own; a float run's weights under another
        spec is post-training quantization). N:M masks: the run's own when ``spec`` is
        its spec and it saved them, else one-shot (Eq. 3), as
        :func:`usmlite_edu.speech.runs.load_masks` gives them to ``transcribe``; for a dict,
        ``masks`` or one-shot. A :class:`~usmlite_edu.core.specs.SpecMap` packs each
        dense kernel under its own spec (module docstring, "Per-layer specs").
      path: the ``.safetensors`` file to write (replaced atomically).
      source_meta: for a dict, extra metadata entries (a run directory writes its own:
        ``source``, ``source_spec``).

    Returns the :class:`ExportInfo` (file bytes beside the ``exact`` accounting).
    """
    from safetensors.numpy import save_file

    meta_extra: dict = dict(source_meta or {})
    if isinstance(source, dict):
        if config is None:
            raise ValueError("write_packed: a parameter dict needs config=")
        cfg, params, tok, tcfg = config, source, tokenizer, train_config
        spec = as_spec(spec)
        _check_exportable(spec)
        layout = file_layout(cfg, spec)  # refuses a spec some layer cannot take
        if spec.sparse and masks is None:
            masks = model.one_shot_masks(params, spec, cfg)
    else:
        run_dir = Path(source)
        run = runs.load_run(run_dir)
        _, tcfg, _ = runs.read_config(run_dir)
        cfg, params, tok = run.config, run.params, run.tokenizer
        spec = as_spec(spec, run.spec)
        _check_exportable(spec)
        layout = file_layout(cfg, spec)  # before any mask is computed
        masks = runs.load_masks(run_dir, run, spec)
        meta_extra = {"source": str(run_dir), "source_spec": str(run.spec)}
    if tok is not None and tok.vocab_size != cfg.vocab_size:
        raise ValueError(
            f"write_packed: tokenizer has {tok.vocab_size} classes, the model {cfg.vocab_size}"
        )

    tensors = _pack_tensors(cfg, spec, params, masks)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": str(spec),
        "model_config": json.dumps(dataclasses.asdict(cfg), default=_json_default),
        "train_config": json.dumps(
            None if tcfg is None else dataclasses.asdict(tcfg), default=_json_default
        ),
        "tokenizer": json.dumps(None if tok is None else _tokenizer_meta(tok)),
        "layout": json.dumps(layout, separators=(",", ":")),
        "sha256": json.dumps(
            {t: hashlib.sha256(a.tobytes()).hexdigest() for t, a in tensors.items()},
            separators=(",", ":"),
        ),
        **{k: str(v) for k, v in meta_extra.items()},
    }
    metadata[HEADER_SUM] = header_checksum(metadata)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates 0600; the user's umask decides
    os.replace(tmp, path)
    with path.open("rb") as f:
        header = 8 + struct.unpack("<Q", f.read(8))[0]
    return ExportInfo(
        path,
        spec,
        path.stat().st_size,
        header,
        {t: int(a.nbytes) for t, a in tensors.items()},
        sizes.model_size(spec, cfg),
    )


def _pack_tensors(
    cfg: ConformerConfig, spec: Spec, params: Any, masks: Any
) -> dict[str, np.ndarray]:
    """The five tensors of :data:`TENSORS`: every weight of ``params`` in
    :func:`usmlite_edu.speech.model.param_table` order, each dense kernel packed under
    its spec (:func:`pack_kernel`, its N:M mask from ``masks``), the rest float32."""
    specs = kernel_specs(cfg, spec)
    values_dtype = np.uint8 if spec.quantized else np.float32
    parts: dict[str, list[np.ndarray]] = {t: [] for t in TENSORS}
    for w in param_table(cfg):
        value = np.asarray(model.weight_at(params, w.name), np.float32)
        if value.shape != w.shape:
            raise ValueError(
                f"write_packed: {w.name} has shape {value.shape}, config says {w.shape}"
            )
        kspec = specs.get(w.name)
        if kspec is not None:
            mask = None  # a dense layer of a map: its mask is a scalar True
            if kspec.sparse and masks is not None:
                mask = np.asarray(model.weight_at(masks, w.name), bool)
            pk = pack_kernel(value, kspec, mask)
            if pk.values.dtype != values_dtype:  # float N:M values among quantized layers
                pk = pk._replace(values=pk.values.astype("<f4").view(np.uint8))
            for t, arr in zip(("values", "scales", "zero_points", "index"), pk):
                parts[t].append(arr)
        else:
            parts["float32"].append(value.ravel())
    dtypes = {"values": values_dtype, "scales": np.float32, "zero_points": np.uint8}
    dtypes |= {"index": np.uint8, "float32": np.float32}
    return {
        t: np.concatenate(parts[t]).astype(dtypes[t]) if parts[t] else np.zeros(0, dtypes[t])
        for t in TENSORS
    }


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_exportable(spec) -> None:
    if spec.lsq:  # a SpecMap refuses lsq itself
        raise ValueError(
            f"write_packed: spec '{spec}' has learned (LSQ) step sizes, which the packed "
            "format does not store yet; evaluate the run with --checkpoint, or export it "
            f"under '{spec.replace(lsq=False)}' (min/max scales)"
        )


# --------------------------------------------------------------------------- reading
class _Refused(ValueError):
    """A packed file refused, with a message that already names it."""


def _refuse(path, what: str) -> ValueError:
    return _Refused(f"{path}: {what}")


def _read_header(path: Path) -> tuple[dict, dict, int]:
    """``(tensor entries, metadata, data offset)`` of a safetensors file, checked by hand
    (sizes, offsets, our format and version) before the safetensors library sees it."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (a packed model from usmlite-edu export)")
    if not path.is_file():
        raise _refuse(path, "not a file (a packed model from usmlite-edu export is one file)")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _refuse(path, f"not a safetensors file: only {size} bytes")
        n = struct.unpack("<Q", head)[0]
        if n > min(size - 8, _MAX_HEADER):
            raise _refuse(
                path,
                f"not a safetensors file, or truncated: its first 8 bytes announce a "
                f"{n:,}-byte header, the file has {size:,} bytes",
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise _refuse(path, "not a safetensors file (its header is not JSON)") from None
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _refuse(
            path,
            f"a safetensors file, but not a packed usmlite_edu model (its metadata has no "
            f"'format: {FORMAT}'); write one with `usmlite-edu export`",
        )
    version = meta.get("format_version")
    if version not in READ_VERSIONS:
        raise _refuse(
            path,
            f"packed with format version {version!r}; this usmlite_edu reads versions "
            f"{', '.join(READ_VERSIONS)}",
        )
    if version == "1":
        _LOG.warning(
            "%s: format version 1 has no header checksum: its configs, layout and tokenizer "
            "are unchecked (export the run again to get version %s)",
            path,
            FORMAT_VERSION,
        )
    elif not all(isinstance(v, str) for v in meta.values()) or meta.get(
        HEADER_SUM
    ) != header_checksum(meta):
        raise _refuse(
            path,
            "its header does not match its header checksum: the metadata (configs, layout "
            "or tokenizer) was changed or damaged; export the run again",
        )
    data = size - 8 - n
    try:
        ends = [int(e["data_offsets"][1]) for e in header.values()]
    except (TypeError, KeyError, IndexError, ValueError):
        raise _refuse(path, "damaged header: a tensor entry has no data_offsets") from None
    if max(ends, default=0) != data:
        raise _refuse(
            path,
            f"truncated or damaged: the header describes {max(ends, default=0):,} bytes of "
            f"tensor data, the file holds {data:,}",
        )
    return header, meta, 8 + n


def read_packed(path: str | os.PathLike, *, dequantize: bool = True) -> Packed:
    """Read a file written by :func:`write_packed`: ``(config, spec, params, tokenizer,
    train_config, meta)``.

    ``params`` are float32 (``dequantize=True``: every compressed kernel is ``s * (q -
    z)``, with zeros at pruned positions, bit for bit the fake-quantized, masked weight
    :func:`usmlite_edu.core.compress.compress_weight` gives under ``jax.jit``), or hold a
    :class:`usmlite_edu.core.quant.QuantizedArray` per quantized kernel (``dequantize=False``),
    what :func:`inference` multiplies with. Raises ``ValueError`` naming the file and the
    problem for anything that is not an intact packed model of this format version
    (``FileNotFoundError`` if there is no file).
    """
    path = Path(path)
    try:
        return _read_packed(path, dequantize)
    except (FileNotFoundError, _Refused):
        raise
    except ValueError as e:
        raise _refuse(path, str(e)) from e
    except Exception as e:  # noqa: BLE001 - bytes from outside: whatever breaks, say so
        raise _refuse(path, f"cannot be read ({type(e).__name__}: {e})") from e


def _read_packed(path: Path, dequantize: bool) -> Packed:
    from safetensors import SafetensorError, safe_open

    header, meta, _ = _read_header(path)
    try:
        cfg = config_from_dict(ConformerConfig, json.loads(meta["model_config"]))
        spec = as_spec(meta["spec"])
        t = json.loads(meta.get("train_config", "null"))
        tcfg = None if t is None else config_from_dict(TrainConfig, t)
        layout = json.loads(meta["layout"])
        sums = json.loads(meta["sha256"])
        tok_meta = json.loads(meta.get("tokenizer", "null"))
        want = file_layout(cfg, spec)
    except (KeyError, TypeError, ValueError) as e:
        raise _refuse(
            path, f"its metadata does not describe a model this version can build ({e})"
        ) from None
    if layout != want:
        raise _refuse(path, "its layout does not match its model config and spec (damaged header)")
    if tcfg is not None:
        need, limit = batch_memory_bytes(cfg, tcfg), memory_limit_bytes()
        if need > limit:
            raise _refuse(
                path,
                f"one evaluation batch of its largest bucket ({max(tcfg.bucket_seconds):g} s "
                f"x {tcfg.eval_batch_size} at {cfg.sample_rate} Hz) needs at least "
                f"{need / 2**30:,.1f} GiB, more than this machine's {limit / 2**30:,.1f} GiB; "
                "the header's train config is not one a run could have written",
            )
    if set(header) != set(TENSORS):
        raise _refuse(path, f"holds tensors {sorted(header)}, expected {list(TENSORS)}")
    try:
        with safe_open(str(path), framework="np") as f:
            tensors = {t: f.get_tensor(t) for t in TENSORS}
    except (SafetensorError, OSError, ValueError) as e:
        raise _refuse(path, f"safetensors cannot read it ({e})") from None
    for t, a in tensors.items():
        if hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() != sums.get(t):
            raise _refuse(path, f"tensor {t!r} does not match its checksum: the file is damaged")
    params = _unpack_params(cfg, spec, tensors, dequantize)
    try:
        tok = None if tok_meta is None else _tokenizer_from_meta(tok_meta)
    except Exception as e:  # noqa: BLE001 - protobuf / sentencepiece errors of any type
        raise _refuse(path, f"its tokenizer cannot be rebuilt ({e})") from None
    return Packed(cfg, spec, params, tok, tcfg, meta)


def _unpack_params(cfg, spec, tensors, dequantize: bool) -> dict:
    """Cut the five tensors back into the parameter dict (``ValueError`` on any mismatch)."""
    want = {"values": np.uint8 if spec.quantized else np.float32, "scales": np.float32}
    want |= {"zero_points": np.uint8, "index": np.uint8, "float32": np.float32}
    for t, a in tensors.items():
        if a.dtype != want[t] or a.ndim != 1:
            raise ValueError(f"tensor {t!r} is {a.dtype}{list(a.shape)}, expected 1-D {want[t]}")
    at = dict.fromkeys(TENSORS, 0)

    def take(t: str, nbytes: int) -> np.ndarray:
        a = tensors[t]
        k = nbytes // a.itemsize
        if at[t] + k > a.size:
            raise ValueError(f"tensor {t!r} is shorter than its layout")
        out = a[at[t] : at[t] + k]
        at[t] += k
        return out

    specs = kernel_specs(cfg, spec)
    params: dict = {}
    for w in param_table(cfg):
        kspec = specs.get(w.name)
        if kspec is not None:
            n = _kernel_sizes(w.shape, kspec)
            pk = PackedKernel(*(take(t, n[t]) for t in PackedKernel._fields))
            if not kspec.quantized and pk.values.dtype == np.uint8:  # float32 bytes
                pk = pk._replace(values=np.frombuffer(pk.values.tobytes(), "<f4"))
            try:
                qa, dense = unpack_kernel(pk, w.shape, kspec)
            except ValueError as e:
                raise ValueError(f"kernel {w.name}: {e}") from None
            _set(params, w.name, dense if dequantize or qa is None else qa)
        else:
            _set(params, w.name, take("float32", 4 * w.size).reshape(w.shape).copy())
    for t, a in tensors.items():
        if at[t] != a.size:
            raise ValueError(f"tensor {t!r} has {a.size - at[t]} elements beyond its layout")
    return params


# --------------------------------------------------------------------------- inference
def inference(packed: Packed) -> tuple[Forward, dict]:
    """``(forward, params)`` that transcribe from a packed file (masks: ``None``).

    Float and unquantized N:M specs: the ordinary float
    :func:`~usmlite_edu.deploy.forward.get_forward` with the float parameters (pruned entries
    already zero). Quantized specs: a forward whose model holds each compressed kernel as
    its stored integers, scales and zero points, so every dense layer computes Eq. (1),
    ``s * (X @ q - z * sum(X))`` (:func:`usmlite_edu.core.quant.native_matmul`): the forward
    pass native QAT runs, from the same integers. A
    :class:`~usmlite_edu.core.specs.SpecMap`: the same, layer by layer (a quantized
    layer holds its integers, a float or float N:M layer its float weights). Requires a
    file with a training config (buckets) and a tokenizer.
    """
    if packed.train_config is None or packed.tokenizer is None:
        raise ValueError(
            "this packed model has no tokenizer or training config; export it from a run "
            "directory (usmlite-edu export --checkpoint RUN) to transcribe with it"
        )
    cfg, spec, tcfg = packed.config, packed.spec, packed.train_config
    if not spec.quantized:
        return get_forward(cfg, spec, tcfg), packed.params
    return packed_forward(cfg, spec, tcfg), packed.params


@functools.lru_cache(maxsize=2)
def packed_forward(cfg: ConformerConfig, spec: Spec, tcfg: TrainConfig) -> Forward:
    """A :class:`~usmlite_edu.deploy.forward.Forward` whose model's packed kernels are
    :class:`usmlite_edu.core.quant.QuantizedArray` (the parameters :func:`read_packed` gives
    with ``dequantize=False``)."""
    shapes = {w.name: w.shape for w in param_table(cfg)}
    kernels = {}
    for name, s in kernel_specs(cfg, spec).items():
        if not s.quantized:  # a float N:M layer of a map: float weights
            continue
        (i, j), g = shapes[name], s.groups_for(shapes[name][0])
        kernels[name] = quant.QuantizedArray(
            jax.ShapeDtypeStruct((i, j), np.int8),
            jax.ShapeDtypeStruct((g, j), np.float32),
            None if s.symmetric else jax.ShapeDtypeStruct((g, j), np.int8),
            s.bits,
            s.symmetric,
        )
    options = {"compute_dtype": tcfg.compute_dtype}
    graphdef = model.graphdef_with_kernels(cfg, spec, kernels, **options)
    return Forward(cfg, spec, graphdef=graphdef, remat=tcfg.remat, **options)
