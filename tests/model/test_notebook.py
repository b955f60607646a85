"""notebooks/*.ipynb: valid nbformat-4 JSON whose code imports model/ and calls real APIs
(tests/notebooks runs them)."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "retrain.ipynb"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def code_cells(path: Path = NOTEBOOK) -> list[str]:
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_small_valid_and_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert path.stat().st_size < 20_000
    for cell in nb["cells"]:
        assert {"cell_type", "source", "metadata"} <= set(cell)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == []


def test_code_compiles_and_every_model_call_exists() -> None:
    source = "\n".join(code_cells())
    tree = ast.parse(source)  # raises on a syntax error
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("model"):
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    assert {"run", "export", "quantize", "parse_args"} <= set(imported)
    for name, target in imported.items():  # every imported name exists where it is taken from
        module, attr = target.rsplit(".", 1)
        found = hasattr(importlib.import_module(module), attr)  # a function or class...
        assert found or importlib.util.find_spec(target), f"{name}: {target}"  # ...or a module
    calls = [(n.value.id, n.attr) for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
             and n.value.id in ("export", "quantize")]
    assert calls
    for module, attr in calls:
        assert hasattr(importlib.import_module(f"model.{module}"), attr), f"{module}.{attr}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_copies_no_model_code(path: Path) -> None:
    assert len(NOTEBOOKS) >= 2
    tree = ast.parse("\n".join(code_cells(path)))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
