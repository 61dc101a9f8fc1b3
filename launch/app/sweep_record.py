"""`sweep.json`: what a sweep launched (every point's overrides, run folder and SLURM ids), and
`<out>/manifest.json`: every run launched into an output root (what the analysis expects).

A sweep folder is Hydra's `hydra.sweep.dir` (`<out>/.hydra/<time>-<pid>/`); `asymptote status`
and `asymptote resubmit` read it. Files are replaced atomically, so a crash never leaves half a
record.
"""

from __future__ import annotations

import fcntl
import json
import sys
import time
from pathlib import Path

from ... import atomic

SWEEP_FILE = "sweep.json"
MANIFEST_FILE = "manifest.json"


class SweepNotFound(FileNotFoundError):
    """A path with no sweep record (the message says what to give instead)."""


def new_record(sweep_dir: Path, out: Path, launcher: str, executor: dict | None = None) -> dict:
    """An empty record for a sweep about to be launched."""
    return {
        "version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "launcher": launcher,
        "command": sys.argv, "sweep_dir": str(sweep_dir), "out": str(out),
        "executor": executor or {}, "arrays": [], "points": [],
    }


def point_entry(point, job_id: str | None = None, pickle: str | None = None) -> dict:
    """sweep.json's entry for one SweepPoint (with its SLURM ids when submitted)."""
    entry = {"index": point.index, "overrides": point.overrides, "run_dir": str(point.run_dir),
             "run_name": point.run_dir.name, "job": point.config.job,
             "outputs": point.outputs.as_dict(), "job_id": job_id, "submission": pickle,
             "previous_job_ids": []}
    if job_id and "_" in job_id:
        entry["array_job_id"], task = job_id.split("_", 1)
        entry["array_task_id"] = int(task)
    return entry


def write_sweep(sweep_dir: Path, record: dict) -> Path:
    """Write (replace) `<sweep_dir>/sweep.json`."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / SWEEP_FILE
    record["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic.write_json(path, record, indent=2, default=str)
    return path


def read_sweeps(path: str | Path) -> list[tuple[Path, dict]]:
    """(sweep folder, record) of a sweep folder, or of every sweep launched into an output root
    (oldest first)."""
    path = Path(path).expanduser()
    if (path / SWEEP_FILE).is_file():
        return [(path, json.loads((path / SWEEP_FILE).read_text()))]
    found = sorted(path.glob(f".hydra/*/{SWEEP_FILE}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SweepNotFound(
            f"no {SWEEP_FILE} in {path} or {path}/.hydra/*/: give the `out` folder of a sweep "
            "launched with `asymptote-train -m`, or one of its sweep folders")
    return [(p.parent, json.loads(p.read_text())) for p in found]


def update_manifest(out: Path, run_names: list[str]) -> Path:
    """Add run names to `<out>/manifest.json` ({"runs": [...]}), which the analysis reads to
    report runs that are expected but absent. Safe against sweeps launched at the same time."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST_FILE
    with open(out / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = json.loads(path.read_text()).get("runs", []) if path.is_file() else []
        merged = sorted(set(runs) | set(run_names))
        atomic.write_json(path, {"runs": merged}, indent=2)
    return path
