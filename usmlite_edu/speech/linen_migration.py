"""Migration of the Linen-era checkpoints to the NNX model's parameter tree.

The Conformer-CTC was first written in Flax Linen (``tests/linen_reference.py`` keeps
that model, frozen, for the golden tests); its checkpoints (e.g. the B0 of
``tests/golden/b0_linen``) name the blocks ``encoder/block_{i}``. The NNX model
(:mod:`usmlite_edu.speech.model`) names them ``encoder/blocks/{i}`` (int keys of an
``nnx.List``); every other name is the same, so migration is a renaming, which changes
no number. :func:`params_from_checkpoint` (what :mod:`usmlite_edu.speech.runs` reads
checkpoints with) calls :func:`params_from_linen` on any tree that still has ``block_``
names.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

from usmlite_edu.speech import model
from usmlite_edu.speech.configs import ConformerConfig

__all__ = ["params_from_linen", "params_from_checkpoint"]


def _name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _name_templates() -> set[str]:
    """Every parameter name, with the block index written ``*`` (names do not depend on
    sizes, so a one-layer config gives them all)."""
    names = {w.name for w in model.param_table(ConformerConfig(num_layers=1))}
    return {re.sub(r"^encoder/blocks/0/", "encoder/blocks/*/", n) for n in names}


def params_from_linen(tree: Any, cfg: ConformerConfig | None = None) -> dict:
    """Convert a Linen checkpoint's parameter tree to this model's ``params`` dict.

    The Linen model named the blocks ``encoder/block_{i}``; here they are the int keys of
    ``encoder/blocks``. Every other name is the same. A ``{"params": ...}`` wrapper (what
    Linen's ``init`` returns) is removed. Raises ``ValueError`` naming the first path that
    is not a parameter of the Conformer-CTC, and, with ``cfg``, if any name or shape differs
    from :func:`usmlite_edu.speech.model.param_table` (a missing weight included).
    """
    if isinstance(tree, dict) and set(tree) == {"params"}:
        tree = tree["params"]
    templates = _name_templates()
    out: dict = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys: list = [str(getattr(k, "key", k)) for k in path]
        linen_name = "/".join(keys)
        if len(keys) > 1 and keys[0] == "encoder":
            m = re.fullmatch(r"block_(\d+)", keys[1])
            if m is None:
                raise ValueError(
                    f"params_from_linen: unexpected path {linen_name!r} "
                    "(encoder children are block_<i>)"
                )
            keys = ["encoder", "blocks", int(m.group(1)), *keys[2:]]
        name = "/".join(str(k) for k in keys)
        if re.sub(r"^encoder/blocks/\d+/", "encoder/blocks/*/", name) not in templates:
            raise ValueError(
                f"params_from_linen: unexpected path {linen_name!r} "
                "(not a parameter of the Conformer-CTC)"
            )
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = leaf
    if cfg is not None:
        want = {w.name: w.shape for w in model.param_table(cfg)}
        got = {
            _name(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_flatten_with_path(out)[0]
        }
        if got != want:
            diff = sorted(set(got) ^ set(want)) or sorted(k for k in want if got[k] != want[k])
            raise ValueError(
                f"params_from_linen: the tree does not match config "
                f"{cfg.name!r}; first differences: {diff[:3]}"
            )
    return out


def params_from_checkpoint(tree: Any, cfg: ConformerConfig | None = None) -> dict:
    """A parameter (or mask) tree as Orbax restored it without a target, in this model's
    layout: Linen-era trees (``encoder/block_0/...``, e.g. ``results/cpu/b0``) go through
    :func:`params_from_linen`; NNX trees get their block
    indices back as ints."""
    tree = model.normalize_param_keys(tree)
    encoder = tree.get("encoder", {}) if isinstance(tree, dict) else {}
    if any(isinstance(k, str) and k.startswith("block_") for k in encoder):
        return params_from_linen(tree, cfg)
    return tree
