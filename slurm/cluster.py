"""The local SLURM test cluster: ``asymptote cluster up|down|status|env``.

A thin Python face on the shell scripts in ``slurm/cluster/`` (``up.sh``, ``down.sh`` and
their config templates), which start slurmctld, slurmd, slurmdbd and a private MariaDB on a
Debian machine as root, with every file under one state folder (default
``/tmp/asymptote-slurm``, or ``$ASYMPTOTE_SLURM_STATE_DIR``). With ``--nodes N`` (N > 1) each
of N nodes is its own network + UTS namespace with its own address and hostname, running its
own slurmd. See ``docs/slurm-cluster.md``.

Tests use :func:`cluster_up`, :func:`cluster_down` and :func:`is_up`; clients of the cluster
only need ``SLURM_CONF`` (:meth:`ClusterInfo.env`). This module imports nothing heavy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The shell scripts and config templates (package data of ``asymptote.slurm``).
SCRIPTS_DIR = Path(__file__).resolve().parent / "cluster"
DEFAULT_STATE_DIR = Path("/tmp/asymptote-slurm")
DAEMONS = ("mariadbd", "slurmdbd", "slurmctld", "slurmd")
DEFAULT_SUBNET = "10.77.0.0/24"


class ClusterError(RuntimeError):
    """up.sh or down.sh failed; the message carries the script's output."""


def default_state_dir() -> Path:
    """``$ASYMPTOTE_SLURM_STATE_DIR`` if set, else ``/tmp/asymptote-slurm`` (as the scripts)."""
    return Path(os.environ.get("ASYMPTOTE_SLURM_STATE_DIR") or DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class ClusterInfo:
    """What a client needs to know about a cluster that up.sh configured."""

    state_dir: Path
    slurm_conf: Path
    max_array_size: int
    cpus: int
    port_base: int
    node: str
    partition: str
    #: True when the call that returned this object started the cluster (it was not up).
    started: bool = False
    #: Number of nodes; 1 is the plain cluster on 127.0.0.1.
    nodes: int = 1
    #: Node names (``node1`` ... on a multi-node cluster; the machine's short hostname on one).
    node_names: tuple[str, ...] = ()
    #: The /24 of a multi-node cluster (controller .1, nodes .2 ...); None on one node.
    subnet: str | None = None

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a SLURM client process: ``base`` (default ``os.environ``) plus
        ``SLURM_CONF``, minus any other ``SLURM_*`` variables.

        Inherited job variables (when the tests themselves run inside a SLURM job) would make
        ``srun``/submitit think they are inside a job of this cluster, so they are dropped.
        """
        env = {k: v for k, v in (os.environ if base is None else base).items()
               if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.slurm_conf)
        return env


def _read_params(state_dir: Path) -> dict[str, str] | None:
    path = state_dir / "cluster.env"
    if not path.is_file():
        return None
    params = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            params[key] = value
    return params


def cluster_info(state_dir: Path | str | None = None, started: bool = False) -> ClusterInfo | None:
    """The parameters up.sh recorded in ``state_dir`` (``None`` if it never configured one)."""
    state_dir = Path(state_dir) if state_dir else default_state_dir()
    p = _read_params(state_dir)
    if p is None:
        return None
    nodes = int(p.get("NODES", "1"))
    return ClusterInfo(
        state_dir=Path(p["STATE_DIR"]), slurm_conf=Path(p["SLURM_CONF"]),
        max_array_size=int(p["MAX_ARRAY_SIZE"]), cpus=int(p["CPUS"]),
        port_base=int(p["PORT_BASE"]), node=p["NODE"], partition=p["PARTITION"],
        started=started, nodes=nodes,
        node_names=tuple(p.get("NODE_NAMES", p["NODE"]).split()),
        subnet=p.get("SUBNET") if nodes > 1 else None,
    )


def slurmd_names(state_dir: Path | str | None = None) -> list[str]:
    """The slurmd entries of :func:`daemon_pids`: ``slurmd`` on a single-node cluster,
    ``slurmd:node1``, ``slurmd:node2`` ... on a multi-node one (as the scripts name them)."""
    info = cluster_info(state_dir)
    if info is None or info.nodes <= 1:
        return ["slurmd"]
    return [f"slurmd:{n}" for n in info.node_names]


def daemon_pids(state_dir: Path | str | None = None) -> dict[str, int | None]:
    """PID of each daemon from its pid file, or ``None`` when that process is not alive.

    Keys: ``mariadbd``, ``slurmdbd``, ``slurmctld`` and :func:`slurmd_names` (one slurmd per
    node). Like the scripts, a PID counts only if ``/proc/<pid>/comm`` names the daemon,
    because a stale pid file's number may belong to an unrelated process by now.
    """
    state = (Path(state_dir) if state_dir else default_state_dir()).resolve()
    run = state / "run"
    out: dict[str, int | None] = {}
    for key in (*DAEMONS[:-1], *slurmd_names(state)):
        name, _, node = key.partition(":")
        if name == "mariadbd":
            pidfile = run / "mysqld.pid"
        else:
            pidfile = run / (f"{name}-{node}.pid" if node else f"{name}.pid")
        pid = None
        try:
            candidate = int(pidfile.read_text().strip())
            comm = Path(f"/proc/{candidate}/comm").read_text().strip()
            stat = Path(f"/proc/{candidate}/stat").read_text()
            alive = stat.rsplit(")", 1)[1].split()[0] != "Z"
            if alive and (comm == name or (name == "mariadbd" and comm == "mysqld")):
                pid = candidate
        except (OSError, ValueError, IndexError):
            pass
        out[key] = pid
    return out


def is_up(state_dir: Path | str | None = None) -> bool:
    """True when every daemon of the cluster in ``state_dir`` (MariaDB, slurmdbd, slurmctld and
    each node's slurmd) runs and slurmctld answers."""
    info = cluster_info(state_dir)
    if info is None or not all(daemon_pids(info.state_dir).values()):
        return False
    if shutil.which("scontrol") is None:
        return False
    proc = subprocess.run(["scontrol", "ping"], env=info.env(), capture_output=True, text=True)
    return proc.returncode == 0 and "is UP" in proc.stdout


def _run_script(name: str, args: list[str], echo: bool, timeout: float) -> str:
    cmd = ["bash", str(SCRIPTS_DIR / name), *args]
    if echo:
        # Let a person see the progress (package installation can take a minute).
        proc = subprocess.run(cmd, timeout=timeout)
        output = ""
    else:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)
        output = proc.stdout
    if proc.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)} failed with exit code {proc.returncode}\n{output}")
    return output


