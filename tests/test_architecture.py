"""The package's shape (docs/architecture.md): wings import only wings below them, the
import graph (function-level imports included) has no cycle, and an import of the package
inside a function says why on its line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "usmlite_edu"

#: bottom first; a wing may import itself and the wings before it
WINGS = ("core", "scale", "speech", "deploy", "training", "search", "course", "cli")
#: the package root's own modules (version, old-name aliases): outside the wings
ROOT_MODULES = {"usmlite_edu", "usmlite_edu._compat", "usmlite_edu.__main__"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, int, bool, str]]:
    """The package modules ``name`` imports: (target, line, inside a function, source)."""
    text = path.read_text()
    lines = text.splitlines()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            targets: list[str] = []
            if isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if full in mods else base)
            elif isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            for t in targets:
                if t.split(".")[0] == "usmlite_edu" and t != name:
                    edges.append((t, child.lineno, in_function, lines[child.lineno - 1]))
            visit(child, inner)

    visit(ast.parse(text), False)
    return edges


def import_graph() -> dict[str, list[tuple[str, int, bool, str]]]:
    """module -> [(imported package module, line, inside a function, source line)]."""
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else None


def test_every_module_is_in_a_wing():
    stray = [m for m in _modules() if m not in ROOT_MODULES and wing(m) is None]
    assert not stray, f"modules outside the wings {WINGS}: {stray}"


def test_no_wing_imports_a_wing_above_it():
    bad = []
    for module, edges in import_graph().items():
        here = wing(module)
        if here is None:
            continue
        for target, line, _, _ in edges:
            there = wing(target)
            if there is not None and WINGS.index(there) > WINGS.index(here):
                bad.append(f"{module}:{line} ({here}) imports {target} ({there})")
            if there is None and target not in {"usmlite_edu"}:
                bad.append(f"{module}:{line} imports {target}, outside the wings")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_import_graph_has_no_cycle():
    graph = {m: sorted({t for t, *_ in e}) for m, e in import_graph().items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                dfs(nxt, stack)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state and m not in ROOT_MODULES:
            dfs(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_inside_functions_say_why():
    """An own-package import inside a function hides a dependency from readers and tools;
    allowed only with a comment on its line saying why (an optional heavy dependency, a
    child process's entry point)."""
    bad = [
        f"{module}:{line}: {src.strip()}"
        for module, edges in import_graph().items()
        if module not in ROOT_MODULES
        for target, line, inside, src in edges
        if inside and "#" not in src
    ]
    assert not bad, "own-package imports inside functions without a reason:\n" + "\n".join(bad)


def test_the_graph_reader_sees_function_level_imports(tmp_path):
    """The checks above could pass by reading nothing: check the reader on a known case."""
    graph = import_graph()
    assert graph["usmlite_edu.core.compress"], "compress imports quant and sparsity"
    assert any(t == "usmlite_edu.core.quant" for t, *_ in graph["usmlite_edu.core.compress"])


@pytest.mark.parametrize("old", ["quant", "train", "model", "explorer"])
def test_old_module_names_still_import_with_a_deprecation(old):
    import importlib

    from usmlite_edu import _compat

    with pytest.warns(DeprecationWarning, match=_compat.MOVED[old]):
        mod = importlib.import_module(f"usmlite_edu.{old}")
    assert mod is importlib.import_module(_compat.new_home(old))
    assert mod.__spec__.name == _compat.new_home(old)


def test_inference_and_the_plan_do_not_reach_the_training_loop():
    """transcribe, export, infer and the memory plan never import the training loop
    (usmlite_edu.training.train: data, checkpoints, Trainer), directly or through another
    module; the plan compiles the step alone (usmlite_edu.training.step)."""
    graph = {m: {t for t, *_ in e} for m, e in import_graph().items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for m in ("deploy.transcribe", "deploy.export", "deploy.infer", "training.plan"):
        assert "usmlite_edu.training.train" not in reach(f"usmlite_edu.{m}"), m
    assert "usmlite_edu.training.step" in reach("usmlite_edu.training.plan")
