"""The package's layering, read from its source (docs/architecture.md says why).

Every import of a labfixtures module counts, at module level or inside a function; only
imports under `if TYPE_CHECKING:` are left out (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).parents[2] / "labfixtures"

#: a layer may import its own package and the layers with a lower rank
RANK = {
    "errors": 0,
    "core": 1,
    "net": 2, "qemu": 2,
    "guestimages": 3, "guests": 3,
    "lab": 4,
    "checkpoint": 5,
    "grading": 6, "regress": 6, "report": 6,
    "cli": 7, "pytest_plugin": 7,
    "__init__": 8,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported labfixtures module, line, inside a function) for each import in PATH."""
    tree = ast.parse(path.read_text())
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            local = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names
                             if a.name.split(".")[0] == "labfixtures")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                if mod.split(".")[0] != "labfixtures":
                    continue
                for a in child.names:  # `from pkg import module` imports the module
                    sub = f"{mod}.{a.name}"
                    target = sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists() \
                        or (PKG.parent / sub.replace(".", "/")).is_dir() else mod
                    found.append((target, child.lineno, in_function))
            visit(child, local)

    visit(tree, False)
    return found


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        g[module_name(path)] = {m for m, _, _ in imports(path)}
    return g


def test_no_import_cycle_among_labfixtures_modules() -> None:
    g = graph()
    # a package's __init__ re-exporting its own modules is not a cycle of concepts
    edges = {m: {t for t in ts if t != m and not m.startswith(t + ".")}
             for m, ts in g.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t in edges and not state.get(t):
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if not state.get(m):
            dfs(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for path in PKG.rglob("*.py"):
        me = module_name(path)
        for target, line, _ in imports(path):
            a, b = layer(me), layer(target)
            if a != b and RANK[b] >= RANK[a]:
                wrong.append(f"{path.relative_to(PKG.parent)}:{line}: {a} imports {b}")
    assert not wrong, "\n".join(wrong)


def test_no_function_local_import_of_the_package() -> None:
    local = [f"{path.relative_to(PKG.parent)}:{line}: {target}"
             for path in PKG.rglob("*.py") for target, line, inside in imports(path) if inside]
    assert not local, "function-local imports of labfixtures modules:\n" + "\n".join(local)


def test_no_module_is_much_over_400_lines() -> None:
    long = [f"{p.relative_to(PKG.parent)}: {n} lines" for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450]
    assert not long, "\n".join(long)
