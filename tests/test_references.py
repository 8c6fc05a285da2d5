"""What the code and the docs cite exists: repository paths, ``simab.*`` names (at the
module that defines them), ``docs/X.md, "Heading"`` sections and Markdown files named
bare.  A file moved, renamed or never added (the design map, a benchmark script) fails here,
not in a reader's hands."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# where references live (tests are left out: they name missing things on purpose)
SOURCES = [p for d in ("simab", "simulators", "policies", "reports", "scripts") for p in sorted((ROOT / d).rglob("*.py"))]
DOCS = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FILES = [*SOURCES, *DOCS, ROOT / "Makefile", ROOT / "pyproject.toml"]

# a file (with its extension) in one of the repository's folders
PATH = re.compile(r"(?<![\w/.-])((?:simab|simulators|policies|reports|scripts|docs|tests|examples)/[\w./-]*\.[a-z]+)\b")
DOTTED = re.compile(r"(?<![\w.])simab((?:\.\w+)+)")
SECTION = re.compile(r"((?:docs/)?\w+\.md),? \"([^\"]+)\"")
# a repository document named without its folder (README.md, DESIGN.md); lower-case names
# are mostly files simab writes (report.md, sweep.md), cited with their folder when they are docs
BARE_MD = re.compile(r"(?<![\w/.-])([A-Z][A-Z_-]*\.md)\b")
LAYERS = {"simulators", "policies", "reports"}  # simab.<layer> is installed from <layer>/


def _lines(path: Path):
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        yield f"{path.relative_to(ROOT)}:{n}", line


def _module(parts: list[str]) -> tuple[Path | None, list[str]]:
    """The file of the longest module prefix of ``simab.<parts>`` and the rest of the name."""
    base = ROOT / parts[0] if parts and parts[0] in LAYERS else ROOT / "simab"
    parts = parts[1:] if parts and parts[0] in LAYERS else parts
    for i, name in enumerate(parts):
        if (base / name).is_dir():
            base = base / name
        elif (base / f"{name}.py").exists():
            return base / f"{name}.py", parts[i + 1:]
        else:
            init = base / "__init__.py"
            return (init if init.exists() else None), parts[i:]
    init = base / "__init__.py"
    return (init if init.exists() else base), []  # a package, or a folder of data (simab.specs)


@cache
def _defined(path: Path) -> frozenset[str]:
    """Top-level names a module defines (def, class, assignment) or exports in ``__all__``."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
                if isinstance(t, ast.Name) and t.id == "__all__" and isinstance(node.value, (ast.List, ast.Tuple)):
                    names |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    return frozenset(names)


def _headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")]


def test_cited_paths_exist():
    missing = []
    for path in FILES:
        for where, line in _lines(path):
            for m in PATH.finditer(line):
                ref = m.group(1).rstrip(".")
                if any(c in ref for c in "*<{"):  # a pattern
                    continue
                if not (ROOT / ref).exists():
                    missing.append(f"{where}: {ref}")
    assert not missing, "cited paths that do not exist:\n" + "\n".join(missing)


def test_cited_simab_names_are_where_they_are_defined():
    wrong = []
    for path in FILES:
        for where, line in _lines(path):
            for m in DOTTED.finditer(line):
                parts = m.group(1).lstrip(".").split(".")
                module, rest = _module(parts)
                if module is None:
                    wrong.append(f"{where}: simab.{'.'.join(parts)} (no such module)")
                elif module.suffix == ".py" and rest and rest[0] not in _defined(module) and not rest[0].startswith("__"):
                    wrong.append(f"{where}: simab.{'.'.join(parts)} ({rest[0]} is not defined in "
                                 f"{module.relative_to(ROOT)})")
    assert not wrong, "cited names that do not resolve to their definition:\n" + "\n".join(wrong)


def test_cited_doc_sections_exist():
    missing = []
    for path in FILES:
        for where, line in _lines(path):
            for m in SECTION.finditer(line):
                doc = ROOT / (m.group(1) if m.group(1).startswith("docs/") else f"docs/{m.group(1)}")
                if not doc.exists():
                    doc = ROOT / m.group(1)
                if doc.exists() and not any(h.startswith(m.group(2)) for h in _headings(doc)):
                    missing.append(f"{where}: {m.group(1)}, \"{m.group(2)}\"")
    assert not missing, "cited sections that no heading starts with:\n" + "\n".join(missing)


def test_markdown_files_named_bare_exist_in_the_repository():
    """A bare ``X.md`` (no folder) must be some file of the repository: the team's design
    map lives outside it, so the code cites docs/architecture.md and docs/report_json.md."""
    present = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    missing = []
    for path in FILES:
        for where, line in _lines(path):
            missing += [f"{where}: {m.group(1)}" for m in BARE_MD.finditer(line) if m.group(1) not in present]
    assert not missing, "Markdown files that are not in the repository:\n" + "\n".join(missing)
