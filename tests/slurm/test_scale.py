"""Submission at scale on the real local cluster: sbatch retried through a controller that is
busy at first, a large held sweep submitted as one array, and `asymptote status` asking squeue
and sacct once for it. Jobs are submitted held (`--hold`) and cancelled afterwards, so nothing
runs. Timings are in bench/slurm/ (ratios against hydra-submitit-launcher), not asserted here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_train

pytestmark = pytest.mark.slurm

HELD = ["hydra/launcher=slurm", "hydra.launcher.detach=true",
        "+hydra.launcher.additional_parameters.hold=true", "hydra.launcher.timeout_min=5"]

FAILING_SBATCH = """#!/bin/sh
# The controller is busy for the first two submissions, then the real sbatch answers.
dir=$(dirname "$0")
echo "$@" >> "$dir/calls"
n=$(wc -l < "$dir/calls")
if [ "$n" -le 2 ]; then
    echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
    exit 1
fi
exec {real} "$@"
"""


def record(out: Path) -> dict:
    (path,) = out.glob(".hydra/*/sweep.json")
    return json.loads(path.read_text())


@pytest.fixture
def cancel(slurm_env):
    """`cancel(out)`: scancel every array of the sweep(s) in `out` at the end of the test."""
    outs = []
    yield outs.append
    for out in outs:
        for path in out.glob(".hydra/*/sweep.json"):
            ids = [a["job_id"] for a in json.loads(path.read_text())["arrays"]]
            if ids:
                subprocess.run(["scancel", *ids], env=slurm_env.env(), check=False)


def test_sbatch_is_retried_while_the_controller_is_busy(slurm_env, data_cache, tmp_path,
                                                        monkeypatch, cancel):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text(FAILING_SBATCH.format(real=shutil.which("sbatch")))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "runs"
    cancel(out)
    proc = run_train(data_cache, "-m", f"out={out}", "model=tiny", *HELD,
                     "hydra.launcher.sbatch_backoff_s=0.5", "hydra.launcher.max_array_size=100",
                     "optim.weight_decay=0.1,0.2,0.3")
    assert proc.stdout.count("Socket timed out") == 2
    assert "(attempt 1 of 6); retrying in" in proc.stdout
    assert "(attempt 2 of 6); retrying in" in proc.stdout
    assert len((bin_dir / "calls").read_text().splitlines()) == 3
    (array,) = record(out)["arrays"]
    assert array["size"] == 3
    queued = subprocess.run(["squeue", "-h", "-r", "-j", array["job_id"], "-o", "%i|%r"],
                            env=slurm_env.env(), capture_output=True, text=True, check=True)
    rows = dict(line.split("|") for line in queued.stdout.split())
    assert sorted(rows) == [f"{array['job_id']}_{i}" for i in range(3)]
    assert set(rows.values()) == {"JobHeldUser"}


def test_a_large_sweep_fills_the_clusters_arrays_and_status_asks_once(slurm_env, data_cache,
                                                                      tmp_path, monkeypatch,
                                                                      cancel):
    """300 held points: as few arrays as the cluster's MaxArraySize allows (one sbatch each),
    and `asymptote status` asks squeue once and sacct once for all of them."""
    from asymptote.launch.app.status import sweep_status
    from asymptote.slurm import scheduler

    n = 300
    per_array = slurm_env.max_array_size  # the test cluster's limit (small, to exercise splits)
    values = ",".join(f"{0.001 * (i + 1):.3f}" for i in range(n))
    out = tmp_path / "runs"
    cancel(out)
    run_train(data_cache, "-m", f"out={out}", "model=tiny", *HELD, f"optim.weight_decay={values}")
    rec = record(out)
    sizes = [a["size"] for a in rec["arrays"]]
    assert sum(sizes) == n and max(sizes) <= per_array
    assert len(sizes) == -(-n // per_array)
    assert len({p["run_name"] for p in rec["points"]}) == n

    calls = []
    real_run = scheduler._run

    def counting(cmd, timeout=30):
        calls.append(cmd)
        return real_run(cmd, timeout)

    monkeypatch.setattr(scheduler, "_run", counting)
    rows, notes = sweep_status(out)
    assert notes == []
    assert [c[0] for c in calls] == ["squeue", "sacct"], [c[:3] for c in calls]
    asked = set(calls[0][calls[0].index("-j") + 1].split(","))
    assert asked == {a["job_id"] for a in rec["arrays"]}
    assert len(rows) == n and {r.state for r in rows} == {"PENDING"}
    assert {r.detail for r in rows} == {"JobHeldUser"}
