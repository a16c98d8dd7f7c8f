"""Per-layer compression: a :class:`SpecMap` gives each compressible weight its own spec.

USM-Lite applies one :class:`~usmlite_edu.core.compress.CompressionSpec` to every compressible
dense weight. A spec map keeps that as its ``default`` and adds ordered rules, each a
regular expression over the weight's layer name (its parameter path without ``/kernel``,
e.g. ``encoder/blocks/2/ffn1/dense1``) and the spec for the layers it matches; the first
matching rule wins (``re.fullmatch``). A map written by the search
(:mod:`usmlite_edu.search.supernet`) names every layer exactly.

A map is a file (``--spec-map FILE``)::

    {"default": "int4+2:4",
     "layers": {"encoder/blocks/\\\\d+/mhsa/.*": "int8",
                "encoder/blocks/0/ffn1/dense1": "int2/gs24"}}

and a string, ``map:`` followed by the same JSON on one line: the form a run's
``config.json`` stores and :func:`usmlite_edu.core.compress.as_spec` reads back, so a run
trained under a map evaluates, resumes and exports under it like any spec.

What a map can hold: any dense spec and N:M pattern per layer, provided every sparse
layer shares one mask schedule (``fs<T>`` and ``srste`` are properties of the optimizer,
which keeps all masks) and no layer uses ``lsq`` (its step sizes are created with the
layer; a map refuses it rather than half-supporting it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from usmlite_edu.core.compress import CompressionSpec, as_spec
from usmlite_edu.core.sizes import ModelLike, ParamInfo, table_of

__all__ = ["SpecMap", "MAP_PREFIX", "layer_name"]

#: The prefix of a map's string form (``str(spec_map)``).
MAP_PREFIX = "map:"


def layer_name(weight: str) -> str:
    """``encoder/blocks/2/ffn1/dense1/kernel`` -> ``encoder/blocks/2/ffn1/dense1``."""
    return weight[: -len("/kernel")] if weight.endswith("/kernel") else weight


def _compressible(table: Sequence[ParamInfo], compress_softmax: bool) -> list[str]:
    return [
        layer_name(w.name)
        for w in table
        if w.role == "dense" or (w.role == "softmax" and compress_softmax)
    ]


@dataclasses.dataclass(frozen=True)
class SpecMap:
    """A spec per compressible layer: ordered ``(pattern, spec)`` rules, then ``default``.

    Frozen and hashable (a trainer is cached per spec). The properties that the optimizer
    and the model read from a spec (``sparse``, ``quantized``, ``mask_update_steps``,
    ``sr_ste``, ``lsq``) are answered for the map as a whole.
    """

    rules: tuple[tuple[str, CompressionSpec], ...] = ()
    default: CompressionSpec = CompressionSpec()
    #: the file the map was read from (:meth:`load`), for error messages; not part of its
    #: identity (equality, hash, name)
    source: str | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        rules = []
        for pattern, spec in self.rules:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(
                    f"a spec map's layer pattern must be a non-empty string, got {pattern!r}"
                )
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(
                    f"spec map: layer pattern {pattern!r} is not a regular expression ({e})"
                ) from None
            try:
                rules.append((pattern, as_spec(spec)))
            except (ValueError, TypeError) as e:
                raise ValueError(f"spec map: layer {pattern!r}: {e}") from None
        object.__setattr__(self, "rules", tuple(rules))
        try:
            object.__setattr__(self, "default", as_spec(self.default))
        except (ValueError, TypeError) as e:
            raise ValueError(f"spec map: default: {e}") from None
        specs = self.specs
        if any(s.lsq for s in specs):
            raise ValueError(
                "spec map: lsq is not supported per layer (a layer's step sizes are created "
                "with it); train LSQ with one spec for the whole model, e.g. --spec int4/lsq"
            )
        schedules = {(s.mask_update_steps, s.sr_ste) for s in specs if s.sparse}
        if len(schedules) > 1:
            raise ValueError(
                "spec map: every N:M layer must share one mask schedule (fs<T>, srste: the "
                f"optimizer keeps all masks), got {sorted(schedules)}"
            )

    # ------------------------------------------------------------------ lookup
    @property
    def specs(self) -> tuple[CompressionSpec, ...]:
        """Every spec the map names (rules first, then the default), with repeats."""
        return tuple(s for _, s in self.rules) + (self.default,)

    def spec_for(self, name: str) -> CompressionSpec:
        """The spec of the layer or weight ``name`` (``/kernel`` optional)."""
        return _lookup(self.rules, self.default, layer_name(name))

    def resolve(
        self, model: ModelLike, compress_softmax: bool = False
    ) -> dict[str, CompressionSpec]:
        """``{weight name: spec}`` for every compressible weight of ``model`` (its
        parameter table, :func:`usmlite_edu.speech.model.param_table`, or a config or preset
        name, :func:`usmlite_edu.core.sizes.table_of`), each checked against its shape.
        Refuses (``ValueError``) a rule that matches no layer: a typo in a pattern must
        not silently leave layers at the default."""
        table = table_of(model)
        layers = _compressible(table, compress_softmax)
        model_name = getattr(model, "name", model if isinstance(model, str) else "given")
        label = f"spec map {self.source}" if self.source else "spec map"
        for pattern, _ in self.rules:
            if not any(re.fullmatch(pattern, n) for n in layers):
                raise ValueError(
                    f"{label}: pattern {pattern!r} matches no compressible layer of config "
                    f"{model_name!r} (layers look like {layers[0]!r}; `usmlite-edu sizes "
                    f"--model {model_name} --layers` lists them)"
                )
        shapes = {w.name: w.shape for w in table}
        out = {}
        for n in layers:
            spec = self.spec_for(n)
            try:
                spec.check_shape(shapes[n + "/kernel"], n + "/kernel")
            except ValueError as e:
                raise ValueError(f"{label}: {e}") from None
            out[n + "/kernel"] = spec
        return out

    # ------------------------------------------------------------------ spec-like
    @property
    def quantized(self) -> bool:
        return any(s.quantized for s in self.specs)

    @property
    def sparse(self) -> bool:
        return any(s.sparse for s in self.specs)

    @property
    def is_float(self) -> bool:
        return all(s.is_float for s in self.specs)

    @property
    def lsq(self) -> bool:
        return False  # refused in __post_init__

    @property
    def mask_update_steps(self) -> int:
        return next((s.mask_update_steps for s in self.specs if s.sparse), 1)

    @property
    def sr_ste(self) -> bool:
        return next((s.sr_ste for s in self.specs if s.sparse), False)

    @property
    def few_shot(self) -> bool:
        return self.sparse and self.mask_update_steps > 1

    def check_shape(self, shape: tuple[int, ...], name: str = "weight") -> None:
        self.spec_for(name).check_shape(shape, name)

    # ------------------------------------------------------------------ names and files
    def to_dict(self) -> dict[str, Any]:
        return {"default": str(self.default), "layers": {p: str(s) for p, s in self.rules}}

    def __str__(self) -> str:
        return MAP_PREFIX + json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], source: str = "spec map", path: str | None = None
    ) -> SpecMap:
        if not isinstance(d, Mapping) or set(d) - {"default", "layers"}:
            raise ValueError(
                f"{source}: expected an object with 'default' (a spec) and 'layers' "
                f"({{pattern: spec}}), got {d!r:.200}"
            )
        layers = d.get("layers", {})
        if not isinstance(layers, Mapping):
            raise ValueError(f"{source}: 'layers' must map layer patterns to specs")
        try:
            return cls(
                tuple(layers.items()),
                d.get("default", "float"),
                source=path,
            )
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def parse(cls, text: str) -> SpecMap:
        """Read ``str(spec_map)`` back."""
        if not text.startswith(MAP_PREFIX):
            raise ValueError(f"a spec map's name starts with {MAP_PREFIX!r}, got {text!r:.80}")
        try:
            d = json.loads(text[len(MAP_PREFIX) :])
        except json.JSONDecodeError as e:
            raise ValueError(
                f"spec map {text!r:.80} is not valid JSON after 'map:' ({e})"
            ) from None
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpecMap:
        """A map from a JSON file (see the module doc); errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"spec map {path} does not exist (a JSON file: see `usmlite-edu train --help`)"
            )
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(
                f"spec map {path} is not valid JSON ({e}); fix or re-create the file"
            ) from None
        return cls.from_dict(d, source=f"spec map {path}", path=str(path))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_assignment(
        cls,
        assignment: Mapping[str, str | CompressionSpec],
        default: str | CompressionSpec = "float",
    ) -> SpecMap:
        """A map naming each layer exactly (``re.escape``d), e.g. a search's choice."""
        return cls(
            tuple((re.escape(layer_name(n)), as_spec(s)) for n, s in assignment.items()), default
        )


@functools.lru_cache(maxsize=4096)
def _lookup(rules, default, name):
    for pattern, spec in rules:
        if re.fullmatch(pattern, name):
            return spec
    return default
