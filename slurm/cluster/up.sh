#!/usr/bin/env bash
# Start asymptote's SLURM test cluster (slurmctld + slurmd + slurmdbd + MariaDB).
#
#   up.sh [--state-dir DIR] [--max-array-size N] [--cpus N] [--port-base P]
#         [--nodes N] [--subnet A.B.C.0/24]
#
# Debian/Ubuntu, as root, no systemd, munge or cgroups needed. Installs the Debian packages
# when they are missing, writes the configs from the *.in templates into DIR/etc, starts
# whatever is not running, and returns once every node is idle and sacct answers. Running it
# again on a running cluster says so and exits 0; asking for different settings than the
# running cluster has is an error (run down.sh first). A stopped cluster restarts with the
# settings recorded in DIR/cluster.env unless options override them.
# --nodes 1 (default): one slurmd on 127.0.0.1. --nodes N > 1: N slurmds named node1..nodeN,
# each in its own network namespace and UTS namespace (own address in --subnet, own hostname),
# joined by a bridge whose address (.1) the controller listens on; see docs/slurm-cluster.md.
# Clients then need: export SLURM_CONF=DIR/etc/slurm.conf
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

explicit_max="" explicit_cpus="" explicit_ports="" explicit_nodes="" explicit_subnet=""
while [ $# -gt 0 ]; do
    case "$1" in
        --state-dir) STATE_DIR="$2"; shift 2 ;;
        --max-array-size) MAX_ARRAY_SIZE="$2"; explicit_max=1; shift 2 ;;
        --cpus) CPUS="$2"; explicit_cpus=1; shift 2 ;;
        --port-base) PORT_BASE="$2"; explicit_ports=1; shift 2 ;;
        --nodes) NODES="$2"; explicit_nodes=1; shift 2 ;;
        --subnet) SUBNET="$2"; explicit_subnet=1; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[[ "$MAX_ARRAY_SIZE" =~ ^[0-9]+$ ]] && [ "$MAX_ARRAY_SIZE" -ge 1 ] || die "--max-array-size must be a positive integer"
[[ "$CPUS" =~ ^[0-9]+$ ]] && [ "$CPUS" -ge 1 ] || die "--cpus must be a positive integer"
[[ "$PORT_BASE" =~ ^[0-9]+$ ]] || die "--port-base must be a port number"
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 1 ] || die "--nodes must be a positive integer (got '$NODES')"
check_subnet
[ "$(id -u)" -eq 0 ] || die "must run as root (the daemons run as SlurmUser=root)"
set_paths
T0=$(date +%s%N)

# ---- already (partly) running? Keep the parameters it was started with. ------------------
running=""
for d in mariadbd slurmdbd slurmctld; do
    if pid_of "$d" >/dev/null; then running="$running $d"; fi
done
# Any slurmd of this state folder (one node: run/slurmd.pid; several: run/slurmd-<node>.pid).
for f in "$RUN"/slurmd.pid "$RUN"/slurmd-*.pid; do
    [ -e "$f" ] || continue
    name="$(basename "$f" .pid)"; name="${name/slurmd-/slurmd:}"
    if pid_of "$name" >/dev/null; then running="$running $name"; fi
done
want_max="$MAX_ARRAY_SIZE" want_cpus="$CPUS" want_ports="$PORT_BASE"
want_nodes="$NODES" want_subnet="$SUBNET"
if [ -z "$running" ]; then
    # A stopped cluster restarts with the settings it last had unless told otherwise.
    if load_params; then
        [ -z "$explicit_max" ] || MAX_ARRAY_SIZE="$want_max"
        [ -z "$explicit_cpus" ] || CPUS="$want_cpus"
        [ -z "$explicit_ports" ] || PORT_BASE="$want_ports"
        [ -z "$explicit_nodes" ] || NODES="$want_nodes"
        [ -z "$explicit_subnet" ] || SUBNET="$want_subnet"
    fi
