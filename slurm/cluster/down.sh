#!/usr/bin/env bash
# Stop asymptote's SLURM test cluster started by up.sh.
#
#   down.sh [--state-dir DIR] [--purge]
#
# Cancels every job (so no slurmstepd outlives the cluster), then stops the slurmd(s),
# slurmctld, slurmdbd and MariaDB in that order and waits until each process is gone. A
# multi-node cluster's network (namespaces, veths, bridge, /etc/netns/<ns>) is removed too.
# The state folder is kept (a later up.sh restarts in ~2 s with its accounting history)
# unless --purge is given. Stopping a cluster that is not running is not an error.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

purge=""
while [ $# -gt 0 ]; do
    case "$1" in
        --state-dir) STATE_DIR="$2"; shift 2 ;;
        --purge) purge=1; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"
set_paths
T0=$(date +%s%N)
# Node count and port base the cluster was started with (a state folder without cluster.env
# never started one: only its defaults apply).
load_params || true
set_net

# slurmdbd and MariaDB delete their pid files before they have exited, so every PID is read
# now, before anything is asked to stop, and the processes themselves are waited on.
declare -A PIDS=()
SLURMDS="$(slurmd_names)"
for d in $SLURMDS slurmctld slurmdbd mariadbd; do
    if pid="$(pid_of "$d")"; then PIDS[$d]=$pid; fi
done
any_slurmd=""
for d in $SLURMDS; do [ -z "${PIDS[$d]:-}" ] || any_slurmd=1; done

if [ ${#PIDS[@]} -eq 0 ]; then
    log "not running (state folder $STATE_DIR)"
else
    if [ -n "${PIDS[slurmctld]:-}" ] && [ -n "$any_slurmd" ]; then
        jobs="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
        if [ -n "${jobs// /}" ]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            # KillWait=30: steps get SIGTERM, then SIGKILL 30 s later.
            wait_for 45 "jobs to end" sh -c '[ -z "$(squeue -h -o %A 2>/dev/null)" ]' \
                || log "some jobs did not end; stopping the daemons anyway"
            # slurmctld sends job records to slurmdbd asynchronously; stopping it at once
            # leaves the cancellations out of sacct until the next start. Wait briefly.
            # shellcheck disable=SC2086
            acct_settled() {
                local states
                states="$(sacct -n -X -j "$(echo $jobs | tr ' ' ',')" -o State 2>/dev/null)"
                [ -n "$states" ] && ! grep -qE 'RUNNING|PENDING|REQUEUED|RESIZING|SUSPENDED' <<<"$states"
            }
            wait_for 15 "accounting to record the cancelled jobs" acct_settled || true
        fi
    fi
    gone() { [ ! -d "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
    for d in $SLURMDS slurmctld slurmdbd mariadbd; do
        pid="${PIDS[$d]:-}"
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_for 30 "$d (pid $pid) to exit" gone "$pid"; then
            log "$d (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_for 10 "$d (pid $pid) to die" gone "$pid" || die "could not stop $d (pid $pid)"
        fi
    done
    log "stopped in $(elapsed) s (${!PIDS[*]})"
fi

if net_exists; then
    net_down
    log "removed the network of $NET_TAG (namespaces, veths, bridge $BRIDGE) ($(elapsed) s)"
fi

if [ -n "$purge" ] && [ -d "$STATE_DIR" ]; then
    # Only delete folders this script family made: they hold cluster.env or nothing yet.
    [ -e "$PARAMS_FILE" ] || [ -z "$(ls -A "$STATE_DIR")" ] \
        || die "$STATE_DIR does not look like a cluster state folder (no cluster.env); not deleting"
    rm -rf -- "$STATE_DIR"
    log "removed $STATE_DIR"
fi
