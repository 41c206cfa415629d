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


# At most this many parameters (self and cls not counted; *args and **kwargs count):
# more is a record waiting to be named (a dataclass, or a keyword-only record).
MAX_PARAMETERS = 8
# None may: a record waiting to be named is named here, with the issue that names it.
_BEING_NAMED: set[str] = set()


def _long_signatures(path: Path, shown: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        arguments = node.args
        names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
        if names and names[0] in ("self", "cls"):
            names = names[1:]
        count = len(names) + (arguments.vararg is not None) + (arguments.kwarg is not None)
        name = getattr(node, "name", "<lambda>")
        if count > MAX_PARAMETERS and f"{shown}:{name}" not in _BEING_NAMED:
            found.append(f"{shown}:{node.lineno} {name} takes {count}")
    return found


def test_no_function_takes_more_than_eight_parameters() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        long.extend(_long_signatures(path, str(path.relative_to(PACKAGE.parent))))
    assert long == []


def test_the_check_sees_a_long_signature(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "class C:\n"
        "    def ok(self, a, b, c, d, e, f, g, *, h): ...\n"
        "    def long(self, a, b, c, d, e, f, g, h, *, i=1): ...\n"
    )
    assert _long_signatures(source, "sample.py") == ["sample.py:3 long takes 9"]


def _isolation_tests(path: Path, kinds: set[str]) -> list[str]:
    """``x == "process"``, ``x in ("module", ...)``: code asking which isolation it is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Compare):
            continue
        for operand in (node.left, *node.comparators):
            literals = (
                operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            )
            if any(isinstance(c, ast.Constant) and c.value in kinds for c in literals):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
                break
    return found


def test_code_asks_an_isolation_what_it_can_do_not_which_it_is() -> None:
    from pytest_lambda_context.environments.registry import ISOLATIONS

    kinds = set(ISOLATIONS)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name != "registry.py":
            found.extend(_isolation_tests(path, kinds))
    assert found == []


def test_the_check_sees_a_string_test(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text("if a == 'process' or b not in ('module', None):\n    pass\n")
    assert _isolation_tests(source, {"module", "process"}) == [
        "sample.py:1 a == 'process'",
        "sample.py:1 b not in ('module', None)",
    ]