else
    load_params || die "daemons running ($running) but $PARAMS_FILE is missing; run down.sh"
    conflict=""
    if [ -n "$explicit_max" ] && [ "$want_max" != "$MAX_ARRAY_SIZE" ]; then conflict=1; fi
    if [ -n "$explicit_cpus" ] && [ "$want_cpus" != "$CPUS" ]; then conflict=1; fi
    if [ -n "$explicit_ports" ] && [ "$want_ports" != "$PORT_BASE" ]; then conflict=1; fi
    if [ -n "$explicit_nodes" ] && [ "$want_nodes" != "$NODES" ]; then conflict=1; fi
    if [ -n "$explicit_subnet" ] && [ "$NODES" -gt 1 ] && [ "$want_subnet" != "$SUBNET" ]; then conflict=1; fi
    if [ -n "$conflict" ]; then
        die "cluster in $STATE_DIR runs with $NODES node(s), MaxArraySize=$MAX_ARRAY_SIZE CPUs=$CPUS port base $PORT_BASE$([ "$NODES" -gt 1 ] && echo " subnet $SUBNET"); run down.sh first to change them"
    fi
fi
check_subnet
set_net
want_running=" mariadbd slurmdbd slurmctld $(slurmd_names)"
if [ "$(tr ' ' '\n' <<<"$running" | sort | xargs)" = "$(tr ' ' '\n' <<<"$want_running" | sort | xargs)" ] \
    && scontrol ping 2>/dev/null | grep -q 'is UP'; then
    log "already up: SLURM_CONF=$SLURM_CONF_FILE ($NODES node(s), MaxArraySize=$MAX_ARRAY_SIZE, CPUs=$CPUS)"
    exit 0
fi

CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
# A port taken by something that is not this folder's daemon (e.g. another cluster started
# with the same port base) would make this script talk to the other cluster: refuse first.
for pair in "mariadbd:$DB_PORT" "slurmdbd:$DBD_PORT" "slurmctld:$CTLD_PORT" "slurmd:$SLURMD_PORT"; do
    d="${pair%%:*}" port="${pair##*:}"
    [ "$d" != slurmd ] || [ "$NODES" -eq 1 ] || continue   # several nodes: in their namespaces
    if ! pid_of "$d" >/dev/null && port_busy "$port"; then
        die "port $port ($d) is already in use by another process; choose another --port-base"
    fi
done
[ "$NODES" -eq 1 ] || net_check
CTLD_HOST="$(hostname -s)"
if [ "$NODES" -eq 1 ]; then
    # The single-node cluster, exactly as before multi-node support: everything on 127.0.0.1.
    NODE="$CTLD_HOST" NODE_NAMES="$CTLD_HOST" CTLD_ADDR=127.0.0.1
    SLURMD_PIDFILE="$RUN/slurmd.pid" SLURMD_SPOOL="$STATE_DIR/slurmd" SLURMD_LOG="$LOGS/slurmd.log"
else
    # Several nodes: the controller is reached on the bridge address from every namespace.
    NODE="${NODE_NAMES%% *}"
    SLURMD_PIDFILE="$RUN/slurmd-%n.pid" SLURMD_SPOOL="$STATE_DIR/slurmd/%n"
    SLURMD_LOG="$LOGS/slurmd-%n.log"
fi

mkdir -p "$ETC" "$RUN" "$LOGS" "$STATE_DIR/ctld" "$STATE_DIR/slurmd"
if [ "$NODES" -gt 1 ]; then
    for n in $NODE_NAMES; do mkdir -p "$STATE_DIR/slurmd/$n"; done
fi

# ---- packages -----------------------------------------------------------------------------
missing=""
for bin in slurmctld slurmd slurmdbd sbatch sacct mariadbd mariadb-install-db; do
    command -v "$bin" >/dev/null 2>&1 || missing="$missing $bin"
done
if [ -n "$missing" ]; then
    command -v apt-get >/dev/null || die "missing$missing and no apt-get to install them"
    log "installing Debian packages (missing:$missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Without systemd the packages' postinst cannot start their services; that is expected
    # (the daemons are started below, with our own configs), so only a failed unpack matters.
    apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client slurmdbd mariadb-server >"$LOGS/apt.log" 2>&1 \
        || log "apt-get install reported errors (see $LOGS/apt.log); checking binaries"
    for bin in slurmctld slurmd slurmdbd sbatch sacct mariadbd mariadb-install-db; do
        command -v "$bin" >/dev/null 2>&1 || die "$bin still missing after apt-get install (see $LOGS/apt.log)"
    done
    log "packages installed ($(elapsed) s)"
fi

# ---- configuration --------------------------------------------------------------------------
if [ ! -s "$STATE_DIR/db-password" ]; then
    # Loopback-only database, but still no password shared between state folders.
    (umask 077; od -An -tx1 -N12 /dev/urandom | tr -d ' \n' > "$STATE_DIR/db-password")
