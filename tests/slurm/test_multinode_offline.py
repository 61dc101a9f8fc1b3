"""Multi-node pieces that need no cluster: `--nodes` validation before anything starts, how a
multi-node state folder is read, and slurm/env.py's host list, master address and gloo
interface choices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asymptote.slurm import env as slurm_env
from asymptote.slurm.cluster import (SCRIPTS_DIR, ClusterError, cluster_info, cluster_up,
                                     daemon_pids, slurmd_names)


def test_cli_refuses_zero_nodes_before_anything(tmp_path: Path):
    state = tmp_path / "state"
    proc = subprocess.run([sys.executable, "-m", "asymptote.launch.app.cli", "cluster", "up",
                           "--nodes", "0", "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--nodes: must be at least 1, not 0" in proc.stderr
    assert not state.exists()


def test_cluster_up_refuses_zero_nodes_before_anything(tmp_path: Path):
    state = tmp_path / "state"
    with pytest.raises(ClusterError, match="--nodes must be a positive integer"):
        cluster_up(state, nodes=0)
    assert not state.exists()


@pytest.mark.parametrize("args, message", [
    (["--nodes", "0"], "--nodes must be a positive integer"),
    (["--nodes", "two"], "--nodes must be a positive integer"),
    (["--nodes", "2", "--subnet", "10.77.0.0/16"], "--subnet must look like 10.77.0.0/24"),
    (["--nodes", "251"], "at most 250 nodes"),
])
def test_up_script_refuses_bad_input_before_anything(tmp_path: Path, args, message):
    state = tmp_path / "state"
    proc = subprocess.run(["bash", str(SCRIPTS_DIR / "up.sh"), "--state-dir", str(state), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not state.exists()


def test_multinode_state_folder_is_read(tmp_path: Path):
    (tmp_path / "run").mkdir()
    (tmp_path / "cluster.env").write_text(
        f"STATE_DIR={tmp_path}\nSLURM_CONF={tmp_path}/etc/slurm.conf\nMAX_ARRAY_SIZE=4\nCPUS=8\n"
        "PORT_BASE=16917\nNODE=node1\nPARTITION=debug\nCLUSTER_NAME=asymptote\nNODES=2\n"
        'NODE_NAMES="node1 node2"\nSUBNET=10.77.1.0/24\nCTLD_ADDR=10.77.1.1\n')
    info = cluster_info(tmp_path)
    assert (info.nodes, info.node_names, info.subnet) == (2, ("node1", "node2"), "10.77.1.0/24")
    assert slurmd_names(tmp_path) == ["slurmd:node1", "slurmd:node2"]
    pids = daemon_pids(tmp_path)
    assert list(pids) == ["mariadbd", "slurmdbd", "slurmctld", "slurmd:node1", "slurmd:node2"]
    assert set(pids.values()) == {None}


def test_single_node_state_folder_written_before_multinode_support(tmp_path: Path):
    (tmp_path / "cluster.env").write_text(
        f"STATE_DIR={tmp_path}\nSLURM_CONF={tmp_path}/etc/slurm.conf\nMAX_ARRAY_SIZE=4\nCPUS=8\n"
        "PORT_BASE=16817\nNODE=vm\nPARTITION=debug\nCLUSTER_NAME=asymptote\n")
    info = cluster_info(tmp_path)
    assert (info.nodes, info.node_names, info.subnet) == (1, ("vm",), None)
    assert list(daemon_pids(tmp_path)) == ["mariadbd", "slurmdbd", "slurmctld", "slurmd"]


@pytest.mark.parametrize("nodelist, hosts", [
    ("node1", ["node1"]),
    ("node[1-2]", ["node1", "node2"]),
    ("node[1-3,7],gpu05", ["node1", "node2", "node3", "node7", "gpu05"]),
    ("gpu[08-10]", ["gpu08", "gpu09", "gpu10"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
])
def test_expand_hostlist(nodelist, hosts):
    assert slurm_env.expand_hostlist(nodelist) == hosts


def test_first_host_without_scontrol(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert slurm_env._first_host("node[3-4]") == "node3"


def _slurm_task(monkeypatch, procid: int, nodes: int) -> None:
    # export_torch_env writes os.environ: setenv first so monkeypatch records every key it may
    # set and restores (removes) them afterwards (delenv of an absent key records nothing).
    keys = {k for k in os.environ if k.startswith("SLURM_")} | {
        "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME",
        "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES", "SLURM_ARRAY_JOB_ID",
        "SLURM_ARRAY_TASK_ID"}
    for key in keys:
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLURM_PROCID", str(procid))
    monkeypatch.setenv("SLURM_LOCALID", "0")
    monkeypatch.setenv("SLURM_NTASKS", str(nodes))
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", str(nodes))
    monkeypatch.setenv("SLURM_JOB_NODELIST", f"node[1-{nodes}]" if nodes > 1 else "node1")


def test_multinode_master_is_routable_and_gloo_interface_set(monkeypatch):
    """A Debian-style node: its name resolves to 127.0.1.1 on itself. MASTER_ADDR then comes
    from slurmctld's NodeAddr, and gloo is told the interface that routes to it."""
    _slurm_task(monkeypatch, procid=1, nodes=2)
    monkeypatch.setattr(slurm_env, "_first_host", lambda nodelist: "node1")
    monkeypatch.setattr(slurm_env, "_ipv4_addresses", lambda host: ["127.0.1.1"])
    monkeypatch.setattr(slurm_env, "_slurm_node_addr", lambda node: "10.9.8.7")
    monkeypatch.setattr(slurm_env, "gloo_needs_interface", lambda: True)
    monkeypatch.setattr(slurm_env, "interface_towards", lambda addr: {"10.9.8.7": "ib0"}[addr])
    slurm_env.export_torch_env()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("1", "2", "0")
    assert os.environ["MASTER_ADDR"] == "10.9.8.7"
    assert os.environ["MASTER_PORT"] == str(20000 + 123 * 7 % 20000)
    assert os.environ["GLOO_SOCKET_IFNAME"] == "ib0"


def test_multinode_resolvable_master_and_user_interface_kept(monkeypatch):
    _slurm_task(monkeypatch, procid=0, nodes=2)
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth3")
    monkeypatch.setattr(slurm_env, "_first_host", lambda nodelist: "node1")
    monkeypatch.setattr(slurm_env, "_ipv4_addresses", lambda host: ["10.77.0.2"])
    monkeypatch.setattr(slurm_env, "_slurm_node_addr", lambda node: pytest.fail("not needed"))
    slurm_env.export_torch_env()
    assert os.environ["MASTER_ADDR"] == "10.77.0.2"
    assert os.environ["GLOO_SOCKET_IFNAME"] == "eth3"


def test_single_node_keeps_the_host_name_and_gloo_default(monkeypatch):
    _slurm_task(monkeypatch, procid=0, nodes=1)
    monkeypatch.setattr(slurm_env, "_first_host", lambda nodelist: "vm")
    monkeypatch.setattr(slurm_env, "_ipv4_addresses", lambda host: ["127.0.0.1"])
    slurm_env.export_torch_env()
    assert os.environ["MASTER_ADDR"] == "vm"
    assert "GLOO_SOCKET_IFNAME" not in os.environ


def test_interface_towards_loopback():
    assert slurm_env.interface_towards("127.0.0.1") == "lo"
