"""SLURM task environment -> torch.distributed variables (RANK, WORLD_SIZE, MASTER_*)."""

from __future__ import annotations

import os
import subprocess


def _first_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, check=True).stdout.split()
        return out[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return nodelist.split(",")[0].split("[")[0]


def export_torch_env() -> None:
    """Under a multi-task SLURM job, set the variables torch.distributed reads. No-op under
    torchrun (RANK already set) or outside SLURM. The port is derived from the job id so every
    task of a job agrees on it without talking."""
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ:
        return
    job = int(os.environ.get("SLURM_ARRAY_JOB_ID", os.environ.get("SLURM_JOB_ID", "0")))
    task = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0"))
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
    os.environ.setdefault("MASTER_ADDR", _first_host(os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")))
    os.environ.setdefault("MASTER_PORT", str(20000 + (job * 7 + task) % 20000))
