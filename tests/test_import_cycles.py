"""The package's modules import each other without cycles (deferred imports inside functions
count too: they hide a cycle from Python's import machinery, not from the reader)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "motionmae"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The package modules ``path`` (a file under ``root``) imports: ``from a.b import c`` is
    ``a.b.c`` when that is a module, else ``a.b``; relative imports resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imports_of(path, set(files), root) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_a_cycle_is_found(tmp_path):
    """The check itself: a package whose two modules import each other (one of them only
    inside a function) is reported."""
    package = tmp_path / "motionmae"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from motionmae.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from motionmae import a\n    return a\n")
    (package / "c.py").write_text("from . import a\n")
    graph = import_graph(package)
    assert graph["motionmae.c"] == {"motionmae.a"}
    assert cycles(graph) == [["motionmae.a", "motionmae.b"]]


@pytest.mark.parametrize("source, expected", [
    ("from motionmae.data import lists\n", {"motionmae.data.lists"}),
    ("from motionmae.data.lists import VideoEntry\n", {"motionmae.data.lists"}),
    ("import motionmae.data\n", {"motionmae.data"}),
])
def test_import_forms(tmp_path, source, expected):
    path = tmp_path / "motionmae" / "x.py"
    path.parent.mkdir()
    path.write_text(source)
    modules = {"motionmae", "motionmae.data", "motionmae.data.lists", "motionmae.x"}
    assert imports_of(path, modules, path.parent) == expected


# The package's floors, bottom first: a module imports only from its own floor or below
# (docs/architecture.md, "Layers"). Longest prefix decides a module's floor.
LAYERS: list[list[str]] = [
    ["motionmae.version", "motionmae.errors", "motionmae.fileio", "motionmae.environment",
     "motionmae.config_loading", "motionmae.registry", "motionmae.plugins",
     "motionmae.schedule", "motionmae.tokens", "motionmae.training_config"],
    ["motionmae.data", "motionmae.models", "motionmae.cache"],
    ["motionmae.motion", "motionmae.masking", "motionmae.checkpoints"],
    ["motionmae.targets"],
    ["motionmae.config"],
    ["motionmae.eval", "motionmae.interop"],
    ["motionmae.api"],
    ["motionmae.train"],
    ["motionmae.viz", "motionmae.demo"],
    ["motionmae.cli", "motionmae.cli_doc", "motionmae.__main__", "motionmae"],
]


def floor_of(module: str, layers: list[list[str]] = LAYERS) -> int:
    best, floor = "", None
    for index, prefixes in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, floor = prefix, index
    assert floor is not None, f"{module} is on no floor of LAYERS: add it"
    return floor


def upward_imports(graph: dict[str, set[str]],
                   layers: list[list[str]] = LAYERS) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs where the imported module sits on a higher floor."""
    return sorted((source, target) for source, targets in graph.items() for target in targets
                  if floor_of(target, layers) > floor_of(source, layers))


def test_no_module_imports_upward():
    assert upward_imports(import_graph()) == []


def test_an_upward_import_is_found(tmp_path):
    package = tmp_path / "motionmae"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "video.py").write_text("from motionmae.train import loop\n")
    (package / "train").mkdir()
    (package / "train" / "__init__.py").write_text("")
    (package / "train" / "loop.py").write_text("from motionmae.data import video\n")
    graph = import_graph(package)
    assert upward_imports(graph) == [("motionmae.data.video", "motionmae.train.loop")]
