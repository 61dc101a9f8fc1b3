"""`asymptote resubmit <sweep> --failed`: submit again only the points that failed or never ran.

Each point is resubmitted from its own submitit submission (the pickled launcher call of its
first submission, or of its latest requeue), so it composes exactly the config it had; its run
folder is the same, and the run resumes from its last checkpoint if it saved one. The points
form one new array (several when more than MaxArraySize), recorded in sweep.json with the
previous job ids kept. Points of a packed sweep (`points_per_task` > 1) are packed again, only
the failed ones, into new tasks of up to that many points.
"""

from __future__ import annotations

import argparse
from pathlib import Path


class ResubmitError(RuntimeError):
    """A sweep that cannot be resubmitted (the message says why and what to do)."""


def resubmit_failed(path: str | Path, wait: bool = False) -> list[str]:
    """Resubmit the FAILED and MISSING points of the sweep(s) at `path`; returns new job ids."""
    from submitit.core.utils import pickle_load

    from ...slurm.scheduler import max_array_size
    from .launchers import chunks, make_executor
    from .sweep_record import read_sweeps, write_sweep
    from .status import sweep_status

    rows, notes = sweep_status(path)
    if any("accounting" in n for n in notes):
        raise ResubmitError("SLURM accounting is unavailable, so failed points cannot be told "
                            "from finished ones; start slurmdbd (or resubmit by hand)")
    todo = {r.index for r in rows if r.state in ("FAILED", "MISSING")}
    if not todo:
        print("[asymptote] nothing to resubmit: no point is FAILED or MISSING")
        return []
    new_ids = []
    for sweep_dir, record in read_sweeps(path):
        entries = [e for e in record["points"] if e["index"] in todo and e.get("submission")]
        local = [e for e in record["points"] if e["index"] in todo and not e.get("submission")]
        if local:
            raise ResubmitError(
                f"sweep {sweep_dir} ran with the local launcher; run its points again with "
                f"`asymptote-train <overrides>`, e.g.\n  asymptote-train "
                + " ".join(local[0]["overrides"]))
        if not entries:
            continue
        missing = [e["submission"] for e in entries if not Path(e["submission"]).is_file()]
        if missing:
            raise ResubmitError(f"submission files are gone ({missing[0]}...); launch those "
                                "points again with asymptote-train -m")
        executor = make_executor(record["executor"], record["executor"]["submitit_folder"])
        k = int(record["executor"].get("points_per_task") or 1)
        # One call per new task: a point's own call, or a new pack of failed points only.
        units = [[e] for e in entries] if k == 1 else repack(entries, k)
        for piece in chunks(units, max_array_size()):
            if k == 1:
                calls = [pickle_load(Path(u[0]["submission"])) for u in piece]
                piece = [[u[0]] for u in piece]
            else:
                calls, piece = [call for _, call in piece], [u for u, _ in piece]
            with executor.batch():
                tasks = [executor.submit(d.function, *d.args, **d.kwargs) for d in calls]
            array_id = tasks[0].job_id.split("_")[0]
            record["arrays"].append({"job_id": array_id, "size": len(tasks),
                                     "first_index": piece[0][0]["index"], "resubmission": True})
            # Every point of a task gets the task's job id.
            jobs = [job for unit, job in zip(piece, tasks) for _ in unit]
            piece = [e for unit in piece for e in unit]
            for entry, job in zip(piece, jobs):
                entry["previous_job_ids"] = entry.get("previous_job_ids", []) + [entry["job_id"]]
                entry["job_id"] = job.job_id
                if "_" in job.job_id:
                    entry["array_job_id"], task = job.job_id.split("_", 1)
                    entry["array_task_id"] = int(task)
                else:
                    entry.pop("array_job_id", None)
                    entry.pop("array_task_id", None)
                entry["submission"] = str(job.paths.submitted_pickle)
                if k > 1:
                    entry["task_position"] = entry.pop("_position")
            write_sweep(sweep_dir, record)
            indices = ", ".join(f"#{e['index']}" for e in piece)
            print(f"[asymptote] resubmitted points {indices} as {array_id}", flush=True)
            new_ids += [j.job_id for j in tasks]
            if wait:
                for job in tasks:
                    job.wait()
    return new_ids


def repack(entries: list[dict], k: int) -> list[tuple[list[dict], object]]:
    """The failed points of a packed sweep in new tasks of up to `k`: (their sweep.json
    entries, the task's call), each point's call taken from its task's submission."""
    from submitit.core.utils import pickle_load
    from submitit.helpers import DelayedSubmission

    from .packing import PackedTask, pack

    members, shared = {}, None
    for path in sorted({e["submission"] for e in entries}):
        delayed = pickle_load(Path(path))
        shared = delayed.function.shared
        members.update({m["index"]: m for m in delayed.args[0]})
    units = []
    for unit in pack(entries, k):
        for position, entry in enumerate(unit):
            entry["_position"] = position
        units.append((unit, DelayedSubmission(PackedTask(shared),
                                              [members[e["index"]] for e in unit])))
    return units


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", help="a sweep's `out` folder, or one of its sweep folders")
    parser.add_argument("--failed", action="store_true", required=True,
                        help="resubmit the points that are FAILED or MISSING in `asymptote status`")
    parser.add_argument("--wait", action="store_true",
                        help="block until the resubmitted tasks end (default: return at once)")


def run(args: argparse.Namespace) -> int:
    from .sweep_record import SweepNotFound

    try:
        resubmit_failed(args.sweep, wait=args.wait)
    except (ResubmitError, SweepNotFound) as exc:
        print(f"asymptote resubmit: {exc}")
        return 2
    return 0
