"""The package's layers: nothing imports a layer above its own, and no module imports
itself back through others. Read from the source (ast), so a lazy import inside a
function counts as much as one at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_lambda_context"
# Lowest first: a module may import from its own layer and the ones before it.
LAYERS = ["runtime", "observe", "environments", "services", "plugin"]


def _module_name(path: Path) -> str:
    parts = ["pytest_lambda_context", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, module: str) -> list[tuple[str, bool]]:
    """(imported module, only under TYPE_CHECKING) for every import of the package."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, bool]] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = typing_only or _is_type_checking_block(child)
            if isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join([*anchor, base]) if base else ".".join(anchor)
                for alias in child.names:
                    candidate = f"{base}.{alias.name}"
                    is_module = (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists()
                    found.append((candidate if is_module else base, inside))
            elif isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names)
            visit(child, inside)

    visit(tree, False)
    return [(name, t) for name, t in found if name.startswith("pytest_lambda_context")]


def _graph() -> dict[str, list[tuple[str, bool]]]:
    return {_module_name(p): _imports(p, _module_name(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer() -> None:
    loose = [m for m in _graph() if _layer(m) is None and m != "pytest_lambda_context"]
    assert loose == []


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for module, imports in _graph().items():
        own = _layer(module)
        if own is None:  # the package's face: it re-exports from every layer
            continue
        for imported, _ in imports:
            theirs = _layer(imported)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(own):
                upward.append(f"{module} -> {imported}")
    assert upward == []


def test_no_import_cycles() -> None:
    graph = {
        module: {name for name, typing_only in imports if not typing_only and name != module}
        for module, imports in _graph().items()
    }
    # A package's __init__ imported for a submodule is not an edge back to it.
    for module, targets in graph.items():
        targets.discard(module.rpartition(".")[0])
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target in graph and target not in state:
                walk(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_the_checks_see_an_upward_import(tmp_path: Path) -> None:
    # The walker itself: a lazy import inside a function is found.
    source = tmp_path / "sample.py"
    source.write_text("def f():\n    from pytest_lambda_context.plugin import session\n")
    assert _imports(source, "pytest_lambda_context.runtime.sample") == [
        ("pytest_lambda_context.plugin.session", False)
    ]
