"""N:M magnitude pruning: USM-Lite section 3.3, Eqs. (3)-(4), Fig. 1.

In every group of ``m`` consecutive weights at most ``n`` are non-zero: the ``n`` largest
magnitudes are kept (mask value ``True`` = kept). Groups run along the *input*
(contraction) dimension, ``axis=0`` of an ``(I, J)`` weight, because that is the layout
sparse tensor cores accelerate: each output is a dot product over a row of inputs, and
the hardware skips the zero operands inside every group of 4 of that dot product.

Eq. (3) keeps every ``|w| >= phi_k`` (the n-th largest magnitude), which keeps *more*
than ``n`` weights when magnitudes tie. :func:`nm_mask` keeps exactly ``n``: ties are
broken towards the lower index, so the mask is a deterministic function of ``w``.

Mask schedules (Algorithm 1, lines 3-7) live in the optimizer state, which counts the
optimizer steps; the masks are never a per-call counter in a layer. Wrap any optax
optimizer with :func:`nm_masked`:

* **one-shot** (``update_steps=1``): the mask is computed once, from the initial weights,
  and frozen;
* **few-shot** (``update_steps=T_p``): the mask is recomputed from the current weights
  before each of the first ``T_p`` steps, then frozen;
* **gradient masking**: the optimizer's update is multiplied by the mask, so a pruned
  weight never moves (the paper: "only the unpruned weights are updated"), and the
  effective weight ``w * mask`` stays exactly zero;
* **SR-STE** (Zhou et al. 2021; the paper's future work), optional: the dense gradient
  passes straight through the mask, every weight is updated, and the pruned ones get an
  extra decay ``lambda * (1 - mask) * w`` that pulls them towards zero.

The forward pass reads the current masks with :func:`masks_from_state` and applies
``w * mask`` (Eq. 4) before quantizing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "check_nm",
    "nm_mask",
    "apply_mask",
    "sparsity_of",
    "NMMaskState",
    "nm_masked",
    "masks_from_state",
]


def check_nm(n: int, m: int, size: int | None = None, name: str = "weight") -> None:
    """Raise ``ValueError`` for an N:M pattern that cannot be applied."""
    for label, v in (("n", n), ("m", m)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"N:M sparsity needs positive integers, got {label}={v!r}")
    if n > m:
        raise ValueError(
            f"N:M sparsity with n={n} > m={m} keeps more weights than a group "
            "has; use n <= m (e.g. 2:4)"
        )
    if size is not None and size % m:
        raise ValueError(
            f"{name}: group size m={m} does not divide the pruned dimension "
            f"({size}); pick m that divides {size} or another axis"
        )


def nm_mask(w: jax.Array, n: int, m: int, axis: int = 0) -> jax.Array:
    """Boolean N:M mask of ``w`` (Eq. 3): exactly ``n`` kept in each group of ``m``.

    Args:
      w: weight of any rank.
      n, m: keep ``n`` of every ``m`` consecutive entries along ``axis``.
      axis: the grouped dimension (default 0, the input dimension of an ``(I, J)`` weight).

    Returns:
      ``bool`` array of ``w.shape``; ``True`` = kept. Ties in magnitude are broken
      towards the lower index within the group.
    """
    w = jnp.asarray(w)
    axis = axis % w.ndim
    check_nm(n, m, w.shape[axis])
    moved = jnp.moveaxis(w, axis, -1)
    groups = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    # Stable sort of -|w|: equal magnitudes keep their index order, so the lower index
    # ranks first. rank[k] = position of element k in that order.
    order = jnp.argsort(-jnp.abs(groups), axis=-1, stable=True)
    rank = jnp.argsort(order, axis=-1, stable=True)
    keep = (rank < n).reshape(moved.shape)
    return jnp.moveaxis(keep, -1, axis)


def apply_mask(w: jax.Array, mask: jax.Array, straight_through: bool = False) -> jax.Array:
    """Eq. (4): ``Prune(W) = W * M`` (pruned entries are exactly zero).

    With ``straight_through`` (SR-STE, Zhou et al. 2021) the forward value is the same, but
    the gradient passes the mask unchanged, so pruned weights receive their dense gradient.
    Without it, pruned weights get a zero gradient (the paper's gradient masking).
    """
    pruned = jnp.where(mask, w, jnp.zeros_like(w))
    if straight_through:
        return w + jax.lax.stop_gradient(pruned - w)
    return pruned


def sparsity_of(w: jax.Array) -> float:
    """Fraction of exactly-zero entries."""
    return float(jnp.mean(jnp.asarray(w) == 0))


# --------------------------------------------------------------------------- schedules
class NMMaskState(NamedTuple):
    """Optimizer state of :func:`nm_masked`.

    Attributes:
      count: optimizer steps taken so far (int32 scalar).
      masks: pytree like the params: a bool mask for each pruned leaf, a scalar ``True``
        for every other leaf.
      inner_state: the wrapped optimizer's state.
    """

    count: jax.Array
    masks: Any
    inner_state: Any


@dataclasses.dataclass(frozen=True)
class Pattern:
    """One leaf's N:M pattern in a ``where`` tree of :func:`nm_masked` (a pytree leaf)."""

    n: int
    m: int

    def __post_init__(self):
        check_nm(self.n, self.m)


def _leaf_mask(w, prune, n: int | None, m: int | None, axis: int):
    if isinstance(prune, Pattern):
        return nm_mask(w, prune.n, prune.m, axis)
    return nm_mask(w, n, m, axis) if prune else jnp.ones((), bool)


def nm_masked(
    inner: optax.GradientTransformation,
    n: int | None,
    m: int | None,
    *,
    update_steps: int = 1,
    where: Callable[[Any], Any] | Any = None,
    axis: int = 0,
    sr_ste_decay: float | None = None,
) -> optax.GradientTransformation:
    """Wrap ``inner`` with N:M masks that live in the optimizer state.

    Args:
      inner: the optimizer (e.g. ``optax.adam(...)``).
      n, m: the N:M pattern (``None`` when ``where`` gives every pruned leaf its own).
      update_steps: ``T_p``, the number of steps whose forward pass uses a freshly
        computed mask. ``1`` is one-shot (mask from the initial weights, then frozen).
      where: which leaves to prune: a pytree of bools like the params, or a function
        ``params -> pytree of bools``. Default: every leaf with ``ndim >= 2``. A leaf may
        be a :class:`Pattern` instead of ``True``: that leaf's own N:M (per-layer specs).
      axis: grouped dimension of each pruned leaf (default 0 = input dimension).
      sr_ste_decay: if set, SR-STE: gradients are not masked and pruned weights receive
        the extra decay ``sr_ste_decay * w`` (pass the gradient w.r.t. the *pruned*
        weight, as an autodiff of ``loss(apply_mask(w, mask))`` gives only if the forward
        lets it through: with SR-STE use a straight-through mask in the forward pass,
        ``w + stop_gradient(apply_mask(w, mask) - w)``).

    The masks at step ``t`` (``t = 0, 1, ...``) are computed from the weights the forward
    pass of step ``t`` sees, for ``t < update_steps``; afterwards they never change.
    ``update`` must receive ``params``.
    """
    if not isinstance(update_steps, int) or update_steps < 1:
        raise ValueError(
            f"update_steps (T_p) must be an integer >= 1, got {update_steps!r}; 1 means one-shot"
        )
    if n is not None or m is not None:
        check_nm(n, m)
    elif where is None:
        raise ValueError("nm_masked: give n and m, or a where tree of Pattern leaves")

    def prune_tree(params):
        if where is None:
            return jax.tree.map(lambda w: jnp.ndim(w) >= 2, params)
        return where(params) if callable(where) else where

    def compute_masks(params):
        return jax.tree.map(lambda w, p: _leaf_mask(w, p, n, m, axis), params, prune_tree(params))

    def init_fn(params):
        return NMMaskState(jnp.zeros((), jnp.int32), compute_masks(params), inner.init(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("nm_masked needs params in update(grads, state, params)")
        if sr_ste_decay is None:
            grads = jax.tree.map(
                lambda g, k: jnp.where(k, g, 0.0).astype(g.dtype), updates, state.masks
            )
        else:
            grads = jax.tree.map(
                lambda g, k, w: g + sr_ste_decay * jnp.where(k, 0.0, w).astype(g.dtype),
                updates,
                state.masks,
                params,
            )
        new_updates, inner_state = inner.update(grads, state.inner_state, params)
        if sr_ste_decay is None:
            # Gradient masking: a pruned weight never moves (Adam's momentum would move it).
            new_updates = jax.tree.map(
                lambda u, k: jnp.where(k, u, 0.0).astype(u.dtype), new_updates, state.masks
            )
        count = state.count + 1
        # Refresh the masks for the *next* forward pass while count < T_p.
        new_params = optax.apply_updates(params, new_updates)
        masks = jax.lax.cond(
            count < update_steps, lambda: compute_masks(new_params), lambda: state.masks
        )
        return new_updates, NMMaskState(count, masks, inner_state)

    return optax.GradientTransformation(init_fn, update_fn)


def masks_from_state(opt_state: Any) -> Any:
    """Find the :class:`NMMaskState` inside an optimizer state and return its masks.

    Returns ``None`` if the optimizer has no N:M masks (a dense or quantize-only run).
    """
    found = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, NMMaskState))
        if isinstance(s, NMMaskState)
    ]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError("optimizer state holds more than one NMMaskState")
    return found[0].masks
