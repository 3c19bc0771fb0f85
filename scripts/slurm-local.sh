#!/usr/bin/env bash
# A single-node SLURM cluster on 127.0.0.1 for tests/test_slurm.py (`.ci/run` starts and stops it).
#
#   scripts/slurm-local.sh start    install Debian's slurmctld, slurmd, munge if missing; write a config
#                                   for this host; start munged (unless one runs), slurmctld, slurmd
#   scripts/slurm-local.sh stop     stop exactly the daemons `start` started (by the pid files it wrote)
#   scripts/slurm-local.sh status   print sinfo
#   scripts/slurm-local.sh running  exit 0 when the daemons this script started still run (for .ci/run)
#
# State (config, spool, logs, pid files) lives in $BMBENCH_SLURM_DIR (default /tmp/bmbench-slurm). The
# config is also linked at /etc/slurm/slurm.conf when no config is there yet (so sinfo/sbatch find it
# without SLURM_CONF); `stop` removes that link only if it is still ours. Set BMBENCH_SLURM_GPU=1 to
# declare a fake gpu gres (gres.conf Name=gpu File=/dev/null). Needs root (it installs packages and runs
# the daemons as root).
set -euo pipefail

DIR="${BMBENCH_SLURM_DIR:-/tmp/bmbench-slurm}"
CONF="$DIR/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf

log() { echo "slurm-local: $*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "needs root (it installs packages and starts the SLURM daemons); run it with sudo"
        exit 1
    fi
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
    command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
    command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || { log "missing ${missing[*]} and no apt-get to install them"; exit 1; }
    log "installing ${missing[*]} from the system's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# pid_alive FILE NAME: the pid in FILE runs and is NAME (a stale file whose pid was reused is not ours)
pid_alive() {
    [ -f "$1" ] || return 1
    local pid
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = "$2" ]
}

running() { pid_alive "$DIR/slurmctld.pid" slurmctld && pid_alive "$DIR/slurmd.pid" slurmd; }

start_munge() {
    if pgrep -x munged >/dev/null 2>&1; then
        log "munged already runs (not started by this script; left alone)"
        return 0
    fi
    [ -f /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key >&2 || \
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
    local user=root
    id munge >/dev/null 2>&1 && user=munge
    chown "$user" /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    install -d -o "$user" -m 0755 /run/munge
    install -d -o "$user" -m 0700 /var/lib/munge /var/log/munge
    if [ "$user" = root ]; then
        munged --force --pid-file="$DIR/munged.pid" >&2
    else
        # munged writes its pid file as $user: give it a folder it may write
        install -d -o "$user" -m 0755 "$DIR/munge"
        runuser -u "$user" -- munged --pid-file="$DIR/munge/munged.pid" >&2
        ln -sf "$DIR/munge/munged.pid" "$DIR/munged.pid"
    fi
    for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && return 0; sleep 0.1; done
    log "munged did not create its socket; see /var/log/munge/munged.log"
    exit 1
}

write_config() {
    local host node
    host="$(hostname -s)"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    # slurmd -C prints this host's hardware as a NodeName line (CPUs, sockets, RealMemory).
    node="$(slurmd -C | head -n 1)"
    {
        echo "# written by scripts/slurm-local.sh: a single-node cluster on 127.0.0.1"
        echo "ClusterName=bmbench-local"
        echo "SlurmctldHost=${host}(127.0.0.1)"
        echo "SlurmUser=root"
        echo "AuthType=auth/munge"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "JobCompType=jobcomp/none"
        echo "SchedulerType=sched/backfill"
        echo "MpiDefault=none"
        echo "ReturnToService=2"
        echo "SlurmctldPidFile=$DIR/slurmctld.pid"
        echo "SlurmdPidFile=$DIR/slurmd.pid"
        echo "SlurmctldLogFile=$DIR/log/slurmctld.log"
        echo "SlurmdLogFile=$DIR/log/slurmd.log"
        echo "StateSaveLocation=$DIR/state"
        echo "SlurmdSpoolDir=$DIR/spool"
        echo "SlurmctldTimeout=30"
        echo "SlurmdTimeout=30"
        echo "KillWait=5"
        echo "MinJobAge=30"
        if [ "${BMBENCH_SLURM_GPU:-0}" = 1 ]; then
            echo "GresTypes=gpu"
            echo "$node NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN"
        else
            echo "$node NodeAddr=127.0.0.1 State=UNKNOWN"
        fi
        echo "PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
    } > "$CONF"
    if [ "${BMBENCH_SLURM_GPU:-0}" = 1 ]; then
        echo "Name=gpu File=/dev/null" > "$DIR/gres.conf"
    fi
    mkdir -p /etc/slurm
    if [ ! -e "$ETC_CONF" ]; then
        ln -s "$CONF" "$ETC_CONF"
        touch "$DIR/etc-link-ours"
    fi
}

start() {
    need_root
    mkdir -p "$DIR"
    if running; then
        log "already running ($DIR)"
        status
        return 0
    fi
    local name
    for name in slurmctld slurmd munged; do  # stale pid files (their daemon is gone) must not name a new process
        pid_alive "$DIR/$name.pid" "$name" || rm -f "$DIR/$name.pid"
    done
    install_packages
    write_config
    start_munge
    export SLURM_CONF="$CONF"
    slurmctld -f "$CONF" >&2
    slurmd -f "$CONF" >&2
    # bounded wait for the node to come up (idle)
    for _ in $(seq 60); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            log "up: SLURM_CONF=$CONF"
            sinfo >&2
            echo "SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.5
    done
    log "the node did not become idle within 30 s; logs in $DIR/log"
    sinfo >&2 || true
    exit 1
}

stop_pid() {
    local name="$1" file="$2"
    if pid_alive "$file" "$name"; then
        local pid
        pid="$(cat "$file")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        log "stopped $name ($pid)"
    fi
    rm -f "$file"
}

stop() {
    stop_pid slurmd "$DIR/slurmd.pid"
    stop_pid slurmctld "$DIR/slurmctld.pid"
    stop_pid munged "$DIR/munged.pid"
    if [ -f "$DIR/etc-link-ours" ] && [ "$(readlink "$ETC_CONF" 2>/dev/null)" = "$CONF" ]; then
        rm -f "$ETC_CONF"
    fi
    rm -f "$DIR/etc-link-ours"
}

status() { SLURM_CONF="$CONF" sinfo; }

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    running) running ;;
    *) echo "usage: $0 start|stop|status|running" >&2; exit 2 ;;
esac
