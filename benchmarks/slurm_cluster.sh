#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for benchmarks/slurm.py and tests/test_slurm.py.
#
# Usage: benchmarks/slurm_cluster.sh [start|status|stop]   (default: start)
#
#   start   start munged, slurmctld and slurmd unless they already answer, then print the status
#   status  print whether each daemon answers, and the node's state
#   stop    stop the slurmd and slurmctld started here (by their pid files); munged is left running
#
# Needs root and the Debian packages: apt-get install -y --no-install-recommends slurmctld slurmd
# slurm-client munge (Slurm 22.05).  State, spool, pid and log files go to $NMFLOW_SLURM_DIR (default:
# nmflow-slurm in the temporary folder).  The configuration is written to $SLURM_CONF (default: Slurm's
# own /etc/slurm/slurm.conf, so plain sbatch/squeue find it) unless that file exists and was not
# written by this script.  No accounting: there is no sacct; poll squeue.
set -euo pipefail

STATE_DIR=${NMFLOW_SLURM_DIR:-$(dirname "$(mktemp -u)")/nmflow-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by nmflow benchmarks/slurm_cluster.sh"
NODE=$(hostname -s)
export SLURM_CONF=$CONF

write_conf() {
    if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        echo "slurm_cluster.sh: $CONF exists and is not ours; set SLURM_CONF to another path" >&2
        exit 1
    fi
    mkdir -p "$STATE_DIR/state" "$STATE_DIR/spool" "$(dirname "$CONF")"
    cat > "$CONF" <<EOF
$MARK
ClusterName=nmflow
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MpiDefault=none
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=22000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q "is UP"; }
node_state() { sinfo -h -N -o %T 2>/dev/null | head -n1; }
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    write_conf
    if ! munge_ok; then
        mkdir -p /run/munge && chown munge:munge /run/munge
        runuser -u munge -- /usr/sbin/munged
    fi
    if ! alive "$STATE_DIR/slurmctld.pid"; then
        setsid slurmctld -D -f "$CONF" >> "$STATE_DIR/slurmctld.out" 2>&1 < /dev/null &
        echo $! > "$STATE_DIR/slurmctld.pid"
        for _ in $(seq 30); do ctld_ok && break; sleep 1; done
    fi
    if ! alive "$STATE_DIR/slurmd.pid"; then
        setsid slurmd -D -f "$CONF" >> "$STATE_DIR/slurmd.out" 2>&1 < /dev/null &
        echo $! > "$STATE_DIR/slurmd.pid"
        for _ in $(seq 30); do [[ $(node_state) == idle* || $(node_state) == mix* ]] && break; sleep 1; done
    fi
    status
}

status() {
    munge_ok && echo "munged:    up" || echo "munged:    down"
    ctld_ok && echo "slurmctld: up" || echo "slurmctld: down"
    echo "node:      $NODE $(node_state || true)"
    echo "config:    $CONF (export SLURM_CONF=$CONF if it is not Slurm's default)"
    echo "logs:      $STATE_DIR"
}

stop() {
    for daemon in slurmd slurmctld; do
        if alive "$STATE_DIR/$daemon.pid"; then
            kill "$(cat "$STATE_DIR/$daemon.pid")"
            echo "stopped $daemon"
        fi
        rm -f "$STATE_DIR/$daemon.pid"
    done
}

case ${1:-start} in
    start) start ;;
    status) status ;;
    stop) stop ;;
    *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac
