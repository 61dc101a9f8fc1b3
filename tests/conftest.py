"""Shared helpers: run `asymptote-train` as users do (a subprocess) and read its TensorBoard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One prepared-data cache for the whole session (the tokenizer is trained once)."""
    return tmp_path_factory.mktemp("asymptote-cache")


def train_env(cache: Path) -> dict:
    """Environment of a CPU training subprocess: one thread per rank, a private cache."""
    env = dict(os.environ, OMP_NUM_THREADS="1", ASYMPTOTE_CACHE=str(cache),
               PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="1")
    # A model loaded in this process (models.inference) set MASTER_PORT here; a child that
    # inherited it would try to bind the same port.
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR"):
        env.pop(key, None)
    return env


def run_train(cache: Path, *overrides: str, check: bool = True, timeout: int = 600):
    """Run `asymptote-train <overrides>`; returns the CompletedProcess (stdout+stderr merged)."""
    import tempfile

    cmd = [sys.executable, "-m", "asymptote.launch.app.main", *overrides]
    # Output goes to a file, not a pipe: after a SIGKILL test, helper processes of the killed
    # ranks may hold a pipe open long after the command itself has exited.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.run(cmd, env=train_env(cache), stdout=log, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        log.seek(0)
        proc.stdout = log.read()
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def only_run(out: Path) -> Path:
    """The single run folder under `out`."""
    runs = [p for p in Path(out).iterdir() if (p / "run.json").exists()]
    assert len(runs) == 1, runs
    return runs[0]


def tb_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """All (step, value) points of `tag`, in file order, duplicates included."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]