fi
DB_PASSWORD="$(cat "$STATE_DIR/db-password")"
# Slurm only checks RealMemory against the machine without config_overrides; advertise 90%.
MEMORY_MB=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)

# The node and partition lines of slurm.conf.
NODE_LINES="$ETC/nodes.conf.tmp"
if [ "$NODES" -eq 1 ]; then
    {
        echo "NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN"
        echo "PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"
    } > "$NODE_LINES"
else
    {
        echo "# One slurmd per node, each inside its own network namespace (see up.sh)."
        echo "# A node whose slurmd stops answering is DOWN after 30 s (default 300 s), so a"
        echo "# simulated node loss ends the job (NODE_FAIL, requeued) quickly."
        echo "SlurmdTimeout=30"
        for n in $NODE_NAMES; do
            echo "NodeName=$n NodeHostname=$n NodeAddr=$(node_addr "$n") CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN"
        done
        echo "PartitionName=$PARTITION Nodes=$NODE_PREFIX[1-$NODES] Default=YES MaxTime=INFINITE State=UP"
    } > "$NODE_LINES"
fi

render() {  # render TEMPLATE OUTPUT MODE
    sed -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@CLUSTER_NAME@|$CLUSTER_NAME|g" \
        -e "s|@CTLD_HOST@|$CTLD_HOST|g" -e "s|@CTLD_ADDR@|$CTLD_ADDR|g" \
        -e "s|@SLURMD_PIDFILE@|$SLURMD_PIDFILE|g" -e "s|@SLURMD_SPOOL@|$SLURMD_SPOOL|g" \
        -e "s|@SLURMD_LOG@|$SLURMD_LOG|g" -e "/^@NODE_LINES@\$/{r $NODE_LINES" -e "d}" \
        -e "s|@NODE@|$NODE|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY_MB@|$MEMORY_MB|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@MAX_ARRAY_SIZE@|$MAX_ARRAY_SIZE|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" \
        -e "s|@DB_PASSWORD@|$DB_PASSWORD|g" "$HERE/$1" > "$2.tmp"
    chmod "$3" "$2.tmp"
    mv "$2.tmp" "$2"
}
render slurm.conf.in "$SLURM_CONF_FILE" 644
render slurmdbd.conf.in "$ETC/slurmdbd.conf" 600
render my.cnf.in "$ETC/my.cnf" 600
rm -f "$NODE_LINES"
cat > "$PARAMS_FILE" <<PARAMS
# Parameters of the cluster in this folder (read by down.sh and asymptote.slurm.cluster).
STATE_DIR=$STATE_DIR
SLURM_CONF=$SLURM_CONF_FILE
MAX_ARRAY_SIZE=$MAX_ARRAY_SIZE
CPUS=$CPUS
PORT_BASE=$PORT_BASE
NODE=$NODE
PARTITION=$PARTITION
CLUSTER_NAME=$CLUSTER_NAME
NODES=$NODES
NODE_NAMES="$NODE_NAMES"
SUBNET=$SUBNET
CTLD_ADDR=$CTLD_ADDR
PARAMS

if [ "$NODES" -gt 1 ]; then
    net_up
    log "network ready: bridge $BRIDGE ($CTLD_ADDR), namespaces $(for n in $NODE_NAMES; do printf '%s ' "$(node_ns "$n")"; done)($(elapsed) s)"
fi

