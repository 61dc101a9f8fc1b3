"""Surviving the cluster: a preemption/timeout signal becomes a checkpoint and a requeue, and one
run folder is trained by one job at a time.

SLURM sends USR2 to every task shortly before the time limit (`--signal=USR2@N`) or when the
scheduler preempts the job (`scancel --signal=USR2`). Ranks receive it at different moments,
in the middle of different collectives, so the handler only raises a flag; after each step
the ranks agree on it with one all-reduce, save a checkpoint together, and then rank 0 hands
over to submitit's own handler, which requeues the array task (bounded by
`hydra.launcher.max_num_timeout` for timeouts) and exits. The requeued task builds the same
run folder from its config hash and resumes from that checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path

import torch
import torch.distributed as dist


class Preempted(Exception):
    """Raised through the training loop once the preemption checkpoint is saved."""


class RunBusyError(RuntimeError):
    """Another live process already trains this run folder."""


class PreemptionWatch:
    """Flags USR2 (or `signum`) and lets all ranks agree on it once per step."""

    def __init__(self, signum: int = signal.SIGUSR2):
        self.signum = signum
        self.previous = signal.getsignal(signum)
        # A handler that only noted an earlier signal (a packed task's point, started before
        # its run: launch/app/pack_worker.PendingSignal): stop after the first step.
        self.requested = bool(getattr(self.previous, "seen", False))
        signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.requested = True

    def agreed(self, device: torch.device) -> bool:
        """True on every rank when any rank has seen the signal (a collective: call on all)."""
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def close(self) -> None:
        """Give the signal back to whoever handled it before."""
        signal.signal(self.signum, self.previous)

    def hand_over(self) -> bool:
        """After the checkpoint: let the previous handler act. Under submitit (on every task of
        a SLURM job) that handler requeues the job from global rank 0 and exits the process with
        SystemExit; the other tasks return here. Returns False where nobody would requeue (a
        local run or a plain sbatch script): the run then stops and is resumed by running it
        again."""
        self.close()
        if not callable(self.previous):
            return False
        self.previous(self.signum, None)
        return True


class RunLock:
    """An exclusive lock on a run folder, held while one job trains it.

    Two sweeps that contain the same point (same config hash, same folder) must not write the
    same checkpoints at once; the second one stops with a clear error instead. The lock is an
    flock on `<run>/.lock`, so it dies with its process (SIGKILL, requeue) and never needs to be
    cleaned up."""

    def __init__(self, run_root: Path):
        self.path = Path(run_root) / ".lock"
        self._file = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunBusyError(
                f"{self.path.parent} is being trained by another job ({holder}); two sweeps "
                "contain the same point. Wait for it (`asymptote status`) instead of launching "
                "it twice") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                            "slurm_job": os.environ.get("SLURM_JOB_ID")}))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
