"""Several points per array task (`hydra.launcher.points_per_task`) without a cluster: the array
has ceil(n/k) tasks, sweep.json maps each point to its task and position, bad settings are
refused before any sbatch, and a task's points run as child processes (one after another, or
two at once on two "GPUs"), a failing point not stopping the others and done points skipped
when the task runs again. sbatch is the fake of test_scale_offline; the task itself runs for
real here, in a SLURM-like environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_train, train_env


def _scale_offline():
    """test_scale_offline's fake sbatch (its fixture and helpers), loaded by path: test files
    are not importable by name here (--import-mode=importlib)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_scale_offline", Path(__file__).with_name("test_scale_offline.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_fake = _scale_offline()
SLURM, fake_slurm, sweep = _fake.SLURM, _fake.fake_slurm, _fake.sweep

TINY = ["model=tiny", "train.global_batch=8", "train.micro_batch=4", "train.eval_every=0",
        "data.seed_tokens=4096"]


def test_points_are_packed_k_per_task_and_mapped_in_sweep_json(fake_slurm, data_cache,
                                                               tmp_path):
    from submitit.core.utils import pickle_load

    from asymptote.launch.app.packing import PackedTask

    out = tmp_path / "runs"
    proc = run_train(data_cache, "-m", f"out={out}", *TINY, *SLURM,
                     "hydra.launcher.max_array_size=10", "hydra.launcher.points_per_task=2",
                     "optim.weight_decay=0.1,0.2,0.3,0.4,0.5")
    assert "points #0-#4 in 3 tasks of up to 2 points" in proc.stdout
    (call,) = fake_slurm.calls()
    sweep_dir, record = sweep(out)
    (script,) = sweep_dir.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-2%3" in script.read_text()  # ceil(5 / 2) = 3 tasks
    assert record["arrays"] == [{"job_id": "1001", "size": 3, "first_index": 0, "points": 5,
                                 "points_per_task": 2}]
    assert record["executor"]["points_per_task"] == 2
    points = record["points"]
    assert [(p["index"], p["job_id"], p["task_position"]) for p in points] == [
        (0, "1001_0", 0), (1, "1001_0", 1), (2, "1001_1", 0), (3, "1001_1", 1),
        (4, "1001_2", 0)]
    assert len({p["run_dir"] for p in points}) == 5
    # Each task's pickle: the packed call with its own points (their overrides and outputs).
    for task in range(3):
        mine = [p for p in points if p["array_task_id"] == task]
        assert len({p["submission"] for p in mine}) == 1
        delayed = pickle_load(Path(mine[0]["submission"]))
        assert isinstance(delayed.function, PackedTask)
        assert [m["index"] for m in delayed.args[0]] == [p["index"] for p in mine]
        assert [m["overrides"] for m in delayed.args[0]] == [p["overrides"] for p in mine]
        assert [m["outputs"] for m in delayed.args[0]] == [p["outputs"] for p in mine]


def test_max_array_size_counts_tasks_not_points(fake_slurm, data_cache, tmp_path):
    out = tmp_path / "runs"
    run_train(data_cache, "-m", f"out={out}", *TINY, *SLURM, "hydra.launcher.max_array_size=2",
              "hydra.launcher.points_per_task=2", "optim.weight_decay=0.1,0.2,0.3,0.4,0.5")
    _, record = sweep(out)
    assert [(a["size"], a["points"]) for a in record["arrays"]] == [(2, 4), (1, 1)]
    assert [p["job_id"] for p in record["points"]] == ["1001_0", "1001_0", "1001_1", "1001_1",
                                                       "1002"]
    assert len(fake_slurm.calls()) == 2


def test_the_default_records_and_submits_as_before(fake_slurm, data_cache, tmp_path):
    out = tmp_path / "runs"
    run_train(data_cache, "-m", f"out={out}", *TINY, *SLURM, "hydra.launcher.max_array_size=10",
              "optim.weight_decay=0.1,0.2")
    _, record = sweep(out)
    assert "points_per_task" not in record["executor"]
    assert record["arrays"] == [{"job_id": "1001", "size": 2, "first_index": 0}]
    assert all("task_position" not in p for p in record["points"])


