#!/usr/bin/env bash
# Start asymptote's single-node SLURM test cluster (slurmctld + slurmd + slurmdbd + MariaDB).
#
#   up.sh [--state-dir DIR] [--max-array-size N] [--cpus N] [--port-base P]
#
# Debian/Ubuntu, as root, no systemd, munge or cgroups needed. Installs the Debian packages
# when they are missing, writes the configs from the *.in templates into DIR/etc, starts
# whatever is not running, and returns once the node is idle and sacct answers. Running it
# again on a running cluster says so and exits 0; asking for a different --max-array-size or
# --cpus than the running cluster has is an error (run down.sh first). A stopped cluster
# restarts with the settings recorded in DIR/cluster.env unless options override them.
# Clients then need: export SLURM_CONF=DIR/etc/slurm.conf
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

explicit_max="" explicit_cpus="" explicit_ports=""
while [ $# -gt 0 ]; do
    case "$1" in
        --state-dir) STATE_DIR="$2"; shift 2 ;;
        --max-array-size) MAX_ARRAY_SIZE="$2"; explicit_max=1; shift 2 ;;
        --cpus) CPUS="$2"; explicit_cpus=1; shift 2 ;;
        --port-base) PORT_BASE="$2"; explicit_ports=1; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[[ "$MAX_ARRAY_SIZE" =~ ^[0-9]+$ ]] && [ "$MAX_ARRAY_SIZE" -ge 1 ] || die "--max-array-size must be a positive integer"
[[ "$CPUS" =~ ^[0-9]+$ ]] && [ "$CPUS" -ge 1 ] || die "--cpus must be a positive integer"
[[ "$PORT_BASE" =~ ^[0-9]+$ ]] || die "--port-base must be a port number"
[ "$(id -u)" -eq 0 ] || die "must run as root (the daemons run as SlurmUser=root)"
set_paths
T0=$(date +%s%N)

# ---- already (partly) running? Keep the parameters it was started with. ------------------
running=""
for d in mariadbd slurmdbd slurmctld slurmd; do
    if pid_of "$d" >/dev/null; then running="$running $d"; fi
done
want_max="$MAX_ARRAY_SIZE" want_cpus="$CPUS" want_ports="$PORT_BASE"
if [ -z "$running" ]; then
    # A stopped cluster restarts with the settings it last had unless told otherwise.
    if load_params; then
        [ -z "$explicit_max" ] || MAX_ARRAY_SIZE="$want_max"
        [ -z "$explicit_cpus" ] || CPUS="$want_cpus"
        [ -z "$explicit_ports" ] || PORT_BASE="$want_ports"
    fi
else
    load_params || die "daemons running ($running) but $PARAMS_FILE is missing; run down.sh"
    conflict=""
    if [ -n "$explicit_max" ] && [ "$want_max" != "$MAX_ARRAY_SIZE" ]; then conflict=1; fi
    if [ -n "$explicit_cpus" ] && [ "$want_cpus" != "$CPUS" ]; then conflict=1; fi
    if [ -n "$explicit_ports" ] && [ "$want_ports" != "$PORT_BASE" ]; then conflict=1; fi
    if [ -n "$conflict" ]; then
        die "cluster in $STATE_DIR runs with MaxArraySize=$MAX_ARRAY_SIZE CPUs=$CPUS port base $PORT_BASE; run down.sh first to change them"
    fi
fi
if [ "$running" = " mariadbd slurmdbd slurmctld slurmd" ] \
    && scontrol ping 2>/dev/null | grep -q 'is UP'; then
    log "already up: SLURM_CONF=$SLURM_CONF_FILE (MaxArraySize=$MAX_ARRAY_SIZE, CPUs=$CPUS)"
    exit 0
fi

CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
NODE="$(hostname -s)"

mkdir -p "$ETC" "$RUN" "$LOGS" "$STATE_DIR/ctld" "$STATE_DIR/slurmd"

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

render() {  # render TEMPLATE OUTPUT MODE
    sed -e "s|@STATE_DIR@|$STATE_DIR|g" -e "s|@CLUSTER_NAME@|$CLUSTER_NAME|g" \
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
PARAMS

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

if ! pid_of slurmd >/dev/null; then
    setsid slurmd -f "$SLURM_CONF_FILE" -N "$NODE" </dev/null >>"$LOGS/slurmd.out" 2>&1
fi
node_idle() { [ "$(sinfo -h -n "$NODE" -o %T 2>/dev/null)" = idle ]; }
if ! wait_for 30 "node $NODE to become idle" node_idle; then
    # A node left DOWN/DRAIN by an unclean stop keeps that state across restarts.
    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    wait_for 30 "node $NODE to become idle" node_idle \
        || { sinfo -N -l >&2; tail -20 "$LOGS/slurmd.log" >&2; die "node $NODE is not idle"; }
fi
# slurmctld registers the cluster with slurmdbd on its own; sacct fails until it has.
wait_for 60 "sacct to answer" sacct -n -X -S now-1minutes \
    || { tail -20 "$LOGS/slurmctld.log" >&2; die "accounting (sacct) is not available"; }
log "up in $(elapsed) s: node $NODE idle with $CPUS CPUs, MaxArraySize=$MAX_ARRAY_SIZE"
log "use it with: export SLURM_CONF=$SLURM_CONF_FILE"
