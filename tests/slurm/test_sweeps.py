"""Sweeps that survive the cluster, on the real local cluster (CPU/gloo, tiny runs): MaxArraySize
chunking, `asymptote status`, a failing task repaired by `asymptote resubmit --failed`, and a
run preempted by USR2 and then hard-requeued that still matches an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import only_run, run_train, tb_scalars

pytestmark = [pytest.mark.slurm, pytest.mark.extended]

REPO = Path(__file__).resolve().parents[2]
TINY = ["model=tiny", "train.global_batch=8", "train.micro_batch=4", "train.eval_every=0"]
DETACHED = ["hydra/launcher=slurm", "hydra.launcher.timeout_min=5",
            "hydra.launcher.signal_delay_s=30", "hydra.launcher.detach=true"]


def states(out: Path) -> dict[int, str]:
    from asymptote.launch.app.status import sweep_status

    rows, notes = sweep_status(out)
    assert not notes, notes
    return {r.index: r.state for r in rows}


def wait_until(condition, timeout: float, what: str, poll: float = 0.5):
    """Poll `condition()` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


def sweep_record(out: Path) -> dict:
    (path,) = out.glob(".hydra/*/sweep.json")
    return json.loads(path.read_text())


def test_sweep_larger_than_max_array_size_is_chunked_and_completes(
        slurm_env, data_cache, tmp_path, test_max_array_size):
    assert test_max_array_size == 4
    proc = run_train(data_cache, "-m", f"out={tmp_path}", *TINY, *DETACHED,
                     "data.seed_tokens=8192", "optim.weight_decay=0.1,0.2,0.3,0.4,0.5")
    assert "exceed the cluster's MaxArraySize=4: submitting 2 arrays" in proc.stdout
    record = sweep_record(tmp_path)
    assert [a["size"] for a in record["arrays"]] == [4, 1]
    assert len({a["job_id"] for a in record["arrays"]}) == 2
    assert [p["index"] for p in record["points"]] == [0, 1, 2, 3, 4]
    assert all(p["job_id"] for p in record["points"])
    # Detached: the command returned with tasks still queued or running.
    final = wait_until(lambda: (s := states(tmp_path)) and set(s.values()) == {"DONE"} and s,
                       300, "all 5 points DONE")
    assert sorted(final) == [0, 1, 2, 3, 4]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["runs"]) == sorted(p["run_name"] for p in record["points"])
    status = subprocess.run([str(REPO / ".venv/bin/asymptote"), "status", str(tmp_path)],
                            capture_output=True, text=True, check=True).stdout
    assert "5 points: 5 DONE" in status


def test_failed_task_shows_failed_and_resubmit_repairs_it(slurm_env, data_cache, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    full = (REPO / "data/corpus/drama.jsonl").read_text().splitlines(keepends=True)
    corpus.write_text("".join(full[:3]))  # far too little text: training will raise
    out = tmp_path / "runs"
    run_train(data_cache, "-m", f"out={out}", *TINY, *DETACHED, "data.seed_tokens=8192",
              f"data.corpus=[{corpus}]", "data.vocab_size=512")
    wait_until(lambda: states(out) == {0: "FAILED"}, 240, "the point to be FAILED")
    from asymptote.launch.app.status import sweep_status

    (row,), _ = sweep_status(out)
    assert row.detail.startswith(("BudgetError", "ValueError", "DataError")), row.detail
    old_job = row.job_id

    corpus.write_text("".join(full))  # the data is fixed; the point is resubmitted as it was
    proc = subprocess.run([str(REPO / ".venv/bin/asymptote"), "resubmit", str(out), "--failed"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resubmitted points #0" in proc.stdout
    wait_until(lambda: states(out) == {0: "DONE"}, 300, "the resubmitted point to be DONE")
    entry = sweep_record(out)["points"][0]
    assert entry["previous_job_ids"] == [old_job] and entry["job_id"] != old_job
    record = json.loads((only_run(out) / "run.json").read_text())
    assert record["status"] == "done" and record["final"]["val_loss"] > 0


@pytest.mark.extended
def test_preemption_and_hard_requeue_resume_exactly(slurm_env, data_cache, tmp_path):
    cfg = [*TINY, "data.seed_tokens=98304", "train.ckpt_every=4"]  # 96 steps
    slurm_out, local_out = tmp_path / "slurm", tmp_path / "local"
    run_train(data_cache, "-m", f"out={slurm_out}", *cfg, *DETACHED)
    job = sweep_record(slurm_out)["points"][0]["job_id"]
    run_json = lambda: json.loads((only_run(slurm_out) / "run.json").read_text())  # noqa: E731
    seen = []

    def state():
        s = states(slurm_out)[0]
        if not seen or seen[-1] != s:
            seen.append(s)
        return s

    # 1. Preemption: USR2 to every task -> agreed checkpoint -> submitit requeues the job.
    wait_until(lambda: any(slurm_out.glob("*/run.json")) and run_json().get("step", 0) >= 8,
               240, "step 8")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_until(lambda: state() == "REQUEUED", 60, "REQUEUED after USR2")
    wait_until(lambda: run_json().get("restarts") == 1 and run_json()["status"] == "running",
               180, "the requeued job to restart")
    first_stop = run_json()["resumed_from"]
    assert first_stop >= 8

    # 2. A hard requeue (no signal): the job restarts from its last periodic checkpoint.
    wait_until(lambda: run_json().get("step", 0) >= first_stop + 8, 240, "8 more steps")
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_until(lambda: state() == "REQUEUED", 60, "REQUEUED after scontrol requeue")
    wait_until(lambda: state() == "DONE", 300, "DONE")
    record = run_json()
    assert record["restarts"] == 2 and record["status"] == "done"
    assert seen[-1] == "DONE" and "REQUEUED" in seen

    # 3. Same per-step losses as an uninterrupted run, and no step logged twice.
    run_train(data_cache, f"out={local_out}", *cfg)
    got, want = tb_scalars(only_run(slurm_out), "train/loss"), tb_scalars(only_run(local_out),
                                                                            "train/loss")
    assert [s for s, _ in got] == list(range(1, 97))
    assert [s for s, _ in want] == list(range(1, 97))
    for (step, x), (_, y) in zip(got, want):
        assert abs(x - y) <= 1e-6 * abs(y), f"step {step}: requeued {x} vs uninterrupted {y}"


def test_tokenization_runs_as_an_array_and_equals_the_serial_build(slurm_env, tmp_path):
    import os
    import re

    from asymptote.data.config import DataConfig
    from asymptote.data.prepare import prepare

    env = dict(os.environ, ASYMPTOTE_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [str(REPO / ".venv/bin/asymptote"), "data", "prepare", "model=tiny",
         "hydra/launcher=slurm", "hydra.launcher.timeout_min=5", "--shards", "3"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    array = re.search(r"submitted tokenization array (\d+) \(3 shards\)", proc.stdout).group(1)
    rows = subprocess.run(["sacct", "-n", "-P", "-X", "-j", array, "-o", "JobID,State"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert sorted(rows) == [f"{array}_{i}|COMPLETED" for i in range(3)], rows
    serial = prepare(DataConfig(cache_dir=str(tmp_path / "serial")), 16 * 128 + 1,
                     progress=False)
    (sharded,) = (tmp_path / "cache" / "data").iterdir()
    assert sharded.name == serial.root.name
    for f in serial.root.glob("*.[bi][id][nx]"):
        assert f.read_bytes() == (sharded / f.name).read_bytes(), f.name
