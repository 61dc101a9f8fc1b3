"""Submission at scale without a cluster: sbatch retried with backoff on a busy controller (a
fake `sbatch` first on PATH), one sbatch per array, the launcher pickled once per sweep instead
of once per task, and a sweep whose points need different layouts refused before any sbatch."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from pathlib import Path

import pytest

from conftest import run_train

from asymptote.slurm import scheduler
from asymptote.slurm.scheduler import Backoff, SubmissionError

FAKE_SBATCH = """#!/bin/sh
# A fake sbatch: records each call; the first $FAKE_SBATCH_FAILS calls fail with
# $FAKE_SBATCH_ERROR; later ones run $FAKE_SBATCH_REAL (a real sbatch) or print a job id.
dir=$(dirname "$0")
echo "$@" >> "$dir/calls"
n=$(wc -l < "$dir/calls")
if [ "$n" -le "${FAKE_SBATCH_FAILS:-0}" ]; then
    echo "sbatch: error: ${FAKE_SBATCH_ERROR:-Batch job submission failed: Socket timed out on send/recv operation}" >&2
    exit 1
fi
if [ -n "$FAKE_SBATCH_REAL" ]; then exec "$FAKE_SBATCH_REAL" "$@"; fi
echo "Submitted batch job $((1000 + n))"
"""

FAKE_SQUEUE = """#!/bin/sh
# A fake squeue: the queue is whatever $FAKE_SQUEUE_OUT says.
printf '%s\\n' "$FAKE_SQUEUE_OUT"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A folder with fake `sbatch`, `squeue` and `srun` (submitit only checks that srun exists),
    first on PATH; `calls()` lists sbatch calls."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE),
                       ("srun", "#!/bin/sh\nexit 1\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    class Fake:
        dir = bin_dir

        @staticmethod
        def calls() -> list[str]:
            path = bin_dir / "calls"
            return path.read_text().splitlines() if path.exists() else []

    return Fake


def script(tmp_path: Path) -> str:
    path = tmp_path / "job.sh"
    path.write_text("#!/bin/sh\ntrue\n")
    return str(path)


def test_busy_controller_is_retried_with_growing_waits(fake_slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SBATCH_FAILS", "3")
    monkeypatch.setenv("FAKE_SBATCH_ERROR", "Batch job submission failed: Resource temporarily "
                                            "unavailable")
    waits, logs = [], []
    out = scheduler.sbatch(["sbatch", script(tmp_path)], Backoff(attempts=5, first_s=2, jitter=0),
                           sleep=waits.append, log=logs.append)
    assert "Submitted batch job 1004" in out
    assert len(fake_slurm.calls()) == 4
    assert waits == [2, 4, 8]
    assert "Resource temporarily unavailable (attempt 1 of 5); retrying in 2.0 s" in logs[0]


def test_waits_are_capped_and_jittered():
    waits = Backoff(attempts=8, first_s=2, factor=2, max_s=20, jitter=0.25).delays(random.Random(0))
    assert len(waits) == 7
    bases = [2, 4, 8, 16, 20, 20, 20]
    assert all(b <= w <= b * 1.25 for w, b in zip(waits, bases))


def test_gives_up_after_the_last_attempt(fake_slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SBATCH_FAILS", "10")
    with pytest.raises(SubmissionError, match=r"after 3 attempts.*Socket timed out"):
        scheduler.sbatch(["sbatch", script(tmp_path)], Backoff(attempts=3, first_s=0.01),
                         log=lambda m: None)
    assert len(fake_slurm.calls()) == 3


def test_a_permanent_error_is_not_retried(fake_slurm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SBATCH_FAILS", "1")
    monkeypatch.setenv("FAKE_SBATCH_ERROR", "Batch job submission failed: Invalid job array "
                                            "specification")
    with pytest.raises(SubmissionError, match="Invalid job array specification"):
        scheduler.sbatch(["sbatch", script(tmp_path)], Backoff(attempts=5, first_s=0.01),
                         log=lambda m: None)
    assert len(fake_slurm.calls()) == 1


def test_a_lost_reply_does_not_submit_twice(fake_slurm, tmp_path, monkeypatch):
    """"Socket timed out" may come after the controller accepted the job: if a job already runs
    the script, it is the submission."""
    job_script = script(tmp_path)
    monkeypatch.setenv("FAKE_SBATCH_FAILS", "1")
    monkeypatch.setenv("FAKE_SQUEUE_OUT", f"77|{job_script}\n5|/elsewhere.sh")
    logs = []
    out = scheduler.sbatch(["sbatch", job_script], Backoff(attempts=3, first_s=0.01),
                           log=logs.append)
    assert "Submitted batch job 77" in out and len(fake_slurm.calls()) == 1
    assert "job 77 already runs this script" in logs[0]


def sweep(tmp_path: Path) -> tuple[Path, dict]:
    (path,) = tmp_path.glob(".hydra/*/sweep.json")
    return path.parent, json.loads(path.read_text())


SLURM = ["hydra/launcher=slurm", "hydra.launcher.detach=true",
         "hydra.launcher.sbatch_backoff_s=0.01"]


def test_a_sweep_is_one_sbatch_per_array_and_one_launcher_pickle(fake_slurm, data_cache,
                                                                 tmp_path, monkeypatch):
    from submitit.core.utils import pickle_load

    from asymptote.launch.app.launchers import ArrayTask

    monkeypatch.setenv("FAKE_SBATCH_FAILS", "2")  # the controller is busy at first
    out = tmp_path / "runs"
    proc = run_train(data_cache, "-m", f"out={out}", "model=tiny", *SLURM,
                     "hydra.launcher.max_array_size=3", "optim.weight_decay=0.1,0.2,0.3,0.4,0.5")
    assert proc.stdout.count("Socket timed out") >= 2 and "retrying in" in proc.stdout
    calls = fake_slurm.calls()
    assert len(calls) == 4  # 2 failures, then one sbatch per array (3 + 2 points)
    sweep_dir, record = sweep(out)
    assert [(a["job_id"], a["size"]) for a in record["arrays"]] == [("1003", 3), ("1004", 2)]
    assert [p["job_id"] for p in record["points"]] == ["1003_0", "1003_1", "1003_2", "1004_0",
                                                       "1004_1"]
    scripts = sorted(sweep_dir.glob(".submitit/*/*_submission.sh"))
    assert [s.name for s in scripts] == ["1003_submission.sh", "1004_submission.sh"]
    assert "#SBATCH --array=0-2%3" in scripts[0].read_text()  # %min(parallelism, size)
    assert "#SBATCH --array=0-1%2" in scripts[1].read_text()
    # Hydra's state and the launcher: pickled once; each task's pickle holds its point only.
    (shared,) = sweep_dir.glob(".submitit/launcher-*.pkl")
    for entry in record["points"]:
        delayed = pickle_load(Path(entry["submission"]))
        assert isinstance(delayed.function, ArrayTask)
        assert delayed.function.shared == str(shared)
        assert delayed.args[0] == entry["overrides"] and delayed.args[2] == entry["index"]
        assert Path(entry["submission"]).stat().st_size < shared.stat().st_size / 20
    launcher, state = pickle_load(shared)
    assert type(launcher).__name__ == "SlurmSweepLauncher" and state
    # submitit's requeue (on preemption) resubmits the same small call.
    again = delayed.function.checkpoint(*delayed.args)
    assert again.function is delayed.function and again.args == delayed.args


def test_points_needing_other_layouts_than_the_array_are_refused_before_sbatch(
        fake_slurm, data_cache, tmp_path):
    """Two experiments with their own layouts in one sweep: the array's tasks_per_node comes
    from the sweep's base config (tp=1), so the tp=2 points would get 1 rank instead of 2."""
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    for name, tp in (("small", 1), ("wide", 2)):
        (conf / f"{name}.yaml").write_text(
            f"# @package _global_\nparallel:\n  tp: {tp}\nmodel:\n  hidden: {64 * tp}\n")
    out = tmp_path / "runs"
    proc = run_train(data_cache, "-m", f"out={out}", "model=tiny", *SLURM,
                     f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
                     "hydra.launcher.max_array_size=10", "experiment=small,wide",
                     "optim.weight_decay=0.1,0.2", check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "nothing was launched: 2 problem(s)" in proc.stdout
    assert re.search(r"sweep point #2 \([^)]* experiment=wide optim.weight_decay=0.1\): "
                     r"parallel.tp x pp x dp = 2 x 1 x 1 = 2 ranks, but the array's tasks get "
                     r"hydra.launcher.nodes x tasks_per_node = 1 x 1 = 1", proc.stdout)
    assert re.search(r"sweep point #3 \([^)]* experiment=wide optim.weight_decay=0.2\)",
                     proc.stdout)
    assert "launch one `-m` per layout" in proc.stdout
    assert fake_slurm.calls() == []
    assert not list(out.glob(".hydra/*/sweep.json"))


def test_tasks_per_node_set_by_hand_is_checked_against_each_layout(fake_slurm, data_cache,
                                                                  tmp_path):
    # 4 ranks per task: tp=2 runs as tp2 x dp2 (fine); tp=3 does not divide 4 ranks.
    out = tmp_path / "runs"
    proc = run_train(data_cache, "-m", f"out={out}", "model=tiny", *SLURM,
                     "hydra.launcher.max_array_size=10", "hydra.launcher.tasks_per_node=4",
                     "parallel.tp=2", "optim.weight_decay=0.1,0.2", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert len(fake_slurm.calls()) == 1
    proc = run_train(data_cache, "-m", f"out={out}", "model=tiny", *SLURM,
                     "hydra.launcher.max_array_size=10", "hydra.launcher.tasks_per_node=4",
                     "model.heads=6", "model.kv_heads=3", "model.hidden=96", "model.ffn=240",
                     "parallel.tp=3", "optim.weight_decay=0.1,0.2", check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "world size 4 is not a multiple of tp x pp = 3" in proc.stdout
    assert len(fake_slurm.calls()) == 1


def test_plan_refuses_mixed_layouts_too():
    from asymptote.launch.app.plan import plan
    from asymptote.launch.errors import ConfigError

    # (The two points also train one run folder: layouts are not part of a run's identity.)
    with pytest.raises(ConfigError, match=r"sweep point #1 \(model=tiny parallel.tp=2 [^)]*\): "
                                          r"parallel.tp x pp x dp = 2 x 1 x 1 = 2 ranks"):
        plan(["model=tiny", "parallel.tp=1,2", "hydra/launcher=slurm",
              "hydra.launcher.max_array_size=10"], mfu=0.4, peak_flops=989e12)


def test_squeue_and_sacct_name_arrays(monkeypatch):
    calls = []
    monkeypatch.setattr(scheduler, "_run", lambda cmd, timeout=30: calls.append(cmd) or "")
    scheduler.squeue(["5_0", "5_1", "6_3", "7"])
    scheduler.sacct(["5_0", "6"])
    assert calls[0][calls[0].index("-j") + 1] == "5,6,7"
    assert calls[1][calls[1].index("-j") + 1] == "5,6"


def test_status_cli_of_a_submitted_sweep(fake_slurm, data_cache, tmp_path, monkeypatch):
    """`asymptote status` right after a detached submission (squeue/sacct faked): every point
    PENDING, from one squeue call."""
    out = tmp_path / "runs"
    run_train(data_cache, "-m", f"out={out}", "model=tiny", *SLURM,
              "hydra.launcher.max_array_size=10", "optim.weight_decay=0.1,0.2,0.3")
    (job,) = {p["array_job_id"] for p in sweep(out)[1]["points"]}
    monkeypatch.setenv("FAKE_SQUEUE_OUT", "\n".join(f"{job}_{i}|PENDING|Priority"
                                                     for i in range(3)))
    sacct = fake_slurm.dir / "sacct"
    sacct.write_text("#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/sacct_calls\"\n")
    sacct.chmod(0o755)
    status = subprocess.run([str(Path(__file__).resolve().parents[2] / ".venv/bin/asymptote"),
                             "status", str(out)], capture_output=True, text=True, check=True)
    assert "3 points: 3 PENDING" in status.stdout, status.stdout
    assert len((fake_slurm.dir / "sacct_calls").read_text().splitlines()) == 1
