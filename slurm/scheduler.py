"""What the SLURM scheduler says: its limits (scontrol), live jobs (squeue), finished jobs (sacct).

Each query returns None (or raises nothing) when the command is missing or fails, so callers can
say "unknown" instead of guessing. Array tasks are addressed as ``<array job>_<task>``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

#: sacct states after which a job will not run again by itself.
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def _run(cmd: list[str], timeout: float = 30) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def max_array_size() -> int | None:
    """The cluster's MaxArraySize (array indices must be below it), or None if unknown."""
    out = _run(["scontrol", "show", "config"])
    if out is None:
        return None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else None


@dataclass
class LiveTask:
    """A job or array task in squeue."""

    state: str  # PENDING, RUNNING, COMPLETING, ...
    reason: str
    restarts: int


def squeue(job_ids: list[str]) -> dict[str, LiveTask] | None:
    """Live tasks of the given (array) job ids, keyed `<array>_<task>` (or the plain id), or None
    when squeue cannot be asked."""
    if not job_ids:
        return {}
    out = _run(["squeue", "-h", "-r", "-j", ",".join(sorted(set(job_ids))), "-o", "%i|%T|%r"])
    if out is None:
        # squeue fails for a list of ids that all left the queue on some versions: ask for all.
        out = _run(["squeue", "-h", "-r", "-o", "%i|%T|%r"])
        if out is None:
            return None
    live = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            live[parts[0]] = LiveTask(parts[1], parts[2], 0)
    return live


@dataclass
class AccountedTask:
    """The latest sacct record of a job or array task."""

    state: str
    exit_code: str
    restarts: int  # earlier records of the same task (requeues)


def sacct(array_ids: list[str]) -> dict[str, AccountedTask] | None:
    """Accounting records of whole arrays (allocation rows only), keyed `<array>_<task>`; None when
    accounting is unavailable (sacct missing, or accounting storage disabled)."""
    if not array_ids:
        return {}
    out = _run(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(sorted(set(array_ids))),
                "-o", "JobID,State,ExitCode"])
    if out is None:
        return None
    records: dict[str, AccountedTask] = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 3:
            continue
        job_id, state, code = parts[0], parts[1].split()[0], parts[2]
        earlier = records.get(job_id)
        # -D lists every attempt, oldest first: the last one is the current state.
        records[job_id] = AccountedTask(state, code, earlier.restarts + 1 if earlier else 0)
    return records
