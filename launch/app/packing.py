"""Several sweep points per array task (`hydra.launcher.points_per_task=k`), for sweeps of
small models where one run does not fill a node.

k consecutive points form one array task (`pack`). The task (`PackedTask`, in the submitit
process) starts each of its points as a child process (`pack_worker`): one at a time on CPU, or
at once one per GPU when SLURM gave the task several (`CUDA_VISIBLE_DEVICES` lists them; each
child sees one). A child per point keeps the points apart: Megatron's and torch's process-wide
state, a crash or a leak of one point cannot reach the next, and a failing point does not stop
the others (the task exits non-zero at the end if any failed).

Preemption: USR2 reaches the task and its children (the task forwards it too). Children
checkpoint their point and exit (run.json `requeued`); no new point starts; then the task
hands over to submitit's handler, which requeues it with the same points. On restart, points
whose run.json says done are skipped, interrupted ones resume from their checkpoints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

#: A child's exit status meaning "stopped by the preemption signal after a checkpoint".
PREEMPTED_EXIT = 75
#: What the children must not inherit from the task: their own rendezvous, one rank each.
_RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")


def pack(items: list, k: int) -> list[list]:
    """`items` in consecutive groups of `k` (the last one may be shorter)."""
    return [items[i : i + k] for i in range(0, len(items), k)]


def packing_problems(points: list, k: Any) -> list[str]:
    """Why the sweep's points cannot be packed `k` per task ([] if they can)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        return [f"hydra.launcher.points_per_task={k!r}: must be an integer of at least 1"]
    if k == 1:
        return []
    return [
        f"sweep point #{p.index} ({' '.join(p.overrides) or 'no overrides'}): parallel.tp x pp "
        f"x dp = {p.world} ranks, but hydra.launcher.points_per_task={k} packs points of one "
        "rank each (one process, or one GPU, per point): use points_per_task=1 for multi-rank "
        "runs" for p in points if p.world != 1]


def member(point) -> dict:
    """What a packed task needs of one of its points (pickled with the task)."""
    return {"index": point.index, "overrides": list(point.overrides),
            "outputs": point.outputs.as_dict()}


def finished(m: dict) -> dict | None:
    """The final results of a point that has done its work ({} if it keeps no loss), or None."""
    out = m.get("outputs") or {}
    if out.get("record"):
        path = Path(out["record"])
        try:
            record = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:  # being replaced: not done as far as we can tell
            return None
        return (record.get("final") or {}) if record.get("status") == "done" else None
    files = [Path(f) for f in out.get("files") or []]
    return {} if files and all(f.exists() for f in files) else None


def _declares(m: dict) -> bool:
    out = m.get("outputs") or {}
    return bool(out.get("record") or out.get("files"))


