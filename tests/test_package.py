"""The package's shape: stage sub-packages, no import cycles, no private names across modules, short
pieces, and an atlas that can be read without the synthesis machinery."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "atlasgen"
STAGES = ("model", "synthesis", "store", "build", "site")
MAX_FUNCTION_LINES, MAX_CLASS_LINES = 80, 300


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or "", line) of every atlasgen import in the file, inside
    functions too; `from package import module` counts as an import of the module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "atlasgen":
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                found.append((target, "", node.lineno) if target in known else (node.module, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names if alias.name.split(".")[0] == "atlasgen"]
    return found


def test_the_stages_are_sub_packages():
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), stage
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose <= {"__init__", "cli", "errors", "fs", "names", "codec", "tf", "progress", "manifest", "params"}, loose


def test_no_private_name_is_imported_from_another_module():
    known = modules()
    private = [f"{path.relative_to(PACKAGE.parent)}:{line} takes {what} from {target}"
               for name, path in known.items() for target, what, line in imports(name, path, known)
               if what.startswith("_") and not what.endswith("__")]
    assert private == []


def test_there_is_no_import_cycle():
    known = modules()
    edges = {name: {target for target, _, _ in imports(name, path, known) if target in known and target != name}
             for name, path in known.items()}
    cycles = []

    def visit(node, trail, on_trail, done):
        for nxt in sorted(edges[node]):
            if nxt in on_trail:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in done:
                on_trail.add(nxt)
                visit(nxt, trail + [nxt], on_trail, done)
                on_trail.discard(nxt)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start], {start}, done)
    assert cycles == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_or_class_is_too_long(path):
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                long.append(f"{node.name}: {lines} lines")
    assert long == []


def test_reading_atlases_and_rendering_imports_no_synthesis_and_no_tensorflow():
    code = ("import sys; from atlasgen.site import atlases, render; from atlasgen import manifest; "
            "print(sorted(m for m in sys.modules if m.startswith(('atlasgen.synthesis', 'tensorflow', 'keras'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