# ---- MariaDB --------------------------------------------------------------------------------
db() { mariadb --no-defaults --protocol=socket -S "$RUN/mysqld.sock" -u root "$@"; }
if ! pid_of mariadbd >/dev/null; then
    if [ ! -d "$STATE_DIR/mysql/mysql" ]; then
        mariadb-install-db --defaults-file="$ETC/my.cnf" --auth-root-authentication-method=socket \
            --skip-test-db >"$LOGS/mariadb-install.log" 2>&1 \
            || { tail -20 "$LOGS/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # setsid: the daemon must not die with the caller's terminal or process group, and must
    # not hold the caller's stdout open (a Python caller reading it would wait forever).
    setsid mariadbd --defaults-file="$ETC/my.cnf" </dev/null >>"$LOGS/mariadb.log" 2>&1 &
fi
wait_for 60 "MariaDB on $RUN/mysqld.sock" db -e 'SELECT 1' \
    || { tail -20 "$LOGS/mariadb.log" >&2; die "MariaDB did not start"; }
db <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
log "MariaDB ready ($(elapsed) s)"

# ---- slurmdbd, slurmctld, slurmd --------------------------------------------------------
# SLURM_CONF is exported by set_paths: slurmdbd finds slurmdbd.conf next to it.
if ! pid_of slurmdbd >/dev/null; then
    setsid slurmdbd </dev/null >>"$LOGS/slurmdbd.out" 2>&1
fi
wait_for 60 "slurmdbd on port $DBD_PORT" sacctmgr -n show cluster \
    || { tail -20 "$LOGS/slurmdbd.log" >&2; die "slurmdbd did not start"; }
log "slurmdbd ready ($(elapsed) s)"

if ! pid_of slurmctld >/dev/null; then
    setsid slurmctld -f "$SLURM_CONF_FILE" </dev/null >>"$LOGS/slurmctld.out" 2>&1
fi
wait_for 60 "slurmctld" sh -c 'scontrol ping | grep -q "is UP"' \
    || { tail -20 "$LOGS/slurmctld.log" >&2; die "slurmctld did not start"; }

if [ "$NODES" -eq 1 ]; then
    if ! pid_of slurmd >/dev/null; then
        setsid slurmd -f "$SLURM_CONF_FILE" -N "$NODE" </dev/null >>"$LOGS/slurmd.out" 2>&1
    fi
else
    for n in $NODE_NAMES; do
        pid_of "slurmd:$n" >/dev/null && continue
        # In the node's network namespace, plus a mount namespace in which the node's own
        # hosts and nsswitch.conf cover /etc's (bind mounts that propagate nowhere) and a UTS
        # namespace whose hostname is the node name: the job's processes see `hostname` = node
        # name and resolve it to the node's own address. (Not `ip netns exec`: it remounts /sys,
        # hiding /sys/fs/cgroup, and slurmd then fails "Unable to initialize cgroup plugin".)
        ns="$(node_ns "$n")"
        setsid nsenter --net="/run/netns/$ns" unshare --mount --uts --propagation slave \
            sh -c 'mount --bind "$3/hosts" /etc/hosts && \
                   mount --bind "$3/nsswitch.conf" /etc/nsswitch.conf && \
                   hostname "$1" && exec slurmd -f "$2" -N "$1"' \
            sh "$n" "$SLURM_CONF_FILE" "/etc/netns/$ns" </dev/null >>"$LOGS/slurmd-$n.out" 2>&1 \
            || { tail -n 5 "$LOGS/slurmd-$n.out" "$LOGS/slurmd-$n.log" >&2 2>/dev/null
                 die "slurmd of $n did not start (logs above)"; }
    done
fi
# The nodes of the partition that are not idle (none once the cluster is ready).
not_idle() { sinfo -h -N -o '%N %T' 2>/dev/null | awk '$2 != "idle" { print $1 }' | sort -u | xargs; }
nodes_idle() { [ "$(sinfo -h -N -o %N 2>/dev/null | sort -u | wc -l)" -eq "$NODES" ] && [ -z "$(not_idle)" ]; }
if ! wait_for 30 "$NODES node(s) to become idle" nodes_idle; then
    # A node left DOWN/DRAIN by an unclean stop keeps that state across restarts.
    for n in $(not_idle); do
        scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true
    done
    wait_for 30 "$NODES node(s) to become idle" nodes_idle \
        || { sinfo -N -l >&2; tail -n 20 "$LOGS"/slurmd*.log >&2; die "node(s) not idle: $(not_idle)"; }
fi
# slurmctld registers the cluster with slurmdbd on its own; sacct fails until it has.
wait_for 60 "sacct to answer" sacct -n -X -S now-1minutes \
    || { tail -20 "$LOGS/slurmctld.log" >&2; die "accounting (sacct) is not available"; }
if [ "$NODES" -eq 1 ]; then
    log "up in $(elapsed) s: node $NODE idle with $CPUS CPUs, MaxArraySize=$MAX_ARRAY_SIZE"
else
    log "up in $(elapsed) s: $NODES nodes ($NODE_PREFIX[1-$NODES] at $(node_addr "$NODE")..$(node_addr "${NODE_NAMES##* }")) idle with $CPUS CPUs each, MaxArraySize=$MAX_ARRAY_SIZE"
fi
log "use it with: export SLURM_CONF=$SLURM_CONF_FILE"
