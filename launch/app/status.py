"""`asymptote status <sweep>`: each point of a sweep as PENDING / RUNNING / DONE / FAILED /
REQUEUED / MISSING, with its last step and loss.

What a point produces comes from its job (`outputs` in sweep.json): a run record (run.json)
or output files. Sources, in this order of trust: the run's own record when it says done (a
task still finishing in squeue has done its work), squeue (what is queued or running now),
run.json otherwise (failed with its error, requeued after a preemption signal), the job's
output files, and sacct (how a job that left the queue ended). sacct lags squeue by seconds,
and may be off entirely; then a point that left no record is reported as UNKNOWN, with a note,
rather than guessed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

STATES = ("PENDING", "RUNNING", "REQUEUED", "DONE", "FAILED", "MISSING", "UNKNOWN")
_LIVE_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"}


@dataclass
class PointStatus:
    """One row of the status table."""

    index: int
    state: str
    run_name: str
    job_id: str | None
    step: int | None
    steps: int | None
    loss: float | None
    detail: str


def _array_of(job_id: str) -> str:
    return job_id.split("_")[0]


def classify(record: dict, live, accounted, queue_known: bool = True) -> tuple[str, str]:
    """(state, detail) of one point from its run.json `record` ({} if none), its squeue entry
    `live` (None if not queued, or if squeue could not be asked: `queue_known` False) and its
    sacct entry `accounted` (None if none or unknown)."""
    status = record.get("status")
    restarts = record.get("restarts") or 0
    if status == "done":  # the run finished its work, even if its task is still leaving squeue
        return "DONE", ""
    if live is not None:
        requeued = status in ("requeued", "stopped") or (accounted and accounted.restarts > 0)
        if live.state == "PENDING":
            # Queued again after the run had started: requeued by a signal, by hand, or by
            # SLURM after a node failure (the run's record may then say failed or running).
            if requeued or record.get("step") or status in ("failed", "running"):
                return "REQUEUED", f"waiting to resume ({live.reason})"
            return "PENDING", live.reason
        if live.state in _LIVE_RUNNING:
            if status in ("requeued", "stopped"):
                return "REQUEUED", "restarting"
            return "RUNNING", f"restarts {restarts}" if restarts else ""
        return live.state, live.reason
    if status == "done":
        return "DONE", ""
    if accounted is not None and (accounted.state == "REQUEUED" or (
            accounted.state in ("PENDING", "RUNNING") and accounted.restarts > 0)):
        # A newer attempt of the task is on record (e.g. after NODE_FAIL) though squeue did not
        # list it: it will run again, whatever the interrupted run wrote.
        return "REQUEUED", f"requeued by SLURM ({accounted.state} per sacct)"
    if status == "failed":
        return "FAILED", record.get("error") or "failed"
    if accounted is not None:
        if accounted.state == "REQUEUED":
            return "REQUEUED", "requeued"
        if accounted.state in ("PENDING", "RUNNING"):  # sacct lagging behind squeue
            return accounted.state, "per sacct"
        if accounted.state == "COMPLETED":
            return "FAILED", "job ended without the run finishing"
        return "FAILED", f"SLURM state {accounted.state} (exit {accounted.exit_code})"
    if status in ("running", "requeued", "stopped"):
        if not queue_known:
            return "UNKNOWN", f"run.json says {status}; the queue cannot be asked"
        return "FAILED", f"not in the queue, run.json says {status}"
    return "MISSING", "never started"


def classify_packed(record: dict, live, accounted, queue_known: bool = True) -> tuple[str, str]:
    """(state, detail) of a point that shares its array task with others
    (`points_per_task` > 1): while the task runs, its points wait, run or end one by one."""
    if live is not None and live.state in _LIVE_RUNNING:
        status = record.get("status")
        if not record:
            return "PENDING", "waiting for earlier points of its task"
        if status == "failed":  # the task goes on with its other points
            return "FAILED", record.get("error") or "failed"
    return classify(record, live, accounted, queue_known)


def _outputs(entry: dict) -> tuple[Path | None, list[Path]]:
    """(run record, output files) of a sweep.json entry; entries written before jobs declared
    their outputs: the run folder's run.json (job=evaluate: none)."""
    out = entry.get("outputs")
    if out is not None:
        return (Path(out["record"]) if out.get("record") else None), [Path(f) for f in out["files"]]
    if entry.get("job") == "evaluate":
        return None, []
    return Path(entry["run_dir"]) / "run.json", []