@pytest.mark.parametrize("setting, message", [
    (["hydra.launcher.points_per_task=0"], "points_per_task=0: must be an integer of at least 1"),
    (["hydra.launcher.points_per_task=2", "parallel.tp=2"],
     r"sweep point #0 \(.*\): parallel.tp x pp x dp = 2 ranks, but "
     r"hydra.launcher.points_per_task=2 packs points of one rank each"),
])
def test_bad_packing_is_refused_before_sbatch(fake_slurm, data_cache, tmp_path, setting,
                                              message):
    import re

    out = tmp_path / "runs"
    proc = run_train(data_cache, "-m", f"out={out}", *TINY, *SLURM, *setting,
                     "hydra.launcher.max_array_size=10", "optim.weight_decay=0.1,0.2",
                     check=False)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "nothing was launched" in proc.stdout and re.search(message, proc.stdout), \
        proc.stdout[-3000:]
    assert fake_slurm.calls() == []


def test_plan_shows_the_tasks():
    from asymptote.launch.app.plan import format_plan, plan
    from asymptote.launch.errors import ConfigError

    args = ["model=tiny", "optim.weight_decay=0.1,0.2,0.3,0.4,0.5", "hydra/launcher=slurm",
            "hydra.launcher.max_array_size=10"]
    points, launcher, rows = plan(args + ["hydra.launcher.points_per_task=2"], 0.4, 989e12)
    text = format_plan(points, launcher, rows, 0.4, 989e12)
    assert "SLURM: 5 points -> 3 array tasks of up to 2 points, in 1 array(s)" in text
    assert "array 1: points #0-#4 (3 tasks" in text
    with pytest.raises(ConfigError, match="packs points of one rank each"):
        plan(args + ["hydra.launcher.points_per_task=2", "parallel.tp=2"], 0.4, 989e12)


# --- a packed task, run for real (its points train) --------------------------------------------

