"""Model-size accounting: the "Model Size Ratio" column of the paper's Tables 1-3.

Two conventions, side by side:

``paper`` (the paper's estimate, section 5): every compressible weight costs
``density * bits / 32`` of its float32 size, plus 1 bit per weight for an N:M mask
(``1/32`` = 3.1%), plus one float32 per sub-channel scale, which the paper states as
``g / 1536`` (1%, 2%, 4.1% for g = 16, 32, 64): one scale per ``model_dim`` inputs, for
every matrix. Per-channel scales and the float layers (convolutions, softmax, norms,
biases) are ignored, so the ratio is the per-weight fraction above.

``exact`` (the bytes a packed checkpoint would hold): kept values at their bit width;
one float32 scale per sub-channel group and output channel, using each matrix's real
input dimension; an integer zero point per group at the grid's width for asymmetric
grids; N:M index metadata of ``n * ceil(log2 m)`` bits per group of ``m`` (the position of
each kept weight, as sparse tensor cores store it); and every other parameter in float32.

Both return percentages of the float32 B0 model.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

from usmlite_edu.core.specs import CompressionSpec, Spec, as_spec

__all__ = [
    "ParamInfo",
    "register_model_tables",
    "table_of",
    "SizeBreakdown",
    "model_size",
    "size_ratio",
    "PAPER_ROWS",
    "size_table",
    "format_size_table",
]


class ParamInfo(NamedTuple):
    """One parameter of a model, as the model declares it (a row of
    :func:`usmlite_edu.speech.model.param_table`, read off the NNX module's parameters and
    their metadata).

    Attributes:
      name: slash-separated path in the parameter tree (``encoder/blocks/0/ffn1/dense1/kernel``).
      shape: its shape.
      role: ``"dense"`` (a compressible matmul kernel), ``"conv"``, ``"softmax"`` (the
        output kernel) or ``"other"`` (biases, norms, position biases, LSQ steps).
      compressible: whether the model's options put it through the quantizer / N:M
        masks (``dense``, and ``softmax`` with ``compress_softmax``).
      axes: logical sharding axis names, one per dimension
        (:data:`usmlite_edu.scale.mesh.LOGICAL_RULES`).
    """

    name: str
    shape: tuple[int, ...]
    role: str
    compressible: bool = False
    axes: tuple[str | None, ...] = ()

    @property
    def size(self) -> int:
        return math.prod(self.shape)


Convention = Literal["paper", "exact"]
#: A model whose size is asked: its parameter table, or a preset name or model config
#: that the registered resolver (:func:`register_model_tables`) turns into one.
ModelLike = str | Any | Sequence[ParamInfo]

# name or config -> (table, model_dim); installed by usmlite_edu.speech.model, which
# knows the model (this bottom wing must not import it).
_model_tables: Callable[[Any], tuple[Sequence[ParamInfo], int]] | None = None


def register_model_tables(resolve: Callable[[Any], tuple[Sequence[ParamInfo], int]]) -> None:
    """Install the function that turns a preset name or model config into ``(parameter
    table, model_dim)`` (:mod:`usmlite_edu.speech.model` does when it is imported), so the
    functions here accept names and configs as well as tables."""
    global _model_tables
    _model_tables = resolve


@dataclasses.dataclass(frozen=True)
class SizeBreakdown:
    """Stored bits of a compressed model, by component (``exact`` convention)."""

    values: float  # compressible weights' kept values
    scales: float  # float32 scales (per channel x sub-channel group)
    zero_points: float  # integer zero points (asymmetric grids)
    index: float  # N:M index metadata
    float_layers: float  # everything not compressed, float32
    float_total: float  # the whole model in float32 (B0's size)

    @property
    def total(self) -> float:
        return self.values + self.scales + self.zero_points + self.index + self.float_layers

    @property
    def ratio(self) -> float:
        return 100.0 * self.total / self.float_total

    @property
    def megabytes(self) -> float:
        return self.total / 8 / 1e6


def table_of(model: ModelLike) -> list[ParamInfo]:
    """The parameter table of ``model``: itself if it is one, else what the registered
    resolver (:func:`register_model_tables`) makes of a preset name or config."""
    return _weights(model)[0]


def _weights(model: ModelLike) -> tuple[list[ParamInfo], int | None]:
    if isinstance(model, Sequence) and not isinstance(model, str):
        return list(model), None
    if _model_tables is None:
        # A name or config needs the model's parameter table: the model registers its
        # resolver when imported. Imported by name here, the one place the bottom wing
        # reaches up (docs/architecture.md), so that `size_ratio("int4", "usm_2b")` works
        # in a notebook that never imported the model.
        importlib.import_module("usmlite_edu.speech.model")
    if _model_tables is None:
        raise RuntimeError(
            f"sizes: {model!r} is not a parameter table and usmlite_edu.speech.model did "
            "not register its resolver; pass model.param_table(cfg)"
        )
    table, model_dim = _model_tables(model)
    return list(table), model_dim


def model_size(
    spec: Spec | str, model: ModelLike = "usm_2b", reference: ModelLike | None = None
) -> SizeBreakdown:
    """Exact stored bits of ``model`` compressed with ``spec``, relative to ``reference``.

    ``reference`` is the float32 B0 model (default: ``model`` itself).
    """
    spec_for = _spec_for(spec)
    weights, _ = _weights(model)
    ref_weights, _ = _weights(reference if reference is not None else model)
    values = scales = zeros = index = floats = 0.0
    for w in weights:
        spec = spec_for(w.name)
        if w.role != "dense" or spec.is_float:
            floats += 32.0 * w.size
            continue
        spec.check_shape(w.shape, w.name)
        i, j = w.shape
        kept = w.size * spec.density
        values += kept * (spec.bits if spec.quantized else 32)
        if spec.quantized:
            g = spec.groups_for(i)
            scales += 32.0 * g * j
            if not spec.symmetric:
                zeros += float(spec.bits) * g * j
        if spec.sparse:
            index += (w.size / spec.m) * spec.n * math.ceil(math.log2(spec.m)) if spec.m > 1 else 0
    total_ref = 32.0 * sum(w.size for w in ref_weights)
    return SizeBreakdown(values, scales, zeros, index, floats, total_ref)


def _spec_for(spec) -> Callable[[str], CompressionSpec]:
    """Weight name -> spec: one spec for all, or a per-layer map's lookup."""
    spec = as_spec(spec)
    if isinstance(spec, CompressionSpec):
        return lambda _name: spec
    return spec.spec_for


