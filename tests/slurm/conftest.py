"""A real single-node SLURM cluster (with accounting) for the tests in this folder.

The session fixture brings the cluster up when it is not up yet and brings it down at the end
only if it started it, so a cluster someone started by hand (`asymptote cluster up`) survives
a test run. Tests skip only where the cluster cannot exist at all: not root, or neither the
SLURM binaries nor apt-get (a Debian-like system) to install them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from asymptote.slurm.cluster import ClusterInfo, cluster_down, cluster_up, is_up

#: MaxArraySize the fixture configures when it starts the cluster: small, so array chunking
#: can be exercised with a handful of trivial tasks.
TEST_MAX_ARRAY_SIZE = 4

_BINARIES = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "mariadbd")


def cluster_skip_reason() -> str | None:
    """Why the cluster cannot be started on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (daemons run as SlurmUser=root)"
    if all(shutil.which(b) for b in _BINARIES):
        return None
    if not (Path("/etc/debian_version").exists() and shutil.which("apt-get")):
        return ("SLURM/MariaDB binaries are missing and this is not a Debian-like system with "
                "apt-get to install them")
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> ClusterInfo:
    """The running cluster's :class:`ClusterInfo` (started here if needed, stopped if so)."""
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    # A cluster that is already up keeps its own settings; a fresh one gets the small limit.
    info = cluster_up() if is_up() else cluster_up(max_array_size=TEST_MAX_ARRAY_SIZE)
    yield info
    if info.started:
        cluster_down(info.state_dir)


@pytest.fixture
def test_max_array_size() -> int:
    """The MaxArraySize the session fixture gives a cluster it starts."""
    return TEST_MAX_ARRAY_SIZE


@pytest.fixture
def slurm_env(slurm_cluster: ClusterInfo, monkeypatch: pytest.MonkeyPatch) -> ClusterInfo:
    """Point this process's SLURM clients (sbatch, sacct, submitit) at the test cluster."""
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    # sbatch exports this environment to the jobs; a rendezvous left by an in-process test
    # (models.inference starts a one-rank group) must not reach them.
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.slurm_conf))
    return slurm_cluster


@pytest.fixture
def array_states(slurm_cluster: ClusterInfo):
    """`wait(job, n, timeout=300)`: sacct states of the `n` array tasks of `job` (`<job>_<i>` ->
    state), once none is pending or running."""
    import subprocess
    import time

    def wait(job: str, n: int, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        states = {}
        while time.monotonic() < deadline:
            out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State"],
                                 env=slurm_cluster.env(), capture_output=True, text=True,
                                 timeout=60).stdout
            states = {r.split("|")[0]: r.split("|")[1].split()[0]
                      for r in out.splitlines() if r.strip()}
            if len(states) == n and not {"PENDING", "RUNNING", "COMPLETING"} & set(states.values()):
                return states
            time.sleep(1)
        raise AssertionError(f"job {job}: still {states} after {timeout} s")

    return wait