def _task_env(cache: Path, job: str, visible: str | None) -> dict:
    """What a SLURM array task's process sees (submitit reads its job from these)."""
    env = train_env(cache)
    env = {k: v for k, v in env.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    env.update(SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID=job, SLURM_ARRAY_JOB_ID=job.split("_")[0],
               SLURM_ARRAY_TASK_ID="0", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NTASKS="1",
               SLURM_NODEID="0", SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="localhost")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    return env


RUN_TASK = """
import json, sys, time
from submitit.core.utils import pickle_load
from asymptote.launch.app.packing import PackFailed
delayed = pickle_load(sys.argv[1])
t0 = time.time()
try:
    results = delayed.function(*delayed.args)
    code = 0
except PackFailed as exc:
    results, code = str(exc), 1
print("RESULT " + json.dumps({"results": results, "seconds": time.time() - t0}))
sys.exit(code)
"""


def run_task(cache: Path, submission: str, visible: str | None = None):
    proc = subprocess.run([sys.executable, "-c", RUN_TASK, submission],
                          env=_task_env(cache, "1001_0", visible), capture_output=True,
                          text=True, timeout=600, cwd=REPO)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(line[-1][len("RESULT "):])


def run_json(entry: dict) -> dict:
    return json.loads(Path(entry["outputs"]["record"]).read_text())


@pytest.mark.slow
@pytest.mark.extended
def test_a_packed_task_runs_its_points_a_failure_does_not_stop_the_others(
        fake_slurm, data_cache, tmp_path):
    """Three points in one task, the middle one failing (more seed tokens than the corpus): the task
    runs all three, exits non-zero naming the failed one; run again, it skips the done ones."""
    out = tmp_path / "runs"
    run_train(data_cache, "-m", f"out={out}", *TINY, *SLURM, "hydra.launcher.max_array_size=10",
              "hydra.launcher.points_per_task=3", "data.seed_tokens=4096,1000000000,8192")
    _, record = sweep(out)
    points = record["points"]
    assert len({p["submission"] for p in points}) == 1
    proc, got = run_task(data_cache, points[0]["submission"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "point(s) #1 of this task failed" in got["results"]
    assert [run_json(p)["status"] for p in points] == ["done", "failed", "done"]
    # Run again (as after a requeue): the done points are skipped, the failed one runs again.
    proc, got = run_task(data_cache, points[0]["submission"])
    assert "point #0: already done, skipped" in proc.stdout
    assert "point #2: already done, skipped" in proc.stdout
    assert "point #1: started" in proc.stdout and "point #0: started" not in proc.stdout
    assert [run_json(p).get("restarts", 0) for p in (points[0], points[2])] == [0, 0]


@pytest.mark.slow
@pytest.mark.extended
def test_a_packed_task_runs_one_point_per_gpu_at_once(fake_slurm, data_cache, tmp_path):
    """CUDA_VISIBLE_DEVICES=0,1 (what SLURM sets for a task with two GPUs): the two points run
    at the same time, each seeing one device; on a machine without GPUs they train on CPU
    with the same losses as alone."""
    out = tmp_path / "runs"
    run_train(data_cache, "-m", f"out={out}", *TINY, *SLURM, "hydra.launcher.max_array_size=10",
              "hydra.launcher.points_per_task=2", "optim.weight_decay=0.1,0.2")
    _, record = sweep(out)
    points = record["points"]
    proc, got = run_task(data_cache, points[0]["submission"], visible="0,1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "point #0: started on GPU 0" in proc.stdout
    assert "point #1: started on GPU 1" in proc.stdout
    # Both started before either ended.
    log = proc.stdout
    assert log.index("point #1: started") < min(log.index("point #0: done"),
                                                 log.index("point #1: done"))
    records = [run_json(p) for p in points]
    assert [r["status"] for r in records] == ["done", "done"]
    assert [r["final"] for r in records] == [r["final"] for r in got["results"]]
    # Each point alone, as a plain run: the same final loss.
    for wd, r in zip(("0.1", "0.2"), records):
        alone = tmp_path / f"alone{wd}"
        run_train(data_cache, f"out={alone}", *TINY, f"optim.weight_decay={wd}")
        (rj,) = alone.glob("*/run.json")
        assert json.loads(rj.read_text())["final"]["val_loss"] == pytest.approx(
            r["final"]["val_loss"], rel=1e-6)
    assert os.environ.get("CUDA_VISIBLE_DEVICES") != "0,1"  # the test's own env untouched


def test_resubmit_packs_only_the_failed_points_again(fake_slurm, data_cache, tmp_path,
                                                     monkeypatch):
    """Tasks [#0 #1] [#2 #3] [#4]: #1 failed, #4 never ran, the others are done. The
    resubmission is one new task with #1 and #4 only (squeue and sacct faked)."""
    from submitit.core.utils import pickle_load

    from asymptote.launch.app.packing import PackedTask
    from asymptote.launch.app.resubmit import resubmit_failed

    out = tmp_path / "runs"
    run_train(data_cache, "-m", f"out={out}", *TINY, *SLURM, "hydra.launcher.max_array_size=10",
              "hydra.launcher.points_per_task=2", "optim.weight_decay=0.1,0.2,0.3,0.4,0.5")
    _, record = sweep(out)
    old = record["points"]
    for entry, status in zip(old, ("done", "failed", "done", "done", None)):
        if status:
            path = Path(entry["outputs"]["record"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"status": status, "step": 4, "steps": 4,
                                        "error": "BudgetError: x", "final": {"val_loss": 5.0}}))
    sacct = fake_slurm.dir / "sacct"
    sacct.write_text("#!/bin/sh\nprintf '%s\\n' \"$FAKE_SACCT_OUT\"\n")
    sacct.chmod(0o755)
    monkeypatch.setenv("FAKE_SACCT_OUT", "1001_0|FAILED|1:0\n1001_1|COMPLETED|0:0\n"
                                         "1001_2|CANCELLED|0:15")
    monkeypatch.setenv("FAKE_SQUEUE_OUT", "")
    new = resubmit_failed(out)
    assert new == ["1002"]  # one task: a plain job
    sweep_dir, record = sweep(out)
    points = {p["index"]: p for p in record["points"]}
    assert [(i, points[i]["job_id"], points[i]["task_position"]) for i in (1, 4)] == [
        (1, "1002", 0), (4, "1002", 1)]
    assert points[1]["previous_job_ids"] == ["1001_0"]
    assert points[4]["previous_job_ids"] == ["1001_2"]
    assert all(points[i]["job_id"] == old[i]["job_id"] for i in (0, 2, 3))
    assert record["arrays"][-1] == {"job_id": "1002", "size": 1, "first_index": 1,
                                    "resubmission": True}
    delayed = pickle_load(Path(points[1]["submission"]))
    assert isinstance(delayed.function, PackedTask)
    assert [m["index"] for m in delayed.args[0]] == [1, 4]
    first = pickle_load(Path(old[0]["submission"]))
    assert delayed.function.shared == first.function.shared
