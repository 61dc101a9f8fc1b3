"""pyproject.toml builds quietly and ships every module and data file of the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOT_SHIPPED = {"tests", "bench", "docs", "build", "runs", "outputs", "multirun"}


def _setuptools_version() -> tuple[int, ...]:
    try:
        import setuptools
    except ImportError:
        return (0,)
    return tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[str, list[str]]:
    """Build a (non-editable) wheel from a copy of the work tree with this venv's setuptools;
    returns the build output and the wheel's file names."""
    if _setuptools_version() < (77,):
        pytest.skip("needs setuptools >= 77 in this environment (SPDX license string)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "_work", "__pycache__", "*.egg-info", "build", "runs", ".pytest_cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp / "out")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (whl,) = (tmp / "out").glob("asymptote-*.whl")
    with zipfile.ZipFile(whl) as z:
        return proc.stdout + proc.stderr, z.namelist()


def test_build_prints_no_setuptools_warning(wheel):
    output, _ = wheel
    bad = [line for line in output.splitlines() if "Warning" in line or "deprecated" in line.lower()]
    assert not bad, "\n".join(bad)


def test_every_data_file_is_shipped(wheel):
    _, names = wheel
    data = [p for d in ("data/corpus", "evals/tasks", "launch/conf", "slurm/cluster")
            for p in (REPO / d).rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert data
    missing = [str(p.relative_to(REPO)) for p in data if f"asymptote/{p.relative_to(REPO).as_posix()}" not in names]
    assert not missing


def _shipped_source(rel: Path) -> bool:
    """Whether a .py file of the work tree belongs to the `asymptote` package."""
    parts = rel.parts
    return not (parts[0] in NOT_SHIPPED or "__pycache__" in parts or any(x.startswith(".") for x in parts)
                or parts[:2] == ("launch", "hydra_plugins"))  # shipped as hydra_plugins.*


def test_every_module_is_shipped(wheel):
    _, names = wheel
    modules = [rel for rel in (p.relative_to(REPO) for p in REPO.rglob("*.py")) if _shipped_source(rel)]
    assert modules
    missing = [str(m) for m in modules if f"asymptote/{m.as_posix()}" not in names]
    assert not missing, f"modules not in the wheel (add their folders to [tool.setuptools] packages): {missing}"
    assert "hydra_plugins/asymptote_launchers/__init__.py" in names