def cluster_up(
    state_dir: Path | str | None = None,
    max_array_size: int | None = None,
    cpus: int | None = None,
    port_base: int | None = None,
    echo: bool = False,
    timeout: float = 900,
    nodes: int | None = None,
    subnet: str | None = None,
) -> ClusterInfo:
    """Bring the cluster up (installing Debian packages if needed) and describe it.

    Options left at ``None`` keep the values recorded in the state folder by an earlier start
    (running or stopped), else take the scripts' defaults (MaxArraySize 4, 8 CPUs, ports from
    16817, 1 node, subnet 10.77.0.0/24 for several nodes). Asking a running cluster for other
    values raises :class:`ClusterError` (bring it down first), as does ``nodes < 1``, before
    anything is started. ``started`` on the result tells whether this call started it, so a
    test fixture stops only what it started.
    """
    if nodes is not None and (isinstance(nodes, bool) or int(nodes) != nodes or nodes < 1):
        raise ClusterError(f"--nodes must be a positive integer (got {nodes!r}); nothing started")
    state = Path(state_dir) if state_dir else default_state_dir()
    was_up = is_up(state)
    args = ["--state-dir", str(state)]
    if nodes is not None:
        args += ["--nodes", str(int(nodes))]
    if subnet is not None:
        args += ["--subnet", str(subnet)]
    if max_array_size is not None:
        args += ["--max-array-size", str(int(max_array_size))]
    if cpus is not None:
        args += ["--cpus", str(int(cpus))]
    if port_base is not None:
        args += ["--port-base", str(int(port_base))]
    _run_script("up.sh", args, echo, timeout)
    info = cluster_info(state, started=not was_up)
    if info is None:
        raise ClusterError(f"up.sh succeeded but wrote no {state / 'cluster.env'}")
    return info


def cluster_down(
    state_dir: Path | str | None = None, purge: bool = False, echo: bool = False,
    timeout: float = 300,
) -> None:
    """Cancel all jobs and stop the cluster's daemons; ``purge`` also deletes its state folder."""
    state = Path(state_dir) if state_dir else default_state_dir()
    _run_script("down.sh", ["--state-dir", str(state)] + (["--purge"] if purge else []),
                echo, timeout)


def node_namespace(info: ClusterInfo, node: str) -> str:
    """The network namespace up.sh made for ``node`` of a multi-node cluster."""
    if info.nodes <= 1 or node not in info.node_names:
        raise ClusterError(f"{node!r} is not a node of the multi-node cluster in {info.state_dir} "
                           f"(nodes: {' '.join(info.node_names)})")
    return f"asy{info.port_base}-{node}"


def fail_node(node: str, state_dir: Path | str | None = None) -> list[int]:
    """Simulate the loss of one node of a multi-node cluster: SIGKILL every process inside its
    namespace (its slurmd, the job steps' slurmstepd and the ranks), as if the machine died.

    slurmctld marks the node DOWN after ``SlurmdTimeout`` (30 s on a multi-node cluster) and
    ends its jobs with NODE_FAIL (requeued, as JobRequeue=1); :func:`cluster_up` brings the
    node back (ReturnToService=2). Returns the PIDs killed.
    """
    info = cluster_info(state_dir)
    if info is None:
        raise ClusterError(f"no cluster configured in {state_dir or default_state_dir()}")
    ns = node_namespace(info, node)
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    if out.returncode != 0:
        raise ClusterError(f"ip netns pids {ns} failed: {out.stderr.strip()}")
    pids = [int(p) for p in out.stdout.split()]
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return pids


