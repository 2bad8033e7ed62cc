"""Imports run one way: no module of the project imports (directly or through others) a module that
imports it back, and the engine core never imports a stage. Function-level imports count too: a
deferred import is still a dependency, only hidden."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "filters", "tokenizer", "trainer")
# The engine core: stages build on it, never the other way round.
CORE = ("pipeline.stage", "pipeline.runner", "pipeline.engines", "pipeline.config", "pipeline.storage")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports anywhere in its body (`from a import b` counts a.b when it is a module,
    else a)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` names the submodule only; `from pkg import name` names pkg itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for t in targets:
            # the deepest project module the import names (a.b.func -> a.b)
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = project_modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    # Python runs a package's __init__ before any of its submodules; that alone is not counted: a
    # submodule that imports a name defined in its package's __init__, which imports it back, is.
    assert cycles(import_graph()) == []


# What the core may import beside itself: the document schema and the leaf modules every stage records
# through. Not a stage, nor a stage's own package (pipeline.dedup, pipeline.ingest), nor filters.
CORE_MAY_IMPORT = ("pipeline.doc_profile", "pipeline.schema", "pipeline.selection")


def _in(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def test_engine_core_imports_no_stage():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if not _in(d, CORE + CORE_MAY_IMPORT)) for m, deps in graph.items() if _in(m, CORE)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
