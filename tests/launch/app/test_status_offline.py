"""How `asymptote status` reads a point from run.json, squeue and sacct (no cluster needed)."""

from __future__ import annotations

import pytest

from asymptote.slurm.scheduler import AccountedTask, LiveTask
from asymptote.launch.app.status import classify

RUNNING = LiveTask("RUNNING", "None", 0)
PENDING = LiveTask("PENDING", "Priority", 0)


@pytest.mark.parametrize(
    "record, live, accounted, expected",
    [
        ({}, PENDING, None, "PENDING"),
        ({"status": "running", "step": 8}, PENDING, AccountedTask("REQUEUED", "0:0", 0),
         "REQUEUED"),  # hard `scontrol requeue`: back in the queue with progress saved
        ({"status": "requeued", "step": 8}, PENDING, None, "REQUEUED"),  # after USR2
        ({"status": "requeued", "step": 8}, RUNNING, None, "REQUEUED"),  # restarting
        ({"status": "running", "step": 3}, RUNNING, None, "RUNNING"),
        ({"status": "done"}, None, AccountedTask("COMPLETED", "0:0", 0), "DONE"),
        ({"status": "done"}, None, None, "DONE"),  # sacct lags squeue: run.json is enough
        ({"status": "failed", "error": "BudgetError: x"}, None,
         AccountedTask("FAILED", "1:0", 0), "FAILED"),
        ({}, None, AccountedTask("CANCELLED", "0:15", 0), "FAILED"),
        ({}, None, AccountedTask("RUNNING", "0:0", 0), "RUNNING"),  # left squeue, sacct behind
        ({"status": "running"}, None, AccountedTask("COMPLETED", "0:0", 0), "FAILED"),
        ({}, None, None, "MISSING"),
    ],
)
def test_classify(record, live, accounted, expected):
    state, detail = classify(record, live, accounted)
    assert state == expected, detail


def test_failed_point_carries_its_error():
    state, detail = classify({"status": "failed", "error": "BudgetError: too few tokens"}, None,
                             None)
    assert (state, detail) == ("FAILED", "BudgetError: too few tokens")


def test_unknown_queue_is_not_read_as_failure():
    state, detail = classify({"status": "running"}, None, None, queue_known=False)
    assert state == "UNKNOWN" and "cannot be asked" in detail


def test_status_of_a_folder_without_sweeps_says_what_to_give(tmp_path, capsys):
    from asymptote.launch.app.cli import main

    assert main(["status", str(tmp_path)]) == 2
    assert "give the `out` folder of a sweep" in capsys.readouterr().out


def test_status_asks_squeue_and_sacct_per_array_not_per_task(tmp_path, monkeypatch):
    """A 1,000-point sweep in two arrays: one squeue and one sacct call, naming the arrays."""
    import json

    from asymptote.launch.app.status import sweep_status
    from asymptote.slurm import scheduler

    sweep_dir = tmp_path / ".hydra" / "2026-01-01_00-00-00-1"
    sweep_dir.mkdir(parents=True)
    points = []
    for i in range(1000):
        array, task = ("700", i) if i < 600 else ("701", i - 600)
        run = tmp_path / f"run{i}"
        if i % 10 == 0:  # some runs have finished
            run.mkdir()
            (run / "run.json").write_text(json.dumps({"status": "done", "step": 4, "steps": 4,
                                                      "final": {"val_loss": 5.0}}))
        points.append({"index": i, "overrides": [f"optim.weight_decay={i}"], "run_dir": str(run),
                       "run_name": run.name, "job": "pretrain",
                       "outputs": {"folder": str(run), "record": str(run / "run.json"),
                                   "files": []},
                       "job_id": f"{array}_{task}", "submission": None, "previous_job_ids": []})
    (sweep_dir / "sweep.json").write_text(json.dumps({"points": points, "arrays": []}))

    calls = []

    def fake_run(cmd, timeout=30):
        calls.append(cmd)
        if cmd[0] == "squeue":  # the second array is still queued
            return "".join(f"701_{t}|PENDING|Priority\n" for t in range(400)) + "99_1|RUNNING|None\n"
        if cmd[0] == "sacct":
            return "".join(f"700_{t}|{'COMPLETED' if t % 10 == 0 else 'FAILED'}|0:0\n"
                           for t in range(600))
        raise AssertionError(cmd)

    monkeypatch.setattr(scheduler, "_run", fake_run)
    rows, notes = sweep_status(tmp_path)
    assert notes == [] and len(rows) == 1000
    assert [c[0] for c in calls] == ["squeue", "sacct"]
    for cmd in calls:
        assert cmd[cmd.index("-j") + 1] == "700,701"  # arrays, not 1,000 task ids
    states = {r.index: r.state for r in rows}
    assert states[0] == states[590] == "DONE" and states[1] == "FAILED"
    assert all(states[i] == "PENDING" for i in range(600, 1000) if i % 10)
    assert all(states[i] == "DONE" for i in range(600, 1000, 10))
