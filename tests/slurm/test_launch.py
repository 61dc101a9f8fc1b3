"""`asymptote-train -m hydra/launcher=slurm` on the real local cluster (CPU/gloo, tiny runs):
a sweep is one array job, a TP=2 run is one 2-task job matching the local run, a failing task
is FAILED with its traceback in run.json, and the generated sbatch script matches its golden
record."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import only_run, run_train, tb_scalars

pytestmark = pytest.mark.slurm

GOLDEN = Path(__file__).resolve().parent / "golden" / "sweep_submission.sh"
TINY = ["model=tiny", "data.seed_tokens=8192", "train.epochs=1", "train.global_batch=8",
        "train.micro_batch=4", "train.eval_every=0"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.timeout_min=5",
         "hydra.launcher.signal_delay_s=30"]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def sacct_rows(info, job_id: str, n_rows: int, timeout: float = 120) -> dict[str, dict]:
    """sacct's allocation rows of ``job_id`` (JobID -> {State, NTasks...}) once ``n_rows`` of
    them are in terminal states; sacct lags squeue, so poll."""
    deadline = time.monotonic() + timeout
    rows: dict[str, dict] = {}
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-j", job_id, "-o", "JobID,State,NTasks,ExitCode"],
            env=info.env(), capture_output=True, text=True, check=True).stdout
        rows = {}
        for line in out.splitlines():
            jid, state, ntasks, code = line.split("|")
            rows[jid] = {"state": state.split()[0], "ntasks": ntasks, "exit": code}
        alloc = {k: v for k, v in rows.items() if "." not in k}
        if len(alloc) == n_rows and {v["state"] for v in alloc.values()} <= TERMINAL:
            return rows
        time.sleep(1)
    raise AssertionError(f"sacct never showed {n_rows} finished allocations of {job_id}: {rows}")


def submissions(out: Path) -> list[Path]:
    """The submitit batch scripts written under a sweep's output root."""
    return sorted(out.glob(".hydra/*/.submitit/*/*_submission.sh"))


def job_id_of(script: Path) -> str:
    return script.name.split("_")[0]


def normalise(script: str, out: Path) -> str:
    """Replace the paths and timestamps that differ between runs with placeholders."""
    script = re.sub(re.escape(str(out)) + r"/\.hydra/[0-9_-]+", "<SWEEP_DIR>", script)
    return script.replace(sys.executable, "<PYTHON>")


def test_sweep_is_one_array_job_and_both_runs_done(slurm_env, data_cache, tmp_path):
    proc = run_train(data_cache, "-m", f"out={tmp_path}", *TINY, *SLURM,
                     "optim.weight_decay=0.1,0.2")
    scripts = submissions(tmp_path)
    assert len(scripts) == 1, (scripts, proc.stdout[-3000:])  # one sbatch call: one array
    job = job_id_of(scripts[0])
    rows = sacct_rows(slurm_env, job, n_rows=2)
    alloc = {k: v["state"] for k, v in rows.items() if "." not in k}
    assert alloc == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}, rows
    runs = sorted(p for p in tmp_path.iterdir() if (p / "run.json").exists())
    records = [json.loads((r / "run.json").read_text()) for r in runs]
    assert sorted(r["config"]["optim"]["weight_decay"] for r in records) == [0.1, 0.2]
    assert all(r["status"] == "done" and r["final"]["val_loss"] > 0 for r in records)

    # Golden record of the generated sbatch script (paths and timestamps normalised).
    text = normalise(scripts[0].read_text(), tmp_path)
    assert "<SWEEP_DIR>" in text and "<PYTHON>" in text
    assert text == GOLDEN.read_text(), f"sbatch script changed:\n{text}"


@pytest.mark.extended
def test_tp2_run_is_one_two_task_job_matching_local_run(slurm_env, data_cache, tmp_path):
    steps_cfg = [*TINY, "data.seed_tokens=16384", "parallel.tp=2"]  # 16 steps
    slurm_out, local_out = tmp_path / "slurm", tmp_path / "local"
    run_train(data_cache, "-m", f"out={slurm_out}", *steps_cfg, *SLURM)
    run_train(data_cache, f"out={local_out}", *steps_cfg)
    scripts = submissions(slurm_out)
    assert len(scripts) == 1
    assert "#SBATCH --ntasks-per-node=2" in scripts[0].read_text()
    job = job_id_of(scripts[0])
    rows = sacct_rows(slurm_env, job, n_rows=1)
    # One allocation (a one-point sweep is a plain job or a 1-task array); its srun step ran
    # 2 tasks.
    alloc = [v["state"] for k, v in rows.items() if "." not in k]
    assert alloc == ["COMPLETED"], rows
    steps = [v for k, v in rows.items() if re.fullmatch(r".*\.\d+", k)]
    assert [s["ntasks"] for s in steps] == ["2"], rows

    a, b = only_run(slurm_out), only_run(local_out)
    rec = json.loads((a / "run.json").read_text())
    assert rec["status"] == "done" and rec["world"] == 2 and rec["layout"]["tp"] == 2
    la, lb = tb_scalars(a, "train/loss"), tb_scalars(b, "train/loss")
    assert [s for s, _ in la] == list(range(1, 17))
    assert [s for s, _ in la] == [s for s, _ in lb]
    for (step, x), (_, y) in zip(la, lb):
        assert abs(x - y) <= 1e-6 * abs(y), f"step {step}: slurm {x} vs local {y}"


def test_failing_task_is_failed_with_traceback(slurm_env, data_cache, tmp_path):
    # More seed tokens than the shipped corpus has: passes validation, raises in training.
    proc = run_train(data_cache, "-m", f"out={tmp_path}", *TINY, *SLURM,
                     "data.seed_tokens=1000000000", check=False)
    assert proc.returncode != 0
    job = job_id_of(submissions(tmp_path)[0])
    rows = sacct_rows(slurm_env, job, n_rows=1)
    assert [v["state"] for k, v in rows.items() if "." not in k] == ["FAILED"], rows
    record = json.loads((only_run(tmp_path) / "run.json").read_text())
    assert record["status"] == "failed"
    assert record["error"].startswith("BudgetError:")
    assert "Traceback" in record["traceback"] and "BudgetError" in record["traceback"]