def _files_state(files: list[Path], live, accounted, queue_known: bool) -> tuple[str, str]:
    """(state, detail) of a point whose job keeps no run record, from its output files."""
    if files and all(f.exists() for f in files):
        return "DONE", "outputs written"
    if live is not None:
        return classify({}, live, accounted, queue_known)
    if accounted is not None:
        if accounted.state in ("PENDING", "RUNNING", "REQUEUED"):
            return classify({}, None, accounted, queue_known)
        if accounted.state == "COMPLETED":
            if not files:  # a job that declares no files: the scheduler is all there is
                return "DONE", "job completed"
            missing = [f.name for f in files if not f.exists()]
            return "FAILED", f"job ended without writing {', '.join(missing)}"
        return "FAILED", f"SLURM state {accounted.state} (exit {accounted.exit_code})"
    return ("UNKNOWN", "the queue cannot be asked") if not queue_known else (
        "MISSING", "never started")


def sweep_status(path: str | Path) -> tuple[list[PointStatus], list[str]]:
    """Status rows of every point of the sweep(s) at `path`, and notes about the sources."""
    from ...slurm import scheduler
    from ..run_dir import RunDir
    from .sweep_record import read_sweeps

    sweeps = read_sweeps(path)
    points: dict[str, dict] = {}  # the latest entry per run folder
    for _, record in sweeps:
        for entry in record["points"]:
            points[entry["run_dir"] + str(entry.get("outputs"))] = entry
    job_ids = [p["job_id"] for p in points.values() if p.get("job_id")]
    notes = []
    live = scheduler.squeue(job_ids) if job_ids else {}
    queue_known = live is not None
    if live is None:
        notes.append("squeue is unavailable: queued and running jobs cannot be seen")
        live = {}
    accounted = scheduler.sacct(sorted({_array_of(j) for j in job_ids})) if job_ids else {}
    if accounted is None:
        notes.append("SLURM accounting (sacct) is unavailable: how jobs that left the queue "
                     "ended is unknown; such points without a run record show UNKNOWN")
    rows = []
    for entry in sorted(points.values(), key=lambda e: e["index"]):
        record_path, files = _outputs(entry)
        record = RunDir(record_path.parent).read() if record_path is not None else {}
        job = entry.get("job_id")
        acc = accounted.get(job) if (job and accounted is not None) else None
        if record_path is None:  # results are files (generate) or live in other runs' folders
            if job:
                state, detail = _files_state(files, live.get(job), acc, queue_known)
            else:  # a local sweep: the files are all there is
                done = files and all(f.exists() for f in files)
                state, detail = ("DONE", "outputs written") if done else ("PENDING", "")
        elif job and accounted is None and not record:
            state, detail = ("PENDING" if job in live else "UNKNOWN"), ""
            if job in live:
                state, detail = classify(record, live[job], None)
        elif not job:  # a local sweep: the run record is all there is
            status = record.get("status")
            state = {"done": "DONE", "failed": "FAILED", "running": "RUNNING",
                     "requeued": "REQUEUED", "stopped": "FAILED"}.get(status, "PENDING")
            detail = record.get("error") or ("stopped by a signal; run again to resume"
                                              if status == "stopped" else "")
        else:
            rule = classify_packed if "task_position" in entry else classify
            state, detail = rule(record, live.get(job), acc, queue_known)
        loss = record.get("final", {}).get("val_loss") if state == "DONE" else None
        if loss is None:
            loss = record.get("train_loss")
        rows.append(PointStatus(entry["index"], state, entry["run_name"], job,
                                record.get("step"), record.get("steps"), loss, detail))
    return rows, notes


def format_table(rows: list[PointStatus]) -> str:
    """The status rows as an aligned text table, with a count per state."""
    header = ("#", "state", "job", "step", "loss", "run", "detail")
    lines = [header]
    for r in rows:
        step = f"{r.step}/{r.steps}" if r.steps else (str(r.step) if r.step is not None else "-")
        loss = f"{r.loss:.4f}" if isinstance(r.loss, (int, float)) else "-"
        lines.append((str(r.index), r.state, r.job_id or "-", step, loss, r.run_name,
                      r.detail[:80]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1]
                     for line in lines)
    counts = {s: sum(r.state == s for r in rows) for s in STATES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"{text}\n{len(rows)} points: {summary}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", help="a sweep's `out` folder, or one of its sweep folders "
                                      "(<out>/.hydra/<time>-<pid>)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from .sweep_record import SweepNotFound

    try:
        rows, notes = sweep_status(args.sweep)
    except SweepNotFound as exc:
        print(f"asymptote status: {exc}")
        return 2
    if args.json:
        print(json.dumps({"points": [asdict(r) for r in rows], "notes": notes}, indent=2))
    else:
        print(format_table(rows))
        for note in notes:
            print(f"note: {note}")
    return 0
