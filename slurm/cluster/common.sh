# Shared by up.sh and down.sh (sourced, not run): defaults, paths and small helpers.
# Every knob has an environment variable so the Python wrapper and CI can set it once.

STATE_DIR="${ASYMPTOTE_SLURM_STATE_DIR:-/tmp/asymptote-slurm}"
MAX_ARRAY_SIZE="${ASYMPTOTE_SLURM_MAX_ARRAY_SIZE:-4}"
CPUS="${ASYMPTOTE_SLURM_CPUS:-8}"
PORT_BASE="${ASYMPTOTE_SLURM_PORT_BASE:-16817}"
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

# pid_of NAME: print the PID in NAME's pid file if that process is alive AND is NAME.
# A pid file can outlive its daemon and its number be reused by an unrelated process,
# so the executable name is checked too (mariadbd may show up as mysqld on older builds).
pid_of() {
    local name="$1" file pid comm
    case "$name" in
        mariadbd) file="$RUN/mysqld.pid" ;;
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

# The parameters a running cluster was started with (written by up.sh).
load_params() {
    # shellcheck disable=SC1090
    [ -r "$PARAMS_FILE" ] && . "$PARAMS_FILE"
}