def gpu_slots() -> list[str | None]:
    """The GPUs this task may give its points, one each: CUDA_VISIBLE_DEVICES as SLURM sets it
    for the allocation's GPUs. Unset (no GPUs requested): one slot that changes nothing, so
    points run one after another."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in (visible or "").split(",") if d.strip()]
    return ids or [None]


class PackFailed(RuntimeError):
    """Some points of a packed task failed (the others ran)."""


class _Guard:
    """The task's USR2 handler while its points run: note the signal, pass it on to the running
    children, and requeue through the previous handler (submitit's) once they have stopped."""

    def __init__(self, children: Callable[[], list[subprocess.Popen]]):
        self.children = children
        self.preempted = False
        self.previous = signal.getsignal(signal.SIGUSR2)
        signal.signal(signal.SIGUSR2, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.preempted = True
        self.forward()

    def forward(self) -> None:
        """USR2 to every running child. Repeated while they stop: a child still starting has
        USR2 ignored until its handler is in place (`_start`), and would miss a single one."""
        for child in self.children():
            if child.poll() is None:
                try:
                    child.send_signal(signal.SIGUSR2)
                except ProcessLookupError:
                    pass

    def requeue(self) -> None:
        """Hand over to submitit (requeue and exit); where nobody would requeue, stop."""
        signal.signal(signal.SIGUSR2, self.previous)
        if callable(self.previous):
            self.previous(signal.SIGUSR2, None)
        raise SystemExit(3)

    def close(self) -> None:
        signal.signal(signal.SIGUSR2, self.previous)


def run_pack(members: list[dict], shared: str, slots: list[str | None] | None = None,
             log: Callable[[str], None] | None = None) -> list[dict]:
    """Run the points `members` of one task, each in its own child process, at most one per
    slot at a time. Returns one result per point ({"index", "state", "final"}); raises
    PackFailed naming the failed points after all have run."""
    log = log or (lambda msg: print(f"[asymptote] {msg}", flush=True))
    slots = slots if slots is not None else gpu_slots()
    slots = slots[: max(1, len(members))]
    results = {m["index"]: {"index": m["index"], "state": "pending", "final": None}
               for m in members}
    todo = []
    for m in members:
        final = finished(m)
        if final is not None:
            results[m["index"]].update(state="done", final=final)
            log(f"point #{m['index']}: already done, skipped")
        else:
            todo.append(m)
    running: dict[int, tuple[subprocess.Popen, dict]] = {}  # slot position -> child
    guard = _Guard(lambda: [child for child, _ in running.values()])
    try:
        while todo or running:
            for pos in range(len(slots)):
                if todo and pos not in running and not guard.preempted:
                    m = todo.pop(0)
                    port = _port(exclude={c.args[-1] for c, _ in running.values()})
                    running[pos] = (_start(m, shared, slots[pos], port), m)
                    log(f"point #{m['index']}: started"
                        + (f" on GPU {slots[pos]}" if slots[pos] is not None else ""))
            if guard.preempted:
                todo = []  # nothing new starts; the running points checkpoint and stop
                guard.forward()
            for pos, (child, m) in list(running.items()):
                code = child.poll()
                if code is None:
                    continue
                del running[pos]
                state = {0: "done", PREEMPTED_EXIT: "requeued"}.get(code, "failed")
                if state == "done" and _declares(m) and finished(m) is None:
                    state = "failed"  # exited 0 without finishing (e.g. stopped outside SLURM)
                if state == "requeued":
                    guard.preempted = True
                    if finished(m) is not None:  # the signal came after it had finished
                        state = "done"
                results[m["index"]].update(state=state, final=finished(m))
                log(f"point #{m['index']}: {state}" + (f" (exit {code})" if code else ""))
            if running:
                time.sleep(0.2)
    finally:
        guard.close()
    if guard.preempted:
        log("preempted: the interrupted points checkpointed; requeueing this task")
        guard.requeue()
    failed = [r["index"] for r in results.values() if r["state"] == "failed"]
    if failed:
        raise PackFailed(f"point(s) {', '.join(f'#{i}' for i in failed)} of this task failed "
                         "(see their run.json and the log above); the others ran")
    return list(results.values())


def _port(exclude: set[str]) -> str:
    """A free port for a child's one-rank rendezvous, not one a running sibling was given:
    siblings that each asked the kernel at the same moment could be handed the same port."""
    from .spawn import free_port

    while (port := str(free_port())) in exclude:
        pass
    return port


def _start(m: dict, shared: str, gpu: str | None, port: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in _RENDEZVOUS}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    point = json.dumps({"index": m["index"], "overrides": m["overrides"]})
    # USR2 ignored from fork until the child's own handler: its default action would kill it.
    return subprocess.Popen([sys.executable, "-m", "asymptote.launch.app.pack_worker", shared,
                             point, port], env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN))


class PackedTask:
    """What an array task of a packed sweep runs: its points, from the launcher pickled once per
    sweep (`ArrayTask.write`). Its own pickle holds only the shared pickle's path and its
    points, so submitit's requeue and `asymptote resubmit` resubmit the same call."""

    def __init__(self, shared: str):
        self.shared = str(shared)

    def __call__(self, members: list[dict]) -> list[dict]:
        return run_pack(members, self.shared)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same call (submitit asks on preemption or time-out)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def job_returns(tasks: list[tuple[list, list[dict]]]):
    """Hydra's JobReturn per point, from each task's (points, run_pack results): the points ran
    in child processes, so what is returned is read from their run records."""
    from hydra.core.utils import JobReturn, JobStatus

    returns = []
    for points, results in tasks:
        by_index = {r["index"]: r for r in results}
        for p in points:
            ret = JobReturn(overrides=p.overrides, status=JobStatus.COMPLETED)
            ret.return_value = (by_index.get(p.index, {}).get("final") or {}).get("val_loss")
            returns.append(ret)
    return returns
