"""Jobs on the real local SLURM cluster: arrays, accounting, MaxArraySize, 2-task torch jobs."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from asymptote.slurm.cluster import ClusterInfo, daemon_pids, is_up

pytestmark = pytest.mark.slurm

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def _run(cmd: list[str], info: ClusterInfo, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=info.env(), capture_output=True, text=True, check=check,
                          timeout=60)


def wait_for_accounting(info: ClusterInfo, job_id: str, n_rows: int, timeout: float = 120
                        ) -> dict[str, str]:
    """Poll sacct until ``n_rows`` allocations of ``job_id`` are in terminal states.

    The controller sends job records to slurmdbd asynchronously: right after squeue forgets a
    job, sacct may still show the array as one row, so waiting on squeue alone is not enough.
    """
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State"], info).stdout
        # "CANCELLED by 0" -> "CANCELLED"
        states = dict((row.split("|")[0], row.split("|")[1].split()[0])
                      for row in out.splitlines() if row.strip())
        if len(states) == n_rows and set(states.values()) <= TERMINAL:
            return states
        time.sleep(0.5)
    raise AssertionError(f"job {job_id}: sacct still shows {states} after {timeout} s")


def test_cluster_is_up(slurm_cluster: ClusterInfo):
    assert is_up(slurm_cluster.state_dir)
    assert all(daemon_pids(slurm_cluster.state_dir).values())
    out = _run(["sinfo", "-h", "-N", "-o", "%N %T %c"], slurm_cluster).stdout.split()
    assert out[0] == slurm_cluster.node
    assert out[1] in ("idle", "mixed", "allocated")
    # The node advertises the configured CPUs, not the machine's (config_overrides).
    assert int(out[2]) == slurm_cluster.cpus


def test_array_job_completes_and_is_accounted(slurm_cluster: ClusterInfo, tmp_path: Path):
    info = slurm_cluster
    script = tmp_path / "task.sh"
    script.write_text("#!/bin/bash\n"
                      f"echo \"$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID\" > {tmp_path}/out_$SLURM_ARRAY_TASK_ID\n")
    job_id = _run(["sbatch", "--parsable", "--array=0-1", "-o", f"{tmp_path}/%A_%a.log",
                   str(script)], info).stdout.strip().split(";")[0]
    assert job_id.isdigit(), job_id
    states = wait_for_accounting(info, job_id, n_rows=2)
    assert states == {f"{job_id}_0": "COMPLETED", f"{job_id}_1": "COMPLETED"}
    for task in (0, 1):
        assert (tmp_path / f"out_{task}").read_text().split() == [job_id, str(task)]


def test_failing_task_is_failed_in_sacct(slurm_cluster: ClusterInfo, tmp_path: Path):
    # The status command will trust sacct: a non-zero exit must not come back as COMPLETED.
    job_id = _run(["sbatch", "--parsable", "--array=0-1", "-o", f"{tmp_path}/%A_%a.log",
                   "--wrap", 'test "$SLURM_ARRAY_TASK_ID" = 0'], slurm_cluster).stdout.strip()
    states = wait_for_accounting(slurm_cluster, job_id, n_rows=2)
    assert states == {f"{job_id}_0": "COMPLETED", f"{job_id}_1": "FAILED"}


def test_max_array_size_is_configured_and_enforced(
    slurm_cluster: ClusterInfo, test_max_array_size: int
):
    info = slurm_cluster
    config = _run(["scontrol", "show", "config"], info).stdout
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    assert m, "MaxArraySize missing from scontrol show config"
    assert int(m.group(1)) == info.max_array_size
    if info.started:  # started by the fixture: the small test limit
        assert info.max_array_size == test_max_array_size
    # Task ids must stay below MaxArraySize: the last allowed one is accepted, the next refused.
    limit = info.max_array_size
    ok = _run(["sbatch", "--parsable", "--hold", f"--array={limit - 1}", "-o", "/dev/null",
               "--wrap", "true"], info, check=False)
    assert ok.returncode == 0, ok.stderr
    _run(["scancel", ok.stdout.strip()], info)
    refused = _run(["sbatch", "--parsable", "--hold", f"--array=0-{limit}", "-o", "/dev/null",
                    "--wrap", "true"], info, check=False)
    assert refused.returncode != 0
    assert "Invalid job array specification" in refused.stderr


def test_submitit_two_task_gloo_all_reduce(slurm_env: ClusterInfo, tmp_path: Path):
    submitit = pytest.importorskip("submitit")

    # Nested, so cloudpickle sends it by value: the job cannot import this test module.
    def all_reduce_rank_plus_one():
        import os

        import torch
        import torch.distributed as dist
        from submitit.helpers import TorchDistributedEnvironment

        env = TorchDistributedEnvironment().export()
        dist.init_process_group(backend="gloo")
        try:
            value = torch.tensor([float(env.rank + 1)])
            dist.all_reduce(value)
            return {"rank": env.rank, "world_size": env.world_size, "sum": value.item(),
                    "master": f"{env.master_addr}:{env.master_port}",
                    "procid": int(os.environ["SLURM_PROCID"])}
        finally:
            dist.destroy_process_group()

    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(nodes=1, tasks_per_node=2, cpus_per_task=1, timeout_min=10,
                               slurm_partition=slurm_env.partition, name="gloo-allreduce")
    job = executor.submit(all_reduce_rank_plus_one)
    # submitit's results() has no time limit; bound the wait so a stuck job fails the test.
    deadline = time.monotonic() + 300
    while not job.done():
        if time.monotonic() > deadline:
            job.cancel()
            pytest.fail(f"job {job.job_id} not done after 300 s: {job.state}")
        time.sleep(1)
    results = job.results()
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert [r["procid"] for r in results] == [r["rank"] for r in results]
    assert all(r["world_size"] == 2 for r in results)
    assert all(r["sum"] == 3.0 for r in results)  # (0 + 1) + (1 + 1)
    assert len({r["master"] for r in results}) == 1
    states = wait_for_accounting(slurm_env, job.job_id, n_rows=1)
    assert states == {job.job_id: "COMPLETED"}
    # One step with 2 tasks (srun inside the batch script), as a 2-rank training run will have.
    steps = _run(["sacct", "-n", "-P", "-j", job.job_id, "-o", "JobID,NTasks,State"],
                 slurm_env).stdout.splitlines()
    assert any(row.split("|")[1:] == ["2", "COMPLETED"] and row.split("|")[0].endswith(".0")
               for row in steps), steps


def test_cli_status_and_env(slurm_cluster: ClusterInfo):
    import sys

    base = [sys.executable, "-m", "asymptote.launch.app.cli", "cluster"]
    state = ["--state-dir", str(slurm_cluster.state_dir)]
    status = subprocess.run(base + ["status"] + state, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("up:")
    assert f"MaxArraySize={slurm_cluster.max_array_size}" in status.stdout
    env = subprocess.run(base + ["env"] + state, capture_output=True, text=True, timeout=60)
    assert env.stdout.strip() == f"export SLURM_CONF={slurm_cluster.slurm_conf}"
