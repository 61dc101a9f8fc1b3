"""Runs across several nodes of a real multi-node SLURM cluster on this machine (CPU/gloo, tiny
runs): each node is its own network + UTS namespace with its own address and hostname, running
its own slurmd (`asymptote cluster up --nodes 2`, docs/slurm-cluster.md).

- a TP=2 run with one rank on each of 2 nodes equals the same run on one host, step by step;
- a TP2 x DP2 run over 2 nodes x 2 tasks likewise;
- a 2-node job preempted with `scancel --signal=USR2`: both nodes' ranks checkpoint together,
  the job is requeued (again on 2 nodes) and ends with the losses of an uninterrupted run and
  no TensorBoard step twice;
- a node lost mid-run (every process in its namespace killed, slurmd included): the job ends
  NODE_FAIL, SLURM requeues it, it waits for the node, and once the node is back it resumes
  from the last periodic checkpoint with the same losses.

The module's own cluster lives in its own state folder, ports and subnet, so it runs beside the
single-node cluster of the other tests (the session fixture `slurm_cluster`) without touching
it; a multi-node cluster already running in the default state folder is used as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from asymptote.slurm.cluster import (ClusterInfo, cluster_down, cluster_info, cluster_up,
                                     fail_node, is_up)
from asymptote.slurm.env import expand_hostlist
from conftest import only_run, run_train, tb_scalars

pytestmark = [pytest.mark.slurm, pytest.mark.extended]

#: Where this module's 2-node cluster lives when it has to start one: apart from the
#: single-node cluster (state /tmp/asymptote-slurm, ports 16817-16820).
STATE_DIR = Path("/tmp/asymptote-slurm-2nodes")
PORT_BASE = 16917
SUBNET = "10.77.1.0/24"

TINY = ["model=tiny", "parallel.tp=2", "train.global_batch=8", "train.micro_batch=4",
        "train.eval_every=0"]
ON_TWO_NODES = ["hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.timeout_min=5"]
SEED_TOKENS = "data.seed_tokens=16384"  # 16 steps
LONG = [*TINY, "data.seed_tokens=65536", "train.ckpt_every=4"]  # 64 steps, checkpoint every 4
DETACHED = ["hydra.launcher.signal_delay_s=30", "hydra.launcher.detach=true"]
_BINARIES = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "mariadbd", "ip",
             "nsenter", "unshare")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the multi-node cluster needs root (daemons, network namespaces)"
    missing = [b for b in _BINARIES if not shutil.which(b)]
    if missing and not (Path("/etc/debian_version").exists() and shutil.which("apt-get")
                        and set(missing) <= set(_BINARIES[:6])):
        return f"missing {' '.join(missing)} and no way to install them"
    return None


@pytest.fixture(scope="module")
def multinode_cluster() -> ClusterInfo:
    """A running cluster with at least 2 nodes: the default one if it has them, else this
    module's own (started here, stopped at the end only if started here)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    default = cluster_info()
    if default is not None and default.nodes >= 2 and is_up(default.state_dir):
        yield default
        return
    t0 = time.monotonic()
    info = cluster_up(STATE_DIR, max_array_size=4, port_base=PORT_BASE, nodes=2, subnet=SUBNET)
    print(f"2-node cluster {'started' if info.started else 'already up'} in "
          f"{time.monotonic() - t0:.1f} s")
    yield info
    if info.started:
        cluster_down(info.state_dir)


@pytest.fixture
def multinode_env(multinode_cluster: ClusterInfo, monkeypatch: pytest.MonkeyPatch) -> ClusterInfo:
    """Point this process's SLURM clients (sbatch, sacct, submitit) at the 2-node cluster."""
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                "GLOO_SOCKET_IFNAME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_CONF", str(multinode_cluster.slurm_conf))
    return multinode_cluster


@pytest.fixture(scope="module")
def local_reference(data_cache, tmp_path_factory) -> Path:
    """The 16-step TP=2 run on this host alone (ranks spawned locally), for comparisons."""
    out = tmp_path_factory.mktemp("local-tp2")
    run_train(data_cache, f"out={out}", *TINY, SEED_TOKENS)
    return only_run(out)


@pytest.fixture(scope="module")
def local_reference_64(data_cache, tmp_path_factory) -> Path:
    """The 64-step run (checkpoint every 4) uninterrupted on this host alone."""
    out = tmp_path_factory.mktemp("local-tp2-64")
    run_train(data_cache, f"out={out}", *LONG)
    return only_run(out)