def _paper_fraction(spec: CompressionSpec, ref_in_dim: int) -> float:
    frac = spec.density * ((spec.bits if spec.quantized else 32) / 32)
    if spec.sparse:
        frac += 1 / 32
    if spec.quantized and spec.group_size:
        frac += 1 / spec.group_size
    elif spec.quantized and spec.sub_channels > 1:
        frac += spec.sub_channels / ref_in_dim
    return frac


def size_ratio(
    spec: Spec | str,
    model: ModelLike = "usm_2b",
    convention: Convention = "paper",
    *,
    reference: ModelLike | None = None,
    paper_in_dim: int | None = None,
) -> float:
    """Model size as a percentage of the float32 reference (B0).

    Args:
      spec: the compression (``"int4+2:4"``, a :class:`CompressionSpec`, ...).
      model: preset name, config or parameter table (:class:`ParamInfo` rows) being
        compressed.
      convention: ``"paper"`` (the paper's estimate) or ``"exact"`` (stored bits).
      reference: the float32 model the ratio is relative to (default ``model``). A dense
        float ``model`` smaller than ``reference`` gives the B1-B3 ratios.
      paper_in_dim: the input width in the paper's ``g / width`` sub-channel overhead
        (default: the model dimension, 1536 for the 2B model).
    """
    spec = as_spec(spec)
    if convention == "exact":
        return model_size(spec, model, reference).ratio
    if convention != "paper":
        raise ValueError(f"convention must be 'paper' or 'exact', got {convention!r}")
    weights, d = _weights(model)
    if not isinstance(spec, CompressionSpec):  # a per-layer map: the compressible
        # weights' fractions, weighted by their sizes (the paper's estimate per layer)
        dense = [w for w in weights if w.role == "dense"]
        if reference is not None:
            raise ValueError("a per-layer map's paper estimate is relative to its own model")
        d = paper_in_dim or d or Counter(w.shape[0] for w in dense).most_common(1)[0][0]
        frac = 0.0
        for w in dense:
            ws = spec.spec_for(w.name)
            ws.check_shape(w.shape, w.name)
            frac += w.size * (1.0 if ws.is_float else _paper_fraction(ws, d))
        return 100.0 * frac / sum(w.size for w in dense)
    ref_weights, _ = _weights(reference if reference is not None else model)
    if spec.is_float:
        return 100.0 * sum(w.size for w in weights) / sum(w.size for w in ref_weights)
    if reference is not None and sum(w.size for w in weights) != sum(w.size for w in ref_weights):
        raise ValueError(
            "the paper's estimate compares a compressed model with its own "
            "float32 version; pass reference only for float specs"
        )
    if paper_in_dim is None:
        if d is None:  # a bare weight list: use its most common input width
            d = Counter(w.shape[0] for w in weights if w.role == "dense").most_common(1)[0][0]
        paper_in_dim = d
    return 100.0 * _paper_fraction(spec, paper_in_dim)


