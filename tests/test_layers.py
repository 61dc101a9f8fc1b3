"""The package's import structure: no cycles, lower layers never import higher ones, analysis/
never imports torch, and nothing imports an entry point. Every import counts, including the
ones inside functions (a cycle held together by a function-level import is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "asymptote"
SKIP = {"tests", "bench", "docs", ".venv", "build"}
ENTRY_POINTS = {"asymptote.launch.app.main", "asymptote.launch.app.cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def package_modules() -> dict[str, Path]:
    """Every module of the package (the repository root is `asymptote`)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP or "hydra_plugins" in rel.parts or any(
                p.startswith(".") for p in rel.parts):
            continue
        out[_module_name(path)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules (of the package, or external top-level names) that `path` imports anywhere."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:  # `from pkg import module`
                if f"{target}.{alias.name}" in known:
                    found.add(f"{target}.{alias.name}")
    resolved = set()
    for target in found:
        if target.split(".")[0] != PACKAGE:
            resolved.add(target)
            continue
        while target and target not in known:  # `from a.b import function` -> a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the package's modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_walker_sees_function_level_imports_and_cycles(tmp_path):
    edges = {"asymptote.a": {"asymptote.b"}, "asymptote.b": {"asymptote.a"}}
    assert find_cycle(edges) == ["asymptote.a", "asymptote.b", "asymptote.a"]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from .other import g\n")
    assert imports_of("asymptote.pkg.m", src, {"asymptote.pkg.other"}) == {"asymptote.pkg.other"}


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_lower_layers_never_import_higher_ones():
    bad = []
    for name, targets in graph().items():
        layer = name.split(".")[1] if name.count(".") else ""
        for t in targets:
            if layer in ("models", "data", "analysis") and t.startswith(
                    ("asymptote.launch", "asymptote.slurm")):
                bad.append(f"{name} imports {t}")
            if layer == "analysis" and t.split(".")[0] in ("torch", "megatron"):
                bad.append(f"{name} imports {t}")
            if layer == "analysis" and t.startswith(PACKAGE) and not t.startswith(
                    ("asymptote.analysis", "asymptote.atomic")):
                bad.append(f"{name} imports {t} (analysis stands alone)")
    assert bad == []


def test_nothing_imports_an_entry_point():
    bad = [f"{name} imports {t}" for name, targets in graph().items() for t in targets
           if t in ENTRY_POINTS]
    assert bad == []


def test_importing_the_package_registers_nothing():
    """Registration with Hydra is an explicit call (launch/app/register.py), not an import
    side effect."""
    import subprocess
    import sys

    code = ("import asymptote.launch.app.main, asymptote.launch.app.plan, asymptote.launch.jobs\n"
            "from hydra.core.config_store import ConfigStore\n"
            "repo = ConfigStore.instance().repo\n"
            "print('job' in repo, 'asymptote_slurm.yaml' in repo.get('hydra', {}).get('launcher', {}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
