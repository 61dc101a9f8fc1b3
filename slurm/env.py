"""SLURM task environment -> torch.distributed variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*),
and on a job spanning several nodes, the network interface gloo binds.

Every task of a job computes the same values from SLURM's variables without talking to the
others: the master is the first host of the step's node list (where task 0 runs under SLURM's
block distribution), the port is derived from the job id.

Multi-node pitfalls handled here (both seen on Debian-style hosts, where /etc/hosts maps the
machine's own name to 127.0.1.1):

- MASTER_ADDR must be an address every node can reach. The first host is resolved here; when
  it resolves to nothing or only to a loopback address, the node's ``NodeAddr`` from
  ``scontrol show node`` (the address slurmctld itself uses to reach it) is taken instead.
- gloo binds each rank to the address its own hostname resolves to and silently falls back to
  loopback. If that address is a loopback one on a multi-node job, the other ranks could never
  connect; ``GLOO_SOCKET_IFNAME`` is then set to the interface that routes to the master.
  A ``GLOO_SOCKET_IFNAME`` set by the user is never changed.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import socket
import subprocess
import sys


def expand_hostlist(nodelist: str) -> list[str]:
    """SLURM's compact host list (``node[1-3,7],gpu[08-10]``) as host names, in order.

    The same result as ``scontrol show hostnames`` for the syntax SLURM writes (ranges with
    zero padding, several bracket groups per name as in ``r[1-2]n[1-2]``); used when scontrol
    is not at hand.
    """
    hosts: list[str] = []
    depth, start = 0, 0
    items = []
    for i, ch in enumerate(nodelist):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(nodelist[start:i])
            start = i + 1
    items.append(nodelist[start:])
    for item in (x.strip() for x in items):
        if not item:
            continue
        parts = re.split(r"(\[[^\]]*\])", item)
        choices = []
        for part in parts:
            if part.startswith("[") and part.endswith("]"):
                values = []
                for rng in part[1:-1].split(","):
                    lo, _, hi = rng.partition("-")
                    if not hi:
                        values.append(lo)
                        continue
                    width = len(lo)
                    values.extend(str(n).zfill(width) for n in range(int(lo), int(hi) + 1))
                choices.append(values)
            elif part:
                choices.append([part])
        hosts.extend("".join(c) for c in itertools.product(*choices))
    return hosts


def _first_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, check=True, timeout=30).stdout.split()
        return out[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        hosts = expand_hostlist(nodelist)
        return hosts[0] if hosts else nodelist


def _ipv4_addresses(host: str) -> list[str]:
    """IPv4 addresses of `host` in resolver order ([] when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    out = []
    for info in infos:
        if info[4][0] not in out:
            out.append(info[4][0])
    return out


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _routable(host: str) -> str | None:
    """The first non-loopback IPv4 address `host` resolves to, else None."""
    return next((a for a in _ipv4_addresses(host) if not _is_loopback(a)), None)


def _slurm_node_addr(node: str) -> str | None:
    """``NodeAddr`` of `node` as slurmctld knows it (None when scontrol cannot say)."""
    try:
        out = subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True,
                             text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\bNodeAddr=(\S+)", out)
    return m.group(1) if m else None


def master_address(host: str, multi_node: bool) -> str:
    """What MASTER_ADDR should be for a job whose task 0 runs on `host`.

    A non-loopback IPv4 address of `host` when it has one; on a multi-node job whose first
    host resolves only to loopback (or not at all), the address of its NodeAddr; otherwise the
    name itself (single node: loopback is fine, and the name keeps today's behaviour)."""
    address = _routable(host)
    if address:
        return address
    if multi_node:
        node_addr = _slurm_node_addr(host)
        if node_addr and node_addr != host:
            address = node_addr if _is_ipv4(node_addr) else _routable(node_addr)
            if address and not _is_loopback(address):
                return address
    return host


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def _interface_addresses() -> dict[str, str]:
    """IPv4 address of each interface that has one (Linux ioctl SIOCGIFADDR)."""
    import fcntl
    import struct

    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                req = struct.pack("256s", name.encode()[:15])
                res = fcntl.ioctl(s.fileno(), 0x8915, req)  # SIOCGIFADDR
                out[name] = socket.inet_ntoa(res[20:24])
            except OSError:
                continue
    return out


def interface_towards(address: str) -> str | None:
    """The interface whose address this host uses to reach `address` (None if unknown).

    A connected UDP socket sends nothing; it only asks the kernel's routing table which source
    address would be used."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((address, 9))
            local = s.getsockname()[0]
        names = [n for n, a in _interface_addresses().items() if a == local]
    except OSError:
        return None
    return names[0] if names else None


def gloo_needs_interface() -> bool:
    """True when gloo's default choice (the address this host's name resolves to first, with a
    silent fallback to loopback) would bind loopback."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return True
    return not infos or _is_loopback(infos[0][4][0])


def _num_nodes() -> int:
    for key in ("SLURM_STEP_NUM_NODES", "SLURM_JOB_NUM_NODES", "SLURM_NNODES"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return int(value)
    return 1


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
    multi_node = _num_nodes() > 1
    if "MASTER_ADDR" not in os.environ:
        nodelist = (os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
                    or "127.0.0.1")
        os.environ["MASTER_ADDR"] = master_address(_first_host(nodelist), multi_node)
    os.environ.setdefault("MASTER_PORT", str(20000 + (job * 7 + task) % 20000))
    if multi_node and "GLOO_SOCKET_IFNAME" not in os.environ and gloo_needs_interface():
        iface = interface_towards(os.environ["MASTER_ADDR"]) if _is_ipv4(
            os.environ["MASTER_ADDR"]) else None
        if iface and iface != "lo":
            os.environ["GLOO_SOCKET_IFNAME"] = iface
    if multi_node:
        print(f"[asymptote] rank {os.environ['RANK']}/{os.environ['WORLD_SIZE']} on "
              f"{socket.gethostname()}: MASTER_ADDR={os.environ['MASTER_ADDR']} "
              f"MASTER_PORT={os.environ['MASTER_PORT']}"
              + (f" GLOO_SOCKET_IFNAME={os.environ['GLOO_SOCKET_IFNAME']}"
                 if "GLOO_SOCKET_IFNAME" in os.environ else ""), file=sys.stderr, flush=True)
