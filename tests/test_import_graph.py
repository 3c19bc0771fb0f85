"""The package's import graph: no cycles, layers import only downwards, the leaderboard never reaches training.

Read from the source with ``ast`` (nothing is imported), so a violation is found even in a module no other test
loads. Module-level imports define the layering; for the leaderboard every import counts, including the lazy
ones inside functions, because it must never run submitted code or the training stack (issue 9).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark" / "bmbench"

LAYERS: dict[str, int] = {
    # leaves: no bmbench imports beyond other leaves
    "errors": 0, "atomic": 1, "classes": 1, "paths": 1, "parallel": 1, "protocols": 1, "recipe_defaults": 1,
    "metric_registry": 1, "locks": 1, "safe_io": 1, "extras": 1, "usercode": 1, "arrow_columns": 1, "datasets": 2,
    "recipe": 2,
    "bmbench": 0, "resources": 0,  # bmbench/__init__.py (the version); package data
    # file formats, then data and the scorer
    "records": 3, "data": 3, "splits": 3, "scoring": 4,
    "submissions": 5,
    "models": 6, "datapaths": 6, "engine": 7, "features": 7,
    "runs": 8,
    "bench": 9, "explain": 9, "pretraining": 9, "leaderboard": 9,
    "cli": 10, "__main__": 11,
}
"""Rank of each top-level module or sub-package: a module may import only ranks at or below its own."""

LEADERBOARD_MAY_IMPORT = {"errors", "atomic", "classes", "paths", "protocols", "metric_registry", "safe_io",
                          "arrow_columns", "datasets", "records", "scoring", "splits", "leaderboard", "bmbench"}
"""Everything the leaderboard reaches, lazily or not: records and the scorer, never code that builds models."""
LEADERBOARD_MAY_ALSO_IMPORT = {"bmbench.submissions.schema"}
"""``leaderboard check`` validates every submission.toml as data (pydantic); model.py is never imported."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(node: ast.AST, name: str, is_package: bool) -> Iterator[str]:
    """The bmbench modules one import statement names (``from a import b`` counts ``a.b`` when a module)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.split(".")[0] == "bmbench")
    elif isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            module = ".".join(base + ([module] if module else []))
        if module.split(".")[0] != "bmbench":
            return
        yield module
        yield from (f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES)


def imports(name: str, *, lazy: bool) -> set[str]:
    """The bmbench modules ``name`` imports at module level (``lazy``: anywhere, except TYPE_CHECKING blocks)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
    if lazy:
        nodes = [n for n in ast.walk(tree) if id(n) not in skipped]
    else:
        nodes = [n for top in tree.body if not _is_type_checking(top)
                 for n in ([top] if not isinstance(top, (ast.If, ast.Try)) else ast.walk(top))]
    found = {m for n in nodes for m in _imported(n, name, path.name == "__init__.py")}
    return {m for m in found if m in MODULES and m != name}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bmbench"


def test_every_top_level_module_has_a_layer() -> None:
    missing = sorted({_top(m) for m in MODULES} - set(LAYERS))
    assert not missing, f"give these a rank in LAYERS (and a line in docs/architecture.md): {missing}"


def test_no_import_cycles() -> None:
    graph = {m: imports(m, lazy=False) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles (module level): {cycles}"


def test_layers_import_only_downwards() -> None:
    upward = [f"{m} -> {d}" for m in MODULES for d in imports(m, lazy=False)
              if LAYERS[_top(d)] > LAYERS[_top(m)]]
    assert not upward, "module-level imports that go up a layer (make the import lazy or move the code down):\n" \
        + "\n".join(sorted(upward))


def test_the_leaderboard_never_reaches_submitted_code_or_training() -> None:
    bad = [f"{m} -> {d}" for m in MODULES if _top(m) == "leaderboard"
           for d in imports(m, lazy=True)
           if _top(d) not in LEADERBOARD_MAY_IMPORT and d not in LEADERBOARD_MAY_ALSO_IMPORT]
    assert not bad, "the leaderboard reads records; it must not import:\n" + "\n".join(sorted(bad))


@pytest.mark.parametrize("source, expected", [
    ("from bmbench.features import probe\n", {"bmbench.features", "bmbench.features.probe"}),
    ("def f():\n    import bmbench.runs.run\n", set()),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bmbench.engine import loop\n", set()),
    ("try:\n    from bmbench.features import embed\nexcept ImportError:\n    pass\n", {"bmbench.features", "bmbench.features.embed"}),
])
def test_the_reader_sees_what_python_would_import(tmp_path: Path, source: str, expected: set[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: module-level imports count, lazy ones and TYPE_CHECKING blocks do not."""
    path = tmp_path / "probe_module.py"
    path.write_text(source)
    monkeypatch.setitem(MODULES, "bmbench.probe_module", path)
    assert imports("bmbench.probe_module", lazy=False) == expected
    lazy = imports("bmbench.probe_module", lazy=True)
    assert lazy >= expected and ("import bmbench.runs.run" not in source or "bmbench.runs.run" in lazy)
