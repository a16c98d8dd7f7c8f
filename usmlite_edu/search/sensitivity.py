"""Which layer gets which bits: per-layer sensitivity and allocation under a size budget.

USM-Lite compresses every dense weight with one spec. This module measures how much each
compressible weight (or group of weights) *cares* about each candidate spec, and chooses
one spec per group that keeps the summed sensitivity smallest within a model-size budget.
Everything here is post-training: the model's weights are compressed in the parameter
tree (``dequant(Q(W * M))``, :func:`usmlite_edu.core.compress.compress_weight`, one-shot N:M
masks from the weights themselves) and the float model runs on them. Training with a
per-layer spec map (QAT) is not done here.

**Two sensitivities.**

* *Loss* (:func:`loss_sensitivity`): compress only one group with one spec, every other
  weight float, and measure the increase of the CTC loss on a fixed batch:
  ``S[g, k] = L(W with group g through spec k) - L(W)``. Exact for that batch, one forward
  pass per (group, spec). Can be negative (a compressed layer can lower one batch's loss).
* *Hessian trace* (HAWQ-V2, Dong et al., NeurIPS 2020): a second-order Taylor expansion
  of the loss around trained weights gives ``dL ~ 1/2 dW^T H dW``; replacing the layer's
  Hessian block by its average eigenvalue ``tr(H_l) / n_l`` gives
  ``Omega[l, k] = tr(H_l) / n_l * ||Q_k(W_l) - W_l||^2``. ``tr(H_l)`` comes from
  Hutchinson's estimator (:func:`hutchinson_traces`): for Rademacher ``v`` (entries +-1,
  ``E[v v^T] = I``), ``E[v^T H v] = tr(H)``. One Hessian-vector product
  ``H v = d/de grad L(W + e v)`` (``jax.jvp`` of ``jax.grad``: forward-over-reverse)
  with ``v`` drawn on *all* layers at once gives every layer's estimate
  ``v_l . (H v)_l``, whose expectation is ``tr(H_ll)`` (the cross terms have mean 0).
  A group's ``Omega`` is the sum over its members.

**Allocation** (:func:`allocate_exact`, :func:`allocate_greedy`): a multiple-choice
knapsack. Each group ``g`` takes one spec ``k`` of cost ``S[g, k]`` and size
``size[g, k]`` (bits, in the paper's or the exact convention, :mod:`usmlite_edu.core.sizes`);
minimise ``sum_g S[g, k_g]`` subject to ``sum_g size[g, k_g] <= budget``. The exact solver
is dynamic programming over sizes discretised to a quantum, each item's size rounded *up*
(so its answer always fits the real budget; it is optimal for the rounded sizes, and
with integer sizes and quantum 1 optimal, full stop). The greedy one starts from each
group's cheapest option and repeatedly takes the downgrade with the smallest cost
increase per bit saved until the budget holds, then spends what is left on upgrades.
:func:`allocate_brute_force` enumerates everything (small cases; the tests' reference).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from usmlite_edu.core import compress, sizes
from usmlite_edu.core.sizes import ParamInfo
from usmlite_edu.core.specs import CompressionSpec, as_spec
from usmlite_edu.speech import batching
from usmlite_edu.speech.configs import ConformerConfig
from usmlite_edu.speech.model import param_table

__all__ = [
    "DEFAULT_SPECS",
    "GROUPINGS",
    "compressible_names",
    "get_weights",
    "with_weights",
    "layer_label",
    "group_layers",
    "check_specs",
    "compress_layers",
    "fixed_batch",
    "loss_sensitivity",
    "hutchinson_traces",
    "hessian_sensitivity",
    "first_order_sensitivity",
    "spec_sizes",
    "budget_bits",
    "size_of",
    "Allocation",
    "allocate_exact",
    "allocate_greedy",
    "allocate_brute_force",
    "spearman",
]

#: The candidates for the ``cpu`` preset (inputs 144, 288 and 576 wide): every one is valid
#: for every compressible weight there. ``int2/gs24`` and ``int2/gs72`` are E7's and E5's
#: group sizes in the reduced-scale plan (:mod:`usmlite_edu.training.reproduce`).
DEFAULT_SPECS = ("int8", "int4", "int2/gs24", "int2/gs72", "2:4", "1:4", "int4+2:4")
GROUPINGS = ("layer", "role", "block")
Convention = Literal["paper", "exact"]


# --------------------------------------------------------------------------- weights
def _name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def compressible_names(cfg: ConformerConfig) -> list[str]:
    """The weights USM-Lite compresses (role ``dense`` of
    :func:`usmlite_edu.speech.model.param_table`, the rule of
    :func:`usmlite_edu.speech.model.compressible_mask_tree` without ``compress_softmax``), in
    the model's order."""
    return [w.name for w in param_table(cfg) if w.role == "dense"]


