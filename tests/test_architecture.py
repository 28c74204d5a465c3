"""Architecture rules checked on the source of the `edgecompress` package (ast only: nothing is imported).

- No import cycles between modules. Every `import` / `from ... import` counts, at module level and inside
  functions alike (an import moved into a function still ties the two modules together), at module
  granularity: `from . import x` is an edge to the module `x` when `x` is a module, else to the package.
  Imports under `if TYPE_CHECKING:` are ignored: they never run. Importing `a.b.c` is not counted as
  importing the packages `a` and `a.b` (their `__init__` re-exports would otherwise tie everything together).
- No module over 600 lines.
- Every third-party module imported is declared in pyproject.toml's `dependencies`. A module of an extra in
  `[project.optional-dependencies]` (torch) is allowed where its import is inside a function, under
  `try: ... except ImportError`, under `if TYPE_CHECKING:`, or anywhere in a subpackage that needs that extra
  (`EXTRA_PACKAGES`), which the rest of the package then imports only inside functions.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "edgecompress"
MAX_LINES = 600
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "onnx_ir": "onnx-ir", "yaml": "pyyaml", "google": "protobuf", "sklearn": "scikit-learn",
                 "skimage": "scikit-image"}
# subpackages that need an optional extra as a whole (they import it at module level)
EXTRA_PACKAGES = {"torch": ("edgecompress.distill",)}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the absolute dotted name imported (for `from X import a`: X.a, resolved later)
    names: tuple[str, ...]  # for `from X import a, b`: ("a", "b"); () for `import X`
    lazy: bool  # inside a function
    guarded: bool  # inside try/except ImportError (or TYPE_CHECKING, which is skipped before)
    line: int


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def _imports(module: str) -> Iterator[Import]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, lazy: bool, guarded: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from (i for n in child.orelse for i in visit_one(n, lazy, guarded))
                continue
            if isinstance(child, ast.Try) and any(_catches_import_error(h) for h in child.handlers):
                yield from (i for n in child.body for i in visit_one(n, lazy, True))
                yield from (i for n in [*child.handlers, *child.orelse, *child.finalbody]
                            for i in visit_one(n, lazy, guarded))
                continue
            yield from visit_one(child, lazy, guarded)

    def visit_one(node: ast.AST, lazy: bool, guarded: bool) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, (), lazy, guarded, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield Import(module, target, tuple(a.name for a in node.names), lazy, guarded, node.lineno)
        else:
            inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from visit(node, inner, guarded)

    yield from visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False, False)


IMPORTS = {m: list(_imports(m)) for m in MODULES}


def _owner(name: str) -> str:
    """The module that defines dotted `name` (the longest prefix that is a module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _intra_edges(imp: Import) -> set[str]:
    if imp.target != PACKAGE and not imp.target.startswith(PACKAGE + "."):
        return set()
    if not imp.names:
        return {_owner(imp.target)}
    # `from X import a`: the module X.a when a is a module, else X itself
    return {f"{imp.target}.{n}" if f"{imp.target}.{n}" in MODULES else _owner(imp.target) for n in imp.names}


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, imps in IMPORTS.items():
        for imp in imps:
            graph[m] |= _intra_edges(imp)
        graph[m].discard(m)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components in no particular order, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


def test_scc_finder_sees_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(c for c in strongly_connected(g) if len(c) > 1) == [["a", "b", "c"]]


def test_from_dot_import_of_a_submodule_is_an_edge_to_that_module():
    imp = Import("edgecompress.cli.common", "edgecompress.prune", ("groups", "prune"), True, False, 1)
    assert _intra_edges(imp) == {"edgecompress.prune.groups", "edgecompress.prune"}


def test_no_import_cycles():
    graph = import_graph()
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    lines = []
    for comp in sorted(cycles):
        lines.append("cycle: " + ", ".join(comp))
        for m in comp:
            lines.append(f"    {m} -> {', '.join(sorted(graph[m] & set(comp)))}")
    assert not cycles, "import cycles between modules (imports inside functions count):\n" + "\n".join(lines)


def test_no_module_over_600_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _dist(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def _third_party(imp: Import) -> str | None:
    top = imp.target.partition(".")[0]
    if not top or top == PACKAGE or top in sys.stdlib_module_names:
        return None
    return top


def test_every_third_party_import_is_declared():
    project = _project()
    base = {_dist(r) for r in project["dependencies"]}
    extras = {_dist(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    missing, eager = [], []
    for m, imps in IMPORTS.items():
        for imp in imps:
            top = _third_party(imp)
            if top is None:
                continue
            dist = DISTRIBUTIONS.get(top, top).replace("_", "-").lower()
            if dist in base:
                continue
            where = f"{MODULES[m].relative_to(ROOT)}:{imp.line} imports {top}"
            if dist not in extras:
                missing.append(f"{where} (distribution {dist!r} is not in [project] dependencies)")
            elif not (imp.lazy or imp.guarded or _within(m, EXTRA_PACKAGES.get(top, ()))):
                eager.append(f"{where} at module level, but {dist!r} is only an optional extra")
    assert not missing and not eager, "\n".join(missing + eager)


@pytest.mark.parametrize("extra_module, packages", sorted(EXTRA_PACKAGES.items()))
def test_extra_only_packages_are_imported_lazily(extra_module, packages):
    """Outside a subpackage that needs an extra as a whole, its modules are imported only inside functions."""
    bad = []
    for m, imps in IMPORTS.items():
        if _within(m, packages):
            continue
        for imp in imps:
            if imp.lazy or imp.guarded:
                continue
            for target in _intra_edges(imp):
                if _within(target, packages) and target not in packages:  # the package __init__ stays light
                    bad.append(f"{MODULES[m].relative_to(ROOT)}:{imp.line} imports {target} at module level")
    assert not bad, f"modules needing the {extra_module!r} extra imported eagerly:\n" + "\n".join(bad)