# --------------------------------------------------------------------------- the table
@dataclasses.dataclass(frozen=True)
class PaperRow:
    exp: str
    description: str
    spec: str
    model: str  # preset compressed (B rows: a smaller dense model)
    paper_ratio: float  # the paper's printed figure (%)
    paper_wer: float


PAPER_ROWS: tuple[PaperRow, ...] = (
    PaperRow("E0", "int8 PTQ", "int8", "usm_2b", 25.0, 4.2),
    PaperRow("E1", "int8 QAT", "int8", "usm_2b", 25.0, 4.2),
    PaperRow("E2", "int4 PTQ", "int4", "usm_2b", 12.5, 86.7),
    PaperRow("E3", "int4 QAT", "int4", "usm_2b", 12.5, 4.3),
    PaperRow("E4", "int2 QAT", "int2", "usm_2b", 6.3, 99.9),
    PaperRow("E5", "int2 QAT + 16 sub-channels", "int2/g16", "usm_2b", 7.3, 45.2),
    PaperRow("E6", "int2 QAT + 32 sub-channels", "int2/g32", "usm_2b", 8.3, 32.0),
    PaperRow("E7", "int2 QAT + 64 sub-channels", "int2/g64", "usm_2b", 10.4, 12.3),
    PaperRow("E8", "2:4 one-shot", "2:4", "usm_2b", 53.1, 4.4),
    PaperRow("E9", "2:4 1k-shot", "2:4/fs1000", "usm_2b", 53.1, 4.3),
    PaperRow("E10", "1:4 one-shot", "1:4", "usm_2b", 28.1, 11.7),
    PaperRow("E11", "1:4 1k-shot", "1:4/fs1000", "usm_2b", 28.1, 10.6),
    PaperRow("E12", "int4 QAT + 2:4 one-shot", "int4+2:4", "usm_2b", 9.4, 4.4),
    PaperRow("E13", "int4 QAT + 2:4 1k-shot", "int4+2:4/fs1000", "usm_2b", 9.4, 4.5),
    PaperRow("B1", "float32 dense 1B", "float", "usm_1b", 50.2, 4.5),
    PaperRow("B2", "float32 dense 600M", "float", "usm_600m", 33.5, 4.7),
    PaperRow("B3", "float32 dense 300M", "float", "usm_300m", 18.9, 5.0),
)


def size_table(model: str = "usm_2b") -> list[dict]:
    """Every row of the paper with the paper's figure, our paper-convention estimate and
    the exact stored size. B rows compare the smaller dense preset with ``model``."""
    rows = []
    for r in PAPER_ROWS:
        compressed = r.model if r.exp.startswith("B") else model
        ref = model if r.exp.startswith("B") else None
        size = model_size(r.spec, compressed, reference=ref or compressed)
        rows.append(
            dict(
                exp=r.exp,
                description=r.description,
                spec=r.spec,
                paper=r.paper_ratio,
                estimate=size_ratio(r.spec, compressed, "paper", reference=ref),
                exact=size.ratio,
                megabytes=size.megabytes,
            )
        )
    return rows


def format_size_table(model: str = "usm_2b") -> str:
    """The size table as Markdown (what ``usmlite-edu sizes`` prints)."""
    b0 = model_size("float", model)
    lines = [
        f"Model size ratio relative to float32 B0 = {model} "
        f"({sum(w.size for w in _weights(model)[0]) / 1e9:.3f}B parameters, "
        f"{b0.megabytes:,.0f} MB)",
        "",
        "| exp | model | spec | paper | ours (paper convention) | exact stored | exact MB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in size_table(model):
        lines.append(
            f"| {r['exp']} | {r['description']} | `{r['spec']}` | {r['paper']:.1f}% "
            f"| {r['estimate']:.2f}% | {r['exact']:.2f}% | {r['megabytes']:,.0f} |"
        )
    return "\n".join(lines)
