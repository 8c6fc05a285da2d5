"""The layer arrows of docs/architecture.md, checked on the source itself.

``simab`` -> ``reports``, ``policies``, ``simulators``; ``policies`` -> ``simulators``;
the world (``simulators``) imports no torch and nothing above it; ``reports`` knows
nothing of ``policies`` or ``simulators``.  A few leaf modules of ``simab`` (errors,
atomic writes, version) import nothing above them and may be used by every layer.
No module imports a private name of another; the import graph, function-level
(lazy) imports included, has no cycle.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Modules of ``simab`` that every layer may import: they import only each other.
LEAVES = frozenset({"simab.errors", "simab.atomic", "simab.version"})
#: Which packages each layer may import besides itself and the leaves.
ALLOWED = {
    "simab.simulators": (),
    "simab.reports": (),
    "simab.policies": ("simab.simulators",),
}


def _modules() -> dict[str, Path]:
    """Module name -> source file, from pyproject's ``package-dir`` mapping."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    out = {}
    for package, folder in mapping.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    for path in sorted((ROOT / "simab").glob("*/*.py")):  # simab's subpackages (engine/, run/, ...)
        sub = f"simab.{path.parent.name}"
        out[sub if path.stem == "__init__" else f"{sub}.{path.stem}"] = path
    return out


MODULES = _modules()


def _package_of(module: str) -> str:
    return module if MODULES.get(module, Path()).stem == "__init__" else module.rpartition(".")[0]


def _imports(path: Path, module: str | None) -> list[tuple[str, str | None, int]]:
    """Every import statement anywhere in the file (top level or inside functions) as
    ``(imported module, imported name or None, line)``; relative imports resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out += [(base, a.name, node.lineno) for base, a in _imports_of(node, module)]
    return out


def _target(base: str, name: str | None) -> str:
    """The simab module an import loads: ``from simab.policies import trainer`` loads
    ``simab.policies.trainer``; ``from simab.policies.trainer import fit`` loads
    ``simab.policies.trainer``."""
    if name is not None and f"{base}.{name}" in MODULES:
        return f"{base}.{name}"
    return base


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for base, name, _ in _imports(path, module):
            target = _target(base, name)
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


def _layer(module: str) -> str:
    for layer in ALLOWED:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "simab"


def test_layers_import_only_downwards():
    bad = []
    for module, targets in import_graph().items():
        layer = _layer(module)
        if module in LEAVES:
            bad += [f"{module} -> {t} (a leaf imports only leaves)" for t in targets if t not in LEAVES]
            continue
        if layer == "simab":
            continue
        allowed = (layer, *ALLOWED[layer])
        bad += [f"{module} -> {t}" for t in targets
                if t not in LEAVES and not any(t == a or t.startswith(a + ".") for a in allowed)]
    assert not bad, "imports against the layer direction:\n" + "\n".join(sorted(bad))


#: simab's subpackages, lowest floor first: a module imports only folders on lower floors
#: (and the top-level shared modules and the three layers), never one above its own.
FLOORS = ("simab.engine", "simab.run", "simab.ope", "simab.batteries", "simab.cli")
#: Top-level modules that start things (the package's API and the pytest plugin): they may
#: import any floor.  Every other top-level module is shared by the floors and imports none.
ENTRIES = frozenset({"simab", "simab.pytest_plugin"})


def _floor(module: str) -> int | None:
    """Index in :data:`FLOORS` of the subpackage holding ``module``; None for the top level
    of simab and for the layers."""
    return next((i for i, f in enumerate(FLOORS) if module == f or module.startswith(f + ".")), None)


def test_simab_folders_import_only_downwards():
    """engine <- run <- ope <- batteries <- cli, and the shared top-level modules (spec,
    event log, progress, ...) import no folder: the folders are floors (docs/architecture.md)."""
    bad = []
    for module, targets in import_graph().items():
        if _layer(module) != "simab" or module in ENTRIES:
            continue
        mine = _floor(module)
        for t in targets:
            theirs = _floor(t)
            if theirs is None:
                continue
            if mine is None:
                bad.append(f"{module} -> {t} (a shared top-level module imports no folder)")
            elif theirs > mine:
                bad.append(f"{module} -> {t} ({FLOORS[mine]} is below {FLOORS[theirs]})")
    assert not bad, "imports against the folder floors:\n" + "\n".join(sorted(bad))


def test_simab_keeps_few_top_level_modules():
    """At most 14 modules at simab's top level (docs/architecture.md): the rest live in folders."""
    top = sorted(p.name for p in (ROOT / "simab").glob("*.py"))
    assert len(top) <= 14, top


def test_the_world_does_not_import_torch():
    """Importing ``simab.simulators`` and each of its modules leaves torch unloaded (a
    subprocess, so that nothing this test session imported counts)."""
    names = sorted(m for m in MODULES if _layer(m) == "simab.simulators")
    code = (
        "import importlib, json, sys\n"
        "out = {}\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "    out[name] = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(loaded) == set(names)
    first = next((name for name in names if loaded[name]), None)
    assert first is None, f"importing {first} loads {loaded[first]}"


def _private_imports(path: Path, module: str | None) -> list[str]:
    """``from simab.x import _name`` and ``alias._name`` where ``alias`` is an imported
    simab module, for any single-underscore name (dunders are public)."""

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    tree = ast.parse(path.read_text(), str(path))
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for base, alias in _imports_of(node, module):
                if not base.startswith("simab"):
                    continue
                if _target(base, alias.name) != base:  # a module: watch its attribute use
                    aliases.add(alias.asname or alias.name)
                elif private(alias.name):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {base}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("simab"):
                    if any(private(p) for p in alias.name.split(".")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name}")
                    if alias.asname:
                        aliases.add(alias.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and private(node.attr)):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def _imports_of(node: ast.ImportFrom, module: str | None) -> list[tuple[str, ast.alias]]:
    """``(module the names come from, alias)`` of each name; relative imports resolved."""
    base = node.module or ""
    if node.level and module is not None:
        parts = _package_of(module).split(".")
        parent = ".".join(parts[: len(parts) - node.level + 1])
        base = f"{parent}.{base}" if base else parent
    return [(base, alias) for alias in node.names]


def test_no_module_imports_a_private_name_of_another():
    files = [(path, module) for module, path in MODULES.items()]
    files += [(path, None) for folder in ("tests", "scripts") for path in sorted((ROOT / folder).rglob("*.py"))]
    found = [hit for path, module in files for hit in _private_imports(path, module)]
    assert not found, "private names used across modules (make them public in a proper home):\n" + "\n".join(found)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles (lazy imports count):\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_cycle_finder_finds_what_it_should(graph, expected):
    assert _cycles(graph) == expected


def test_lazy_and_module_imports_are_edges():
    """A function-level ``from simab.policies import trainer`` is an edge to the module."""
    graph = import_graph()
    assert "simab.policies.trainer" in graph["simab.policies.ssim"]
    assert "simab.run.runner" in graph["simab"]  # ``simab.run_campaign`` imports it lazily
