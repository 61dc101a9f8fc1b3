"""What the SLURM scheduler says: its limits (scontrol), live jobs (squeue), finished jobs (sacct);
and sbatch, retried with backoff while the controller is busy.

Each query returns None (or raises nothing) when the command is missing or fails, so callers can
say "unknown" instead of guessing. Array tasks are addressed as ``<array job>_<task>``; squeue
and sacct are asked about whole arrays (one call for all the arrays asked about), never task
by task.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

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


def array_of(job_id: str) -> str:
    """The job id squeue and sacct know an array task by: `123_4` -> `123` (a plain job: itself)."""
    return job_id.split("_")[0]


def squeue(job_ids: list[str]) -> dict[str, LiveTask] | None:
    """Live tasks of the given jobs or array tasks, keyed `<array>_<task>` (or the plain id), or
    None when squeue cannot be asked. One squeue call for all their arrays (`-r` lists each
    task of an array), however many tasks they have."""
    if not job_ids:
        return {}
    arrays = sorted({array_of(j) for j in job_ids})
    out = _run(["squeue", "-h", "-r", "-j", ",".join(arrays), "-o", "%i|%T|%r"])
    if out is None:
        # squeue fails for a list of ids that all left the queue on some versions: ask for all.
        out = _run(["squeue", "-h", "-r", "-o", "%i|%T|%r"])
        if out is None:
            return None
    wanted = set(arrays)
    live = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and array_of(parts[0]) in wanted:
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
    accounting is unavailable (sacct missing, or accounting storage disabled). One sacct call
    for all the arrays (task ids are reduced to their array)."""
    if not array_ids:
        return {}
    arrays = sorted({array_of(j) for j in array_ids})
    out = _run(["sacct", "-n", "-P", "-X", "-D", "-j", ",".join(arrays),
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


# ---------------------------------------------------------------------------------------------
# sbatch, retried while the controller is busy
# ---------------------------------------------------------------------------------------------

#: sbatch errors of a controller that is busy, restarting or briefly unreachable: the same
#: submission may succeed when tried again.
TRANSIENT_ERRORS = (
    "socket timed out", "resource temporarily unavailable", "unable to contact slurm controller",
    "connection refused", "connection timed out", "connection reset",
    "transport endpoint is not connected", "slurm_persist_conn", "slurmctld is busy",
    "try again",
)
#: Transient errors after which the controller may nevertheless have accepted the job (the
#: reply was lost): before submitting again, squeue is asked for a job running that script.
MAYBE_SUBMITTED = ("socket timed out", "connection timed out", "connection reset")


class SubmissionError(RuntimeError):
    """sbatch failed: a permanent error, or a transient one on every attempt."""


def is_transient(message: str) -> bool:
    """Whether an sbatch error message is one worth retrying (see TRANSIENT_ERRORS)."""
    text = message.lower()
    return any(e in text for e in TRANSIENT_ERRORS)


@dataclass(frozen=True)
class Backoff:
    """How sbatch is retried: `attempts` tries in all, waiting `first_s`, then x `factor` after
    each failure (at most `max_s`), each wait stretched by up to `jitter` (a fraction) so that
    many submitters do not retry in step."""

    attempts: int = 6
    first_s: float = 2.0
    factor: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.25

    def delays(self, rng: random.Random | None = None) -> list[float]:
        """The waits between the attempts (attempts - 1 of them)."""
        rng = rng or random.Random()
        waits = []
        for i in range(max(0, self.attempts - 1)):
            base = min(self.max_s, self.first_s * self.factor ** i)
            waits.append(base * (1 + self.jitter * rng.random()))
        return waits


def job_running_script(script: str) -> str | None:
    """The id of a queued or running job whose batch script is `script` (how a submission whose
    reply was lost is recognised), or None (none, or squeue cannot be asked)."""
    out = _run(["squeue", "-h", "-o", "%A|%o"], timeout=60)
    if out is None:
        return None
    target = os.path.realpath(script)
    for line in out.splitlines():
        job, _, command = line.strip().partition("|")
        if command and os.path.realpath(command.split()[0]) == target:
            return job
    return None


def sbatch(command: Sequence[str], backoff: Backoff = Backoff(),
           sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None,
           rng: random.Random | None = None) -> str:
    """Run the sbatch `command` (`["sbatch", script]`); return its output (which names the job).

    A transient error (busy controller: "Socket timed out", "Resource temporarily
    unavailable", ...) is retried with exponential backoff; after an error that may hide a
    successful submission, a job already running the same script is adopted instead of
    submitting it twice. Other errors, or the last attempt's, raise SubmissionError."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    waits = backoff.delays(rng)
    script = command[-1]
    for attempt in range(1, backoff.attempts + 1):
        try:
            proc = subprocess.run(list(command), capture_output=True, text=True, timeout=300)
            message = (proc.stderr or proc.stdout).strip()
            failed = proc.returncode != 0
        except subprocess.TimeoutExpired:
            message, failed = "sbatch: socket timed out (no reply in 300 s)", True
        except OSError as exc:
            raise SubmissionError(f"{command[0]} cannot be run: {exc}") from None
        if not failed:
            return proc.stdout
        if not is_transient(message) or attempt == backoff.attempts:
            tried = f" (after {attempt} attempts)" if attempt > 1 else ""
            raise SubmissionError(f"sbatch failed{tried}: {message}")
        if any(m in message.lower() for m in MAYBE_SUBMITTED):
            job = job_running_script(script)
            if job is not None:
                log(f"[asymptote] sbatch: {message}; job {job} already runs this script, "
                    "not submitting it again")
                return f"Submitted batch job {job}\n"
        wait = waits[attempt - 1]
        log(f"[asymptote] sbatch: {message} (attempt {attempt} of {backoff.attempts}); "
            f"retrying in {wait:.1f} s")
        sleep(wait)
    raise AssertionError("unreachable")