def get_weights(params: Any, names: Sequence[str]) -> dict[str, jax.Array]:
    """``{name: leaf}`` for the "/"-joined parameter paths ``names``."""
    flat = {_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    missing = [n for n in names if n not in flat]
    if missing:
        raise ValueError(f"no parameter named {missing[0]!r} (first of {len(missing)} missing)")
    return {n: flat[n] for n in names}


def with_weights(params: Any, new: Mapping[str, jax.Array]) -> Any:
    """``params`` with the leaves named in ``new`` replaced (a new tree; nothing mutated)."""
    return jax.tree_util.tree_map_with_path(lambda p, v: new.get(_name(p), v), params)


def layer_label(name: str) -> tuple[str, str]:
    """``(block, role)`` of a weight: ``encoder/blocks/2/mhsa/query/kernel`` gives
    ``("b2", "mhsa.query")``, ``frontend/proj/kernel`` gives ``("frontend", "proj")``."""
    parts = name.split("/")
    if parts[-1] == "kernel":
        parts = parts[:-1]
    if len(parts) >= 3 and parts[0] == "encoder" and parts[1] == "blocks":
        return f"b{parts[2]}", ".".join(parts[3:])
    return parts[0], ".".join(parts[1:]) or parts[0]


def group_layers(names: Sequence[str], by: str = "layer") -> dict[str, list[str]]:
    """Groups of weights that share one spec, in first-seen order.

    ``by="layer"``: every weight alone, labelled ``b2.mhsa.query``; ``"role"``: one group
    per role over all blocks (``mhsa.query``: the query projections of every block);
    ``"block"``: one group per block (every weight of ``b2``).
    """
    if by not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {by!r}")
    out: dict[str, list[str]] = {}
    for n in names:
        block, role = layer_label(n)
        key = {"layer": f"{block}.{role}", "role": role, "block": block}[by]
        out.setdefault(key, []).append(n)
    return out


def check_specs(specs: Sequence[str | CompressionSpec], shapes: Mapping[str, tuple]) -> list[str]:
    """Canonical names of ``specs``, each checked against every weight shape; a spec that
    cannot compress some weight is a ``ValueError`` naming both."""
    out = []
    for s in specs:
        spec = as_spec(s)
        if spec.few_shot or spec.sr_ste:
            raise ValueError(
                f"spec '{spec}': mask schedules are training options; post-training "
                "sensitivity uses one-shot masks (drop /fs or /srste)"
            )
        for name, shape in shapes.items():
            spec.check_shape(tuple(shape), name)
        out.append(str(spec))
    if len(set(out)) != len(out):
        raise ValueError(f"candidate specs repeat: {out}")
    return out


_compress = jax.jit(compress.compress_weight, static_argnums=1)


def compress_layers(
    weights: Mapping[str, jax.Array], assignment: Mapping[str, str | CompressionSpec]
) -> dict[str, jax.Array]:
    """``{name: dequant(Q(W * M))}`` for every weight in ``assignment`` (PTQ with one-shot
    masks from the weight itself); ``float`` leaves the weight as it is."""
    out = {}
    for n, s in assignment.items():
        spec = as_spec(s)
        out[n] = weights[n] if spec.is_float else _compress(weights[n], spec)
    return out


def fixed_batch(ds: Any, indices: Sequence[int]) -> Any:
    """One :class:`usmlite_edu.speech.batching.Batch` of ``ds.examples[indices]``, padded to the
    longest of them (waveform and labels): the fixed batch the sensitivities use."""
    ex = [ds.examples[i] for i in indices]
    if not ex:
        raise ValueError("fixed_batch needs at least one example")
    n, lmax = max(e.audio.size for e in ex), max(len(e.tokens) for e in ex)
    wav = np.zeros((len(ex), n), np.float32)
    labels = np.zeros((len(ex), lmax), np.int32)
    for r, e in enumerate(ex):
        wav[r, : e.audio.size] = e.audio
        labels[r, : len(e.tokens)] = e.tokens
    return batching.Batch(
        wav,
        np.array([e.audio.size for e in ex], np.int32),
        labels,
        np.array([len(e.tokens) for e in ex], np.int32),
        np.ones(len(ex), np.float32),
    )


# --------------------------------------------------------------------------- (a) loss
def loss_sensitivity(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    groups: Mapping[str, Sequence[str]],
    specs: Sequence[str],
) -> tuple[float, np.ndarray]:
    """``(L(W), S)`` with ``S[g, k] = L(group g through spec k, the rest float) - L(W)``.

    ``loss_fn(params)`` is the loss on a fixed batch (jit it: it is called
    ``1 + len(groups) * len(specs)`` times with trees of one shape). Any scalar of the
    parameters works: a dev WER (e.g. ``Recognizer(forward, params, None, tok,
    tcfg).evaluate(ds)["wer"]``, :mod:`usmlite_edu.deploy.recognizer`) gives the WER
    sensitivity, one full evaluation per (group, spec).
    """
    names = [n for ms in groups.values() for n in ms]
    weights = get_weights(params, names)
    base = float(loss_fn(params))
    out = np.zeros((len(groups), len(specs)))
    for g, members in enumerate(groups.values()):
        for k, s in enumerate(specs):
            if as_spec(s).is_float:
                continue
            new = compress_layers(weights, {n: s for n in members})
            out[g, k] = float(loss_fn(with_weights(params, new))) - base
    return base, out


# --------------------------------------------------------------------------- (b) Hessian
def hutchinson_traces(
    f: Callable[[dict[str, jax.Array]], jax.Array],
    x: Mapping[str, jax.Array],
    num_samples: int,
    seed: int = 0,
) -> np.ndarray:
    """Per-sample Hutchinson estimates of each block's Hessian trace, ``(num_samples, L)``.

    ``f`` maps a dict of arrays (the weights, in ``x``'s key order) to a scalar loss.
    Sample ``s`` draws a Rademacher vector ``v`` over all of ``x`` with the key
    ``fold_in(PRNGKey(seed), s)`` (one sub-key per array, in key order), computes
    ``H v`` as ``jax.jvp(jax.grad(f), (x,), (v,))`` and returns, per array ``l``,
    ``sum(v_l * (H v)_l)``; the column mean estimates ``tr(H_ll)``. Same seed, same
    numbers.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    names = list(x)
    x = {n: jnp.asarray(x[n], jnp.float32) for n in names}
    grad = jax.grad(f)

    @jax.jit
    def one(x, base, s):
        keys = jax.random.split(jax.random.fold_in(base, s), len(names))
        v = {n: jax.random.rademacher(k, x[n].shape, jnp.float32) for n, k in zip(names, keys)}
        hv = jax.jvp(grad, (x,), (v,))[1]
        return jnp.stack([jnp.vdot(v[n], hv[n]) for n in names])

    base = jax.random.PRNGKey(seed)
    return np.stack([np.asarray(one(x, base, np.int32(s))) for s in range(num_samples)]).astype(
        np.float64
    )


def hessian_sensitivity(
    traces: Mapping[str, float],
    weights: Mapping[str, jax.Array],
    groups: Mapping[str, Sequence[str]],
    specs: Sequence[str],
    *,
    clip_negative: bool = True,
) -> np.ndarray:
    """``Omega[g, k] = sum_{l in g} tr(H_l) / n_l * ||Q_k(W_l) - W_l||^2`` (HAWQ-V2).

    ``clip_negative``: a negative trace estimate (sampling noise around a small trace,
    or a layer at a saddle of this batch's loss) is taken as 0, since the quadratic model
    behind ``Omega`` assumes a positive semi-definite Hessian block and would otherwise
    *reward* quantization error.
    """
    if clip_negative:
        traces = {n: max(float(t), 0.0) for n, t in traces.items()}
    out = np.zeros((len(groups), len(specs)))
    for g, members in enumerate(groups.values()):
        for k, s in enumerate(specs):
            q = compress_layers(weights, {n: s for n in members})
            out[g, k] = sum(
                traces[n] / weights[n].size * float(jnp.sum((q[n] - weights[n]) ** 2))
                for n in members
            )
    return out


def first_order_sensitivity(
    grads: Mapping[str, jax.Array],
    weights: Mapping[str, jax.Array],
    groups: Mapping[str, Sequence[str]],
    specs: Sequence[str],
) -> np.ndarray:
    """``G[g, k] = sum_{l in g} grad_l . (Q_k(W_l) - W_l)``: the first-order term of the
    Taylor expansion that HAWQ-V2 drops because it assumes a trained model sits at a
    minimum (gradient 0). Where it is not small, ``Omega`` misses most of the change."""
    out = np.zeros((len(groups), len(specs)))
    for g, members in enumerate(groups.values()):
        for k, s in enumerate(specs):
            q = compress_layers(weights, {n: s for n in members})
            out[g, k] = sum(float(jnp.vdot(grads[n], q[n] - weights[n])) for n in members)
    return out


# --------------------------------------------------------------------------- sizes
def _infos(cfg: ConformerConfig) -> dict[str, ParamInfo]:
    return {w.name: w for w in param_table(cfg)}


def _layer_bits(spec: str, w: ParamInfo, cfg: ConformerConfig, convention: Convention) -> float:
    """Bits of one compressible weight under ``spec``, reusing :mod:`usmlite_edu.core.sizes`."""
    if convention == "paper":  # the paper's fraction of float32, per kept weight
        frac = sizes.size_ratio(spec, [w], "paper", paper_in_dim=cfg.model_dim) / 100.0
        return 32.0 * w.size * frac
    if convention == "exact":
        return sizes.model_size(spec, [w]).total
    raise ValueError(f"convention must be 'paper' or 'exact', got {convention!r}")


def spec_sizes(
    cfg: ConformerConfig,
    groups: Mapping[str, Sequence[str]],
    specs: Sequence[str],
    convention: Convention = "paper",
) -> np.ndarray:
    """``size[g, k]``: bits of group ``g``'s weights under spec ``k``."""
    info = _infos(cfg)
    return np.array(
        [
            [sum(_layer_bits(s, info[n], cfg, convention) for n in members) for s in specs]
            for members in groups.values()
        ]
    )


def _denominator_and_fixed(
    cfg: ConformerConfig, names: Sequence[str], convention: Convention
) -> tuple[float, float]:
    """(bits that 100% stands for, bits outside the allocated weights)."""
    info = _infos(cfg)
    chosen = set(names)
    if convention == "paper":  # compressible weights only; float layers are ignored
        comp = [w for w in info.values() if w.role == "dense"]
        rest = sum(32.0 * w.size for w in comp if w.name not in chosen)
        return 32.0 * sum(w.size for w in comp), rest
    if convention == "exact":  # everything, in float32 outside the allocation
        rest = sum(32.0 * w.size for w in info.values() if w.name not in chosen)
        return 32.0 * sum(w.size for w in info.values()), rest
    raise ValueError(f"convention must be 'paper' or 'exact', got {convention!r}")


def budget_bits(
    cfg: ConformerConfig,
    groups: Mapping[str, Sequence[str]],
    percent: float,
    convention: Convention = "paper",
) -> float:
    """The bits ``groups``' weights may take for the model to be ``percent`` % of B0 in
    ``convention`` (every weight outside ``groups`` stays float32)."""
    if not (isinstance(percent, int | float) and math.isfinite(percent) and percent > 0):
        raise ValueError(f"budget must be a positive percentage of B0, got {percent!r}")
    denom, fixed = _denominator_and_fixed(cfg, [n for m in groups.values() for n in m], convention)
    return percent / 100.0 * denom - fixed


def size_of(
    cfg: ConformerConfig,
    assignment: Mapping[str, str | CompressionSpec],
    convention: Convention = "paper",
) -> float:
    """Model size (% of B0) when each weight in ``assignment`` takes its spec and every
    other weight stays float32. A uniform assignment of spec ``s`` to every compressible
    weight gives :func:`usmlite_edu.core.sizes.size_ratio` of ``s``."""
    info = _infos(cfg)
    denom, fixed = _denominator_and_fixed(cfg, list(assignment), convention)
    bits = sum(
        _layer_bits(str(as_spec(s)), info[n], cfg, convention) for n, s in assignment.items()
    )
    return 100.0 * (bits + fixed) / denom


# --------------------------------------------------------------------------- (c) knapsack
@dataclasses.dataclass(frozen=True)
class Allocation:
    """One option per group: ``choice[g]`` indexes the candidates; ``cost`` and ``size``
    are the sums of the chosen options' costs and (real, not rounded) sizes."""

    choice: tuple[int, ...]
    cost: float
    size: float
    method: str

    def specs(self, specs: Sequence[str]) -> list[str]:
        return [specs[k] for k in self.choice]


def _check_problem(costs, sizes_, budget) -> tuple[np.ndarray, np.ndarray]:
    costs = np.asarray(costs, np.float64)
    sizes_ = np.asarray(sizes_, np.float64)
    if costs.ndim != 2 or costs.shape != sizes_.shape or costs.size == 0:
        raise ValueError(
            f"costs and sizes must be (groups, options) arrays of one shape, got "
            f"{costs.shape} and {sizes_.shape}"
        )
    if not (np.isfinite(costs).all() and np.isfinite(sizes_).all()) or (sizes_ < 0).any():
        raise ValueError("costs must be finite and sizes finite and >= 0")
    smallest = sizes_.min(axis=1).sum()
    if budget < smallest - 1e-9 * max(1.0, smallest):
        raise ValueError(
            f"budget {budget:.6g} is below the smallest achievable size {smallest:.6g} "
            "(every group at its smallest option); raise the budget or add a smaller "
            "candidate spec"
        )
    return costs, sizes_


def _result(choice, costs, sizes_, method) -> Allocation:
    choice = tuple(int(k) for k in choice)
    g = np.arange(len(choice))
    return Allocation(choice, float(costs[g, choice].sum()), float(sizes_[g, choice].sum()), method)


def allocate_exact(
    costs: np.ndarray, sizes_: np.ndarray, budget: float, *, quantum: float | None = None
) -> Allocation:
    """Multiple-choice knapsack by dynamic programming over discretised sizes.

    Sizes are counted as the excess over each group's smallest option (so that the
    all-smallest allocation always fits), in units of ``quantum`` (default: the budget's
    excess over the smallest achievable size / 4000), each option's excess rounded up,
    the budget rounded down: the answer always fits ``budget``, and is optimal among
    allocations whose rounded sizes fit (with integer sizes and ``quantum=1``: optimal).
    Ties go to the lowest option index, then the smallest total.
    """
    costs, sizes_ = _check_problem(costs, sizes_, budget)
    floor = sizes_.min(axis=1, keepdims=True)
    excess, spare = sizes_ - floor, max(budget - float(floor.sum()), 0.0)
    if quantum is None:
        quantum = spare / 4000 if spare > 0 else 1.0
    if quantum <= 0:
        raise ValueError(f"quantum must be > 0, got {quantum}")
    # relative slack for float division (14 / 0.0035 = 3999.9999...)
    units = np.ceil(excess / quantum * (1 - 1e-9)).astype(np.int64)
    cap = int(math.floor(spare / quantum * (1 + 1e-9)))
    G, K = costs.shape
    dp = np.full(cap + 1, np.inf)  # dp[c]: least cost of the groups so far at total c
    dp[0] = 0.0
    pick = np.zeros((G, cap + 1), np.int16)
    for g in range(G):
        new = np.full(cap + 1, np.inf)
        for k in range(K):
            u = units[g, k]
            if u > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[u:] = dp[: cap + 1 - u] + costs[g, k]
            better = cand < new
            new[better] = cand[better]
            pick[g, better] = k
        dp = new
    c = int(np.argmin(dp))  # first minimum: the smallest total among the cheapest
    choice = []
    for g in range(G - 1, -1, -1):
        k = int(pick[g, c])
        choice.append(k)
        c -= int(units[g, k])
    return _result(choice[::-1], costs, sizes_, "exact")


def allocate_greedy(costs: np.ndarray, sizes_: np.ndarray, budget: float) -> Allocation:
    """Greedy allocation: start from each group's cheapest option (smallest size among
    equal costs); while over budget, switch one group to a smaller option, the switch
    with the least cost increase per bit saved; then, while some switch to a cheaper
    option still fits, take the one with the largest cost decrease. Not optimal in
    general (:func:`allocate_exact` is); fast and easy to follow."""
    costs, sizes_ = _check_problem(costs, sizes_, budget)
    G, _ = costs.shape
    choice = [int(np.lexsort((sizes_[g], costs[g]))[0]) for g in range(G)]
    total = sum(sizes_[g, choice[g]] for g in range(G))
    while total > budget:
        best = None
        for g in range(G):
            cur = choice[g]
            for k in np.flatnonzero(sizes_[g] < sizes_[g, cur]):
                rate = (costs[g, k] - costs[g, cur]) / (sizes_[g, cur] - sizes_[g, k])
                if best is None or rate < best[0]:
                    best = (rate, g, int(k))
        _, g, k = best  # one exists: the budget is >= the smallest achievable size
        total += sizes_[g, k] - sizes_[g, choice[g]]
        choice[g] = k
    while True:
        best = None
        for g in range(G):
            cur = choice[g]
            for k in range(costs.shape[1]):
                gain = costs[g, cur] - costs[g, k]
                if gain > 0 and total + sizes_[g, k] - sizes_[g, cur] <= budget:
                    if best is None or gain > best[0]:
                        best = (gain, g, k)
        if best is None:
            break
        _, g, k = best
        total += sizes_[g, k] - sizes_[g, choice[g]]
        choice[g] = k
    return _result(choice, costs, sizes_, "greedy")


def allocate_brute_force(costs: np.ndarray, sizes_: np.ndarray, budget: float) -> Allocation:
    """Every combination (``K ** G`` of them; refused above a million): the reference."""
    costs, sizes_ = _check_problem(costs, sizes_, budget)
    G, K = costs.shape
    if K**G > 1_000_000:
        raise ValueError(f"{K}**{G} combinations is too many for brute force")
    best = None
    for choice in itertools.product(range(K), repeat=G):
        s = sum(sizes_[g, k] for g, k in enumerate(choice))
        if s > budget:
            continue
        c = sum(costs[g, k] for g, k in enumerate(choice))
        if best is None or c < best[0] - 1e-12:
            best = (c, choice)
    return _result(best[1], costs, sizes_, "brute force")


# --------------------------------------------------------------------------- helpers
def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's of the average ranks)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two sequences of one length >= 2, got {a.size} and {b.size}")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")
