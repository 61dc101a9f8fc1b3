"""asymptote.slurm.cluster without a cluster: unknown state folders, CLI errors, no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from asymptote.slurm.cluster import ClusterInfo, cluster_info, daemon_pids, is_up


def test_unconfigured_state_dir_is_down(tmp_path: Path):
    assert cluster_info(tmp_path) is None
    assert not is_up(tmp_path)
    assert set(daemon_pids(tmp_path).values()) == {None}


def test_stale_pid_file_is_not_a_daemon(tmp_path: Path):
    # A pid file naming a live process that is not slurmctld (this test's own python).
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "slurmctld.pid").write_text(f"{os.getpid()}\n")
    assert daemon_pids(tmp_path)["slurmctld"] is None


def test_env_drops_inherited_job_variables(tmp_path: Path):
    info = ClusterInfo(state_dir=tmp_path, slurm_conf=tmp_path / "etc" / "slurm.conf",
                       max_array_size=4, cpus=8, port_base=16817, node="n", partition="p")
    env = info.env({"PATH": "/bin", "SLURM_JOB_ID": "12", "SLURM_CONF": "/elsewhere"})
    assert env == {"PATH": "/bin", "SLURM_CONF": str(tmp_path / "etc" / "slurm.conf")}


def test_cli_without_cluster_and_without_torch(tmp_path: Path):
    code = ("import sys\n"
            "from asymptote.launch.app.cli import main\n"
            f"rc_status = main(['cluster', 'status', '--state-dir', {str(tmp_path)!r}])\n"
            f"rc_env = main(['cluster', 'env', '--state-dir', {str(tmp_path)!r}])\n"
            "assert 'torch' not in sys.modules, 'cluster CLI imported torch'\n"
            "sys.exit(10 * rc_status + rc_env)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 11, proc.stdout + proc.stderr
    assert "no cluster configured" in proc.stdout + proc.stderr
