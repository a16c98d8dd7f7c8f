"""Compression specs: what is done to each dense weight, named once and parsed once.

Two kinds, one type :data:`Spec`:

* :class:`CompressionSpec`: one spec for every compressible dense weight, as in USM-Lite
  (sections 3.2-3.4; the rows E0-E13 of Tables 1-3);
* :class:`SpecMap`: a spec per layer, ordered ``(pattern, spec)`` rules over layer names
  (a weight's path without ``/kernel``, e.g. ``encoder/blocks/2/ffn1/dense1``; the first
  ``re.fullmatch`` wins) and a ``default``.

Names become specs in one function, :func:`as_spec`, called where a name enters the
program (the CLI, ``train()`` / ``reproduce()``, a notebook); everything below takes a
:data:`Spec`.

Joint prune-then-quantize of one weight: USM-Lite section 3.4, Algorithm 1.

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

Per-layer maps. A map is a file (``--spec-map FILE``)::

    {"default": "int4+2:4",
     "layers": {"encoder/blocks/\\\\d+/mhsa/.*": "int8",
                "encoder/blocks/0/ffn1/dense1": "int2/gs24"}}

and a string, ``map:`` followed by the same JSON on one line: the form a run's
``config.json`` stores and :func:`as_spec` reads back, so a run
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from usmlite_edu.core import quant, sparsity

__all__ = [
    "CompressionSpec",
    "SpecMap",
    "Spec",
    "as_spec",
    "one_spec",
    "MAP_PREFIX",
    "layer_name",
]

#: The prefix of a map's string form (``str(spec_map)``).
MAP_PREFIX = "map:"

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


def layer_name(weight: str) -> str:
    """``encoder/blocks/2/ffn1/dense1/kernel`` -> ``encoder/blocks/2/ffn1/dense1``."""
    return weight[: -len("/kernel")] if weight.endswith("/kernel") else weight


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
        self, weights: Mapping[str, tuple[int, ...]], model: str = "?"
    ) -> dict[str, CompressionSpec]:
        """``{weight name: spec}`` for every compressible weight of a model, given as
        ``{name: shape}`` in model order (:func:`usmlite_edu.speech.model.resolve_specs` passes
        a configuration's), each spec checked against its shape. Refuses (``ValueError``) a
        rule that matches no layer: a typo in a pattern must not silently leave layers at
        the default. ``model`` is the configuration's name, for that message."""
        layers = [layer_name(n) for n in weights]
        label = f"spec map {self.source}" if self.source else "spec map"
        for pattern, _ in self.rules:
            if not any(re.fullmatch(pattern, n) for n in layers):
                raise ValueError(
                    f"{label}: pattern {pattern!r} matches no compressible layer of config "
                    f"{model!r} (layers look like {layers[0] if layers else ''!r}; "
                    f"`usmlite-edu sizes --model {model} --layers` lists them)"
                )
        out = {}
        for name, shape in weights.items():
            spec = self.spec_for(name)
            try:
                spec.check_shape(tuple(shape), name)
            except ValueError as e:
                raise ValueError(f"{label}: {e}") from None
            out[name] = spec
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


#: A spec for the whole model or a per-layer map: what every function below the edges takes.
Spec = CompressionSpec | SpecMap


def as_spec(spec: Spec | str | None, default: CompressionSpec | None = None) -> Spec:
    """Anything that names a compression, as a :data:`Spec`: the one place where names
    become specs.

    Accepts a spec or a map (returned as they are), a spec's name (``"int4+2:4"``), a
    map's name (``"map:{...}"``, what a run's ``config.json`` stores), or ``None``, which
    gives ``default`` (or ``float`` without one). Call it where a name enters the program
    (the CLI, ``train()`` / ``reproduce()``, a notebook); code below those edges takes a
    :data:`Spec` and never parses again.
    """
    if spec is None:
        return default if default is not None else CompressionSpec()
    if isinstance(spec, (CompressionSpec, SpecMap)):
        return spec
    if isinstance(spec, str) and spec.startswith(MAP_PREFIX):
        return SpecMap.parse(spec)
    if isinstance(spec, str):
        return CompressionSpec.parse(spec)
    raise TypeError(
        f"expected a CompressionSpec, a SpecMap or a spec name such as 'int4+2:4', "
        f"got {type(spec).__name__} {spec!r}"
    )


def one_spec(spec: Spec, what: str = "this") -> CompressionSpec:
    """``spec`` when it is one spec for the whole model; a ``TypeError`` naming ``what``
    when it is a per-layer map (for code that has no per-layer path)."""
    if isinstance(spec, SpecMap):
        raise TypeError(f"{what} takes one spec for the whole model, not a per-layer map")
    return spec


@functools.lru_cache(maxsize=4096)
def _lookup(rules, default, name):
    for pattern, spec in rules:
        if re.fullmatch(pattern, name):
            return spec
    return default