# ---------------------------------------------------------------------------------------------
# `asymptote cluster ...`
# ---------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands ``up``, ``down``, ``status`` and ``env`` of ``asymptote cluster``."""
    sub = parser.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    def state_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", type=Path, default=None,
                       help="folder for all cluster state, configs, logs and pid files "
                            f"(default: $ASYMPTOTE_SLURM_STATE_DIR or {DEFAULT_STATE_DIR})")

    up = sub.add_parser("up", help="start the cluster (installs Debian packages if missing)")
    up.add_argument("--max-array-size", type=int, default=None,
                    help="MaxArraySize of the cluster (default: the state folder's last value, "
                         "else 4, small to exercise array chunking)")
    up.add_argument("--cpus", type=int, default=None,
                    help="CPUs the node advertises, whatever the machine has (default: last "
                         "value, else 8)")
    up.add_argument("--port-base", type=int, default=None,
                    help="first of the 4 TCP ports (slurmctld, slurmd, slurmdbd, MariaDB) "
                         "(default: last value, else 16817)")
    up.add_argument("--nodes", type=_positive_int, default=None,
                    help="number of nodes (default: last value, else 1). 1: one slurmd on "
                         "127.0.0.1; N > 1: node1..nodeN, each its own network namespace, "
                         "address and hostname, on a bridge made by the script")
    up.add_argument("--subnet", default=None,
                    help="IPv4 /24 of a multi-node cluster: bridge/controller .1, nodes .2 "
                         f"... (default: last value, else {DEFAULT_SUBNET})")
    state_arg(up)
    down = sub.add_parser("down", help="cancel all jobs and stop the cluster")
    down.add_argument("--purge", action="store_true",
                      help="also delete the state folder (accounting history, logs)")
    state_arg(down)
    status = sub.add_parser("status", help="say whether the cluster runs, and show its node")
    state_arg(status)
    env = sub.add_parser("env", help="print `export SLURM_CONF=...` (use with eval)")
    state_arg(env)


def _status(state_dir: Path | None) -> int:
    info = cluster_info(state_dir)
    state = state_dir or default_state_dir()
    if info is None:
        print(f"down: no cluster configured in {state}")
        return 1
    pids = daemon_pids(info.state_dir)
    up = is_up(info.state_dir)
    print(f"{'up' if up else 'down'}: state {info.state_dir}, SLURM_CONF={info.slurm_conf}")
    if info.nodes > 1:
        print(f"  {info.nodes} nodes {' '.join(info.node_names)} on {info.subnet}, "
              f"{info.cpus} CPUs each, partition {info.partition}, "
              f"MaxArraySize={info.max_array_size}, ports {info.port_base}-{info.port_base + 3}")
    else:
        print(f"  node {info.node}, {info.cpus} CPUs, partition {info.partition}, "
              f"MaxArraySize={info.max_array_size}, ports {info.port_base}-{info.port_base + 3}")
    for name, pid in pids.items():
        print(f"  {name:13s} {'pid ' + str(pid) if pid else 'not running'}")
    if up:
        sinfo = subprocess.run(["sinfo", "-N", "-h", "-o", "%N %T %c"], env=info.env(),
                               capture_output=True, text=True)
        squeue = subprocess.run(["squeue", "-h", "-o", "%A"], env=info.env(),
                                capture_output=True, text=True)
        print(f"  sinfo: {'; '.join(sinfo.stdout.strip().splitlines())}; "
              f"jobs in queue: {len(squeue.stdout.split())}")
    return 0 if up else 1


def run(args: argparse.Namespace) -> int:
    """Run one ``asymptote cluster`` action; returns the process exit code."""
    try:
        if args.cluster_command == "up":
            cluster_up(args.state_dir, args.max_array_size, args.cpus, args.port_base,
                       echo=True, nodes=args.nodes, subnet=args.subnet)
            return 0
        if args.cluster_command == "down":
            cluster_down(args.state_dir, purge=args.purge, echo=True)
            return 0
    except ClusterError as exc:
        # The script already printed its own error lines to the terminal.
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 1
    if args.cluster_command == "status":
        return _status(args.state_dir)
    if args.cluster_command == "env":
        info = cluster_info(args.state_dir)
        if info is None:
            print(f"no cluster configured in {args.state_dir or default_state_dir()}; "
                  "run `asymptote cluster up`", file=sys.stderr)
            return 1
        print(f"export SLURM_CONF={info.slurm_conf}")
        return 0
    raise ValueError(f"unknown action {args.cluster_command!r}")
