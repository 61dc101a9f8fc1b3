"""`asymptote status` rules (no cluster): a task SLURM requeued after a node failure is REQUEUED,
not FAILED, whatever its interrupted run wrote; and the points of a packed array task
(`points_per_task` > 1) each have their own state while the task runs."""

from __future__ import annotations

import pytest

from asymptote.launch.app.status import classify, classify_packed
from asymptote.slurm.scheduler import AccountedTask, LiveTask

RUNNING = LiveTask("RUNNING", "None", 0)
DOWN = LiveTask("PENDING", "Nodes required for job are DOWN, DRAINED or reserved", 0)
#: sacct -D during the outage: the NODE_FAIL attempt, then the requeued one.
REQUEUED_AFTER_NODE_FAIL = AccountedTask("PENDING", "0:0", 1)


@pytest.mark.parametrize("record, live, accounted", [
    # The surviving rank failed in its collective (run.json failed, no step saved yet); the
    # task waits in the queue for the node.
    ({"status": "failed", "error": "RuntimeError: gloo connection closed"}, DOWN, None),
    ({"status": "failed", "error": "RuntimeError: gloo"}, DOWN, AccountedTask("NODE_FAIL",
                                                                           "0:0", 0)),
    # The whole node died: run.json still says running.
    ({"status": "running", "step": 0}, DOWN, None),
    # squeue did not list it, sacct has the requeued attempt.
    ({"status": "failed", "error": "RuntimeError: gloo"}, None, REQUEUED_AFTER_NODE_FAIL),
    ({"status": "running", "step": 8}, None, REQUEUED_AFTER_NODE_FAIL),
    ({"status": "failed"}, None, AccountedTask("REQUEUED", "0:0", 0)),
])
def test_a_task_requeued_after_a_node_failure_is_requeued(record, live, accounted):
    state, detail = classify(record, live, accounted)
    assert state == "REQUEUED", detail


def test_a_node_failure_that_was_not_requeued_is_failed():
    state, detail = classify({"status": "running", "step": 8}, None,
                             AccountedTask("NODE_FAIL", "0:0", 0))
    assert state == "FAILED" and "NODE_FAIL" in detail
    state, _ = classify({"status": "failed", "error": "x"}, None,
                        AccountedTask("FAILED", "1:0", 0))
    assert state == "FAILED"


def test_a_fresh_task_in_the_queue_is_still_pending():
    assert classify({}, DOWN, None)[0] == "PENDING"


@pytest.mark.parametrize("record, live, accounted, expected", [
    ({}, RUNNING, None, "PENDING"),  # behind the earlier points of its task
    ({"status": "running", "step": 3}, RUNNING, None, "RUNNING"),
    ({"status": "done"}, RUNNING, None, "DONE"),
    ({"status": "failed", "error": "BudgetError: x"}, RUNNING, None, "FAILED"),  # task goes on
    ({"status": "requeued", "step": 8}, LiveTask("PENDING", "BeginTime", 0), None, "REQUEUED"),
    ({}, None, AccountedTask("FAILED", "1:0", 0), "FAILED"),  # its task ended without it
    ({}, LiveTask("PENDING", "Priority", 0), None, "PENDING"),
])
def test_points_of_a_packed_task(record, live, accounted, expected):
    state, detail = classify_packed(record, live, accounted)
    assert state == expected, detail