class Watch:
    """The one run of a detached sweep in `out`: its run.json and its `asymptote status`
    state, remembering every state seen."""

    def __init__(self, out: Path):
        self.out, self.seen = out, []

    def run_json(self) -> dict:
        runs = [p for p in self.out.glob("*/run.json")]
        return json.loads(runs[0].read_text()) if runs else {}

    def state(self) -> str:
        from asymptote.launch.app.status import sweep_status

        rows, notes = sweep_status(self.out)
        assert not notes, notes
        s = rows[0].state
        if not self.seen or self.seen[-1] != s:
            self.seen.append(s)
        return s


def sweep_record(out: Path) -> dict:
    (path,) = out.glob(".hydra/*/sweep.json")
    return json.loads(path.read_text())


def sacct(info: ClusterInfo, job: str, *args: str) -> list[list[str]]:
    out = subprocess.run(["sacct", "-n", "-P", "-j", job, *args], env=info.env(),
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [row.split("|") for row in out.splitlines() if row.strip()]


def wait_until(condition, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


def assert_spanned_two_nodes(info: ClusterInfo, job: str, tasks: int) -> None:
    """sacct: the allocation and its training step (srun, `<job>.0`) cover 2 distinct nodes,
    the step with `tasks` tasks."""
    rows = wait_until(
        lambda: (r := sacct(info, job, "-o", "JobID,NodeList,NNodes,NTasks,State"))
        and all(x[4].split()[0] == "COMPLETED" for x in r) and r,
        120, f"job {job} COMPLETED in sacct")
    by_id = {r[0]: r for r in rows}
    alloc = by_id[job]
    assert alloc[2] == "2" and len(set(expand_hostlist(alloc[1]))) == 2, rows
    step = by_id[f"{job}.0"]
    assert step[2] == "2" and step[3] == str(tasks), rows
    assert set(expand_hostlist(step[1])) == set(expand_hostlist(alloc[1])), rows


def rank_hosts(out: Path) -> dict[int, str]:
    """Rank -> hostname as each rank printed it (slurm/env.py: `[asymptote] rank R/W on H`)."""
    hosts = {}
    for log in out.glob(".hydra/*/.submitit/*/*_log.out"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("[asymptote] rank "):
                rank = int(line.split()[2].split("/")[0])
                hosts[rank] = line.split(" on ")[1].split(":")[0]
    return hosts


def assert_same_losses(got: list, want: list, rel: float) -> None:
    assert [s for s, _ in got] == [s for s, _ in want], (got, want)
    for (step, x), (_, y) in zip(got, want):
        assert abs(x - y) <= rel * abs(y), f"step {step}: 2-node {x} vs one host {y}"


def test_tp2_with_one_rank_per_node_matches_one_host(multinode_env, data_cache, tmp_path,
                                                     local_reference):
    out = tmp_path / "slurm"
    run_train(data_cache, "-m", f"out={out}", *TINY, SEED_TOKENS, *ON_TWO_NODES)
    (point,) = sweep_record(out)["points"]
    assert_spanned_two_nodes(multinode_env, point["job_id"], tasks=2)
    hosts = rank_hosts(out)
    assert sorted(hosts) == [0, 1] and len(set(hosts.values())) == 2, hosts
    record = json.loads((only_run(out) / "run.json").read_text())
    assert record["status"] == "done", record
    got = tb_scalars(only_run(out), "train/loss")
    assert [s for s, _ in got] == list(range(1, 17))
    assert_same_losses(got, tb_scalars(local_reference, "train/loss"), 1e-4)


def test_tp2_dp2_over_two_nodes_by_two_tasks_matches_one_host(multinode_env, data_cache,
                                                              tmp_path, local_reference):
    out = tmp_path / "slurm"
    run_train(data_cache, "-m", f"out={out}", *TINY, "parallel.dp=2", SEED_TOKENS,
              *ON_TWO_NODES)
    (point,) = sweep_record(out)["points"]
    assert_spanned_two_nodes(multinode_env, point["job_id"], tasks=4)
    hosts = rank_hosts(out)
    assert sorted(hosts) == [0, 1, 2, 3] and len(set(hosts.values())) == 2, hosts
    # The same run (same data order and weights) as the TP=2 run on one host: DP only splits
    # each global batch of 8 over 2 replicas instead of 2 micro-batches of one.
    assert_same_losses(tb_scalars(only_run(out), "train/loss"),
                       tb_scalars(local_reference, "train/loss"), 1e-4)


def test_usr2_on_a_two_node_job_checkpoints_requeues_and_resumes_exactly(
        multinode_env, data_cache, tmp_path, local_reference_64):
    slurm_out = tmp_path / "slurm"
    run_train(data_cache, "-m", f"out={slurm_out}", *LONG, *ON_TWO_NODES, *DETACHED)
    job = sweep_record(slurm_out)["points"][0]["job_id"]
    watch = Watch(slurm_out)
    run_json, state, seen = watch.run_json, watch.state, watch.seen

    wait_until(lambda: run_json().get("step", 0) >= 8, 300, "step 8")
    subprocess.run(["scancel", "--signal=USR2", job], env=multinode_env.env(), check=True)
    wait_until(lambda: state() == "REQUEUED", 90, "REQUEUED after USR2")
    wait_until(lambda: run_json().get("restarts") == 1 and run_json()["status"] == "running",
               180, "the requeued job to restart")
    stop = run_json()["resumed_from"]
    assert 8 <= stop < 64
    # Both ranks (one per node) wrote their shard of the preemption checkpoint.
    ckpt = next(p for p in (only_run(slurm_out) / "checkpoints").iterdir()
                if p.name.endswith(f"{stop:08d}"))
    assert len(list(ckpt.glob("__*_0.distcp"))) == 2, sorted(p.name for p in ckpt.iterdir())
    wait_until(lambda: state() == "DONE", 300, "DONE")
    record = run_json()
    assert record["restarts"] == 1 and record["status"] == "done"
    assert "REQUEUED" in seen and seen[-1] == "DONE", seen

    # Both attempts ran on 2 nodes (sacct -D keeps the requeued attempt as its own row).
    attempts = wait_until(
        lambda: (r := sacct(multinode_env, job, "-D", "-X", "-o", "JobID,NNodes,State"))
        and r[-1][2].split()[0] == "COMPLETED" and r, 120, "the final attempt in sacct")
    assert len(attempts) >= 2 and {a[1] for a in attempts} == {"2"}, attempts
    assert attempts[0][2].split()[0] == "REQUEUED", attempts

    got = tb_scalars(only_run(slurm_out), "train/loss")
    assert [s for s, _ in got] == list(range(1, 65)), "a TensorBoard step is missing or twice"
    assert_same_losses(got, tb_scalars(local_reference_64, "train/loss"), 1e-6)


def test_node_lost_mid_run_is_requeued_and_resumes_from_the_last_checkpoint(
        multinode_env, data_cache, tmp_path, local_reference_64):
    info = multinode_env
    slurm_out = tmp_path / "slurm"
    run_train(data_cache, "-m", f"out={slurm_out}", *LONG, *ON_TWO_NODES, *DETACHED)
    job = sweep_record(slurm_out)["points"][0]["job_id"]
    watch = Watch(slurm_out)
    lost = info.node_names[-1]
    try:
        wait_until(lambda: watch.run_json().get("step", 0) >= 10, 300, "step 10")
        killed = fail_node(lost, info.state_dir)
        assert killed, f"no process in {lost}'s namespace"
        # slurmctld notices after SlurmdTimeout (30 s): node DOWN, job NODE_FAIL and requeued.
        node_state = lambda: subprocess.run(  # noqa: E731
            ["sinfo", "-h", "-n", lost, "-o", "%T"], env=info.env(), capture_output=True,
            text=True, timeout=60).stdout.strip()
        wait_until(lambda: node_state().startswith("down"), 120, f"{lost} DOWN", poll=1)
        wait_until(lambda: (r := sacct(info, job, "-D", "-X", "-o", "JobID,State"))
                   and r[0][1].split()[0] == "NODE_FAIL" and r, 120, "NODE_FAIL in sacct")
        assert watch.state() != "DONE"
    finally:
        cluster_up(info.state_dir)  # the node comes back (its slurmd restarted)
    wait_until(lambda: watch.state() == "DONE", 300, "DONE after the node came back")
    record = watch.run_json()
    assert record["status"] == "done" and record["restarts"] == 1, record
    # Resumed from a periodic checkpoint (every 4 steps), not from the start.
    assert record["resumed_from"] >= 4 and record["resumed_from"] % 4 == 0, record
    attempts = wait_until(
        lambda: (r := sacct(info, job, "-D", "-X", "-o", "JobID,NNodes,State"))
        and r[-1][2].split()[0] == "COMPLETED" and r, 120, "the final attempt in sacct")
    assert [a[2].split()[0] for a in attempts] == ["NODE_FAIL", "COMPLETED"], attempts
    assert {a[1] for a in attempts} == {"2"}, attempts
    got = tb_scalars(only_run(slurm_out), "train/loss")
    assert [s for s, _ in got] == list(range(1, 65)), "a TensorBoard step is missing or twice"
    assert_same_losses(got, tb_scalars(local_reference_64, "train/loss"), 1e-6)
