"""Cell helpers shared by the notebook generators (``scripts/build_notebook*.py``)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text: str):
    return new_markdown_cell(dedent(text).strip("\n"))


def code(text: str):
    return new_code_cell(dedent(text).strip("\n"))


def solution(text: str):
    """A code cell whose source JupyterLab shows collapsed: the exercise's answer."""
    cell = code(text)
    cell.metadata["tags"] = ["solution"]
    cell.metadata["jupyter"] = {"source_hidden": True}
    return cell


def write_notebook(path: Path, cells: list) -> Path:
    """Validate and write; stable cell ids make a rebuild byte-identical (no outputs)."""
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                       "language": "python"},
        "language_info": {"name": "python"},
    })
    nbformat.validate(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path
