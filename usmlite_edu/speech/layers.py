"""The compressible layers of a Conformer configuration: their names and shapes, the spec
each gets under a per-layer :class:`~usmlite_edu.core.specs.SpecMap`, and the per-layer
size table (``usmlite-edu sizes --layers``, the search's records)."""

from __future__ import annotations

from typing import Any

from usmlite_edu.core import sizes
from usmlite_edu.core.specs import CompressionSpec, Spec, SpecMap, layer_name
from usmlite_edu.speech.configs import ConformerConfig, weight_shapes

__all__ = ["compressible_layers", "compressible_weights", "resolve", "layer_table"]


def compressible_weights(
    cfg: ConformerConfig, compress_softmax: bool = False
) -> dict[str, tuple[int, ...]]:
    """``{kernel name: shape}`` of ``cfg``'s compressible weights, in model order: role
    ``dense``, plus the output layer with ``compress_softmax`` (the rule of
    :func:`usmlite_edu.speech.model.compressible_mask_tree`)."""
    return {
        w.name: tuple(w.shape)
        for w in weight_shapes(cfg)
        if w.role == "dense" or (w.role == "softmax" and compress_softmax)
    }


def compressible_layers(cfg: ConformerConfig, compress_softmax: bool = False) -> list[str]:
    """Layer names (kernel names without ``/kernel``) of ``cfg``'s compressible weights."""
    return [layer_name(n) for n in compressible_weights(cfg, compress_softmax)]


def resolve(
    spec: Spec, cfg: ConformerConfig, compress_softmax: bool = False
) -> dict[str, CompressionSpec]:
    """``{kernel name: spec}`` for every compressible weight of ``cfg``, each checked
    against its shape (:meth:`SpecMap.resolve`); one spec gives every layer itself."""
    weights = compressible_weights(cfg, compress_softmax)
    if isinstance(spec, SpecMap):
        return spec.resolve(weights, cfg.name)
    for name, shape in weights.items():
        spec.check_shape(shape, name)
    return dict.fromkeys(weights, spec)


def layer_table(spec_map: Spec, cfg: ConformerConfig) -> list[dict[str, Any]]:
    """One row per compressible weight: its layer, shape, spec and stored bits (exact
    convention: values, scales, zero points, N:M index) and the paper's estimate (%)."""
    shapes = {w.name: w for w in weight_shapes(cfg)}
    rows = []
    for name, spec in resolve(spec_map, cfg).items():
        w = shapes[name]
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
