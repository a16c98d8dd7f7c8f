"""Old module names (before the package was split into wings) keep importing.

``import usmlite_edu.quant`` and ``from usmlite_edu import quant`` still work: they give
the module's new home (:mod:`usmlite_edu.core.quant`, the same module object, so
``monkeypatch`` and ``isinstance`` behave as before) with a ``DeprecationWarning`` naming
it. New code imports from the wings.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module name (under ``usmlite_edu.``) -> its new home
MOVED: dict[str, str] = {
    **{m: f"core.{m}" for m in ("quant", "sparsity", "compress", "sizes", "weight_stats", "stats")},
    "layer_specs": "core.specs",
    **{m: f"scale.{m}" for m in ("mesh", "distributed")},
    **{
        m: f"speech.{m}"
        for m in (
            "configs",
            "presets",
            "paths",
            "audio",
            "corpora",
            "fetch",
            "frontend",
            "tokenizer",
            "batching",
            "augment",
            "decoding",
            "model",
            "runs",
        )
    },
    **{m: f"deploy.{m}" for m in ("transcribe", "infer", "export")},
    **{m: f"training.{m}" for m in ("train", "claims", "reproduce", "plan")},
    **{m: f"search.{m}" for m in ("sensitivity", "supernet")},
    **{
        m: f"course.{m}"
        for m in (
            "notebook_setup",
            "notebook_runner",
            "exercises",
            "editions",
            "book",
            "explorer",
            "main_job",
            "mesh_tour",
        )
    },
}


def new_home(old: str) -> str:
    return f"usmlite_edu.{MOVED[old]}"


def load(old: str):
    """The module that ``usmlite_edu.<old>`` names now, with a ``DeprecationWarning``."""
    warnings.warn(
        f"usmlite_edu.{old} moved to {new_home(old)}; import it from there",
        DeprecationWarning,
        stacklevel=3,
    )
    return importlib.import_module(new_home(old))


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``import usmlite_edu.<old>`` to the moved module (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, old = fullname.partition(".")
        if prefix == "usmlite_edu" and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = load(spec.name.partition(".")[2])
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module):
        # the import system stamped the alias's spec on the real module: put its own back
        module.__spec__ = self._real_spec


def install() -> None:
    if not any(isinstance(f, _OldNames) for f in sys.meta_path):
        sys.meta_path.append(_OldNames())
