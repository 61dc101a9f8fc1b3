# Shared by up.sh and down.sh (sourced, not run): defaults, paths and small helpers.
# Every knob has an environment variable so the Python wrapper and CI can set it once.

STATE_DIR="${ASYMPTOTE_SLURM_STATE_DIR:-/tmp/asymptote-slurm}"
MAX_ARRAY_SIZE="${ASYMPTOTE_SLURM_MAX_ARRAY_SIZE:-4}"
CPUS="${ASYMPTOTE_SLURM_CPUS:-8}"
PORT_BASE="${ASYMPTOTE_SLURM_PORT_BASE:-16817}"
# Nodes: 1 is the plain single-node cluster on 127.0.0.1; N > 1 gives every node its own network
# namespace, address (SUBNET .2, .3, ...) and hostname, joined by a bridge holding SUBNET .1.
NODES="${ASYMPTOTE_SLURM_NODES:-1}"
SUBNET="${ASYMPTOTE_SLURM_SUBNET:-10.77.0.0/24}"
NODE_PREFIX="node"
CLUSTER_NAME="asymptote"
PARTITION="debug"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[asymptote-slurm] %s\n' "$*"; }
die() { printf '[asymptote-slurm] error: %s\n' "$*" >&2; exit 1; }

# Paths derived from STATE_DIR (call again after STATE_DIR changes).
set_paths() {
    STATE_DIR="$(realpath -m "$STATE_DIR")"
    ETC="$STATE_DIR/etc"
    RUN="$STATE_DIR/run"
    LOGS="$STATE_DIR/log"
    SLURM_CONF_FILE="$ETC/slurm.conf"
    PARAMS_FILE="$STATE_DIR/cluster.env"
    export SLURM_CONF="$SLURM_CONF_FILE"
}

# ---- several nodes --------------------------------------------------------------------------
# set_net: names and addresses of a multi-node cluster from NODES, SUBNET and PORT_BASE.
# Network objects are named after the port base (two clusters that run at once must differ in
# it anyway), so two clusters never touch each other's bridge, veths or namespaces:
#   bridge asy<P>br (holds SUBNET .1, the controller side), host-side veth asy<P>v<i>,
#   namespace asy<P>-node<i> whose side of the pair is called eth0 and holds SUBNET .<i+1>.
set_net() {
    NET_TAG="asy$PORT_BASE"
    BRIDGE="${NET_TAG}br"
    NET24="${SUBNET%.*}"            # 10.77.0.0/24 -> 10.77.0
    CTLD_ADDR="$NET24.1"
    NODE_NAMES=""
    local i
    for i in $(seq 1 "$NODES"); do NODE_NAMES="$NODE_NAMES $NODE_PREFIX$i"; done
    NODE_NAMES="${NODE_NAMES# }"
}
node_index() { echo "${1#"$NODE_PREFIX"}"; }          # node7 -> 7
node_ns() { echo "$NET_TAG-$1"; }                       # node7 -> asy16817-node7
node_addr() { echo "$NET24.$(( $(node_index "$1") + 1 ))"; }   # node7 -> 10.77.0.8

# check_subnet: SUBNET must be an IPv4 /24 with room for NODES nodes (.2 .. .NODES+1).
check_subnet() {
    [[ "$SUBNET" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.0/24$ ]] \
        || die "--subnet must look like 10.77.0.0/24 (an IPv4 /24), not '$SUBNET'"
    local o
    for o in "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}"; do
        [ "$o" -le 255 ] || die "--subnet $SUBNET: octet $o is larger than 255"
    done
    [ "$NODES" -le 250 ] || die "--nodes $NODES: at most 250 nodes fit in one /24"
}

