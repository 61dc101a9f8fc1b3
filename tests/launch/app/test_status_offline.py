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