# pid_of NAME: print the PID in NAME's pid file if that process is alive AND is NAME.
# A pid file can outlive its daemon and its number be reused by an unrelated process,
# so the executable name is checked too (mariadbd may show up as mysqld on older builds).
# NAME is a daemon, or slurmd:NODE for the slurmd of one node of a multi-node cluster.
pid_of() {
    local name="$1" file pid comm
    case "$name" in
        mariadbd) file="$RUN/mysqld.pid" ;;
        slurmd:*) file="$RUN/slurmd-${name#slurmd:}.pid"; name=slurmd ;;
        *) file="$RUN/$name.pid" ;;
    esac
    [ -r "$file" ] || return 1
    pid="$(tr -dc '0-9' < "$file")"
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)"
    # Where PID 1 does not reap orphans (some containers), a stopped daemon lingers as a zombie.
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    case "$name:$comm" in
        mariadbd:mariadbd|mariadbd:mysqld|slurmctld:slurmctld|slurmd:slurmd|slurmdbd:slurmdbd)
            echo "$pid" ;;
        *) return 1 ;;
    esac
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.1 s until it succeeds;
# on time-out say what was awaited and return 1 (the caller decides whether that is fatal).
wait_for() {
    local limit="$1" what="$2"; shift 2
    local deadline=$(( $(date +%s%N) + limit * 1000000000 ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s%N)" -ge "$deadline" ]; then
            printf '[asymptote-slurm] timed out after %s s waiting for %s\n' "$limit" "$what" >&2
            return 1
        fi
        sleep 0.1
    done
}

# Seconds since T0 (set with T0=$(date +%s%N)), with one decimal.
elapsed() { awk -v a="$T0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

# The parameters a running cluster was started with (written by up.sh). Files written before
# multi-node support have no NODES line: they describe one node.
load_params() {
    [ -r "$PARAMS_FILE" ] || return 1
    NODES=1
    # shellcheck disable=SC1090
    . "$PARAMS_FILE"
}

# The slurmd "daemon names" of the configured nodes, for pid_of: slurmd, or slurmd:node1 ...
slurmd_names() {
    if [ "$NODES" -eq 1 ]; then echo slurmd; return; fi
    local n
    for n in $NODE_NAMES; do printf 'slurmd:%s ' "$n"; done
}

# ---- the network of a multi-node cluster ------------------------------------------------------
# net_up: the bridge (controller side, SUBNET .1), one namespace per node with eth0 = its end of
# a veth pair, its address, a default route via the bridge, and its own /etc files in
# /etc/netns/<ns>/ (the place `ip netns exec` also uses): a hosts file naming every node (and
# the controller) and an nsswitch.conf that resolves host names from files only (the nodes
# have no route to a DNS server; asking one would stall every lookup). up.sh bind-mounts them
# over /etc/hosts and /etc/nsswitch.conf in the node's private mount namespace; the machine's
# own /etc/hosts is not touched. Idempotent: objects that already exist are kept.
net_up() {
    net_check
    local node ns addr i veth peer ctld_name
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr replace "$CTLD_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    ctld_name="$(hostname -s)"
    for node in $NODE_NAMES; do
        ns="$(node_ns "$node")" addr="$(node_addr "$node")" i="$(node_index "$node")"
        veth="${NET_TAG}v$i" peer="${NET_TAG}p$i"
        ip netns list | awk '{print $1}' | grep -qx "$ns" || ip netns add "$ns"
        if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
            ip link del "$veth" >/dev/null 2>&1 || true
            ip link add "$veth" type veth peer name "$peer"
            ip link set "$peer" netns "$ns"
            ip -n "$ns" link set "$peer" name eth0
        fi
        ip link set "$veth" master "$BRIDGE"
        ip link set "$veth" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr replace "$addr/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route replace default via "$CTLD_ADDR"
        mkdir -p "/etc/netns/$ns"
        {
            echo "# Node $node of the asymptote test cluster in $STATE_DIR (slurm/cluster/up.sh)."
            echo "# Seen as /etc/hosts inside namespace $ns only; removed by down.sh."
            echo "127.0.0.1 localhost"
            echo "::1 localhost ip6-localhost ip6-loopback"
            echo "$CTLD_ADDR $ctld_name"
            local n
            for n in $NODE_NAMES; do echo "$(node_addr "$n") $n"; done
        } > "/etc/netns/$ns/hosts"
        if [ -r /etc/nsswitch.conf ]; then
            sed 's/^hosts:.*/hosts: files/' /etc/nsswitch.conf > "/etc/netns/$ns/nsswitch.conf"
        else
            echo "hosts: files" > "/etc/netns/$ns/nsswitch.conf"
        fi
    done
}

# net_check: the tools exist and no route but our own bridge's covers SUBNET (any other means
# somebody else uses these addresses). Called before anything is written or started.
net_check() {
    local bin other
    for bin in ip nsenter unshare; do
        command -v "$bin" >/dev/null || die "'$bin' is needed for --nodes > 1 (iproute2, util-linux)"
    done
    other="$(ip -4 route show to match "$CTLD_ADDR" 2>/dev/null \
        | grep -v -e '^default' -e " dev $BRIDGE " || true)"
    [ -z "$other" ] || die "subnet $SUBNET is already in use on this machine ($(echo $other)); choose another with --subnet"
}

# port_busy PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# net_down: remove every namespace, veth and bridge of this port base's cluster (whatever node
# count made them), ending processes still inside its namespaces first (job steps left behind
# when slurmd was gone). Does nothing when there is nothing to remove.
net_down() {
    command -v ip >/dev/null || return 0
    local ns pids left dev
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NET_TAG-$NODE_PREFIX[0-9]+$"); do
        pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
        if [ -n "${pids// /}" ]; then
            log "ending processes left in $ns: $pids"
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            ns_empty() { [ -z "$(ip netns pids "$1" 2>/dev/null | while read -r p; do
                [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] || echo "$p"; done)" ]; }
            if ! wait_for 10 "processes in $ns to end" ns_empty "$ns"; then
                left="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
                # shellcheck disable=SC2086
                kill -KILL $left 2>/dev/null || true
            fi
        fi
        ip netns del "$ns" 2>/dev/null || log "could not delete namespace $ns"
        rm -rf -- "/etc/netns/$ns"
    done
    rmdir /etc/netns 2>/dev/null || true
    for dev in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 \
                 | grep -E "^${NET_TAG}(v[0-9]+|p[0-9]+|br)$" | sort -r); do
        ip link del "$dev" 2>/dev/null || true
    done
}

# net_exists: true when any network object of this port base's cluster exists.
net_exists() {
    command -v ip >/dev/null || return 1
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qE "^$NET_TAG-$NODE_PREFIX[0-9]+$" \
        || ip link show "$BRIDGE" >/dev/null 2>&1
}
