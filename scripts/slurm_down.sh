#!/usr/bin/env bash
# Stop the single-node cluster scripts/slurm_up.sh started: cancel its jobs, stop slurmd,
# slurmctld and munged. Safe to run when nothing is running.
# A dropout-lab job that is cancelled gets SIGTERM first: it writes its checkpoint and marks the
# run interrupted, so running the sweep again resumes it.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "slurm_down: must run as root" >&2; exit 1; }

stop_pid_file() {  # stop the daemon whose pid is in $1, waiting up to 15 s
  local pid_file=$1 pid
  [ -f "$pid_file" ] || return 0
  pid=$(cat "$pid_file")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$pid_file"
}

if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q "is UP"; then
  jobs=$(squeue --noheader --format=%A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    echo "slurm_down: cancelling jobs $jobs"
    scancel $jobs || true
    for _ in $(seq 60); do  # give them KillWait to checkpoint and leave
      [ -z "$(squeue --noheader --states=running,completing,pending --format=%A 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
fi
stop_pid_file /run/slurmd.pid
stop_pid_file /run/slurmctld.pid
if [ -f /run/munge/munged.pid ]; then
  stop_pid_file /run/munge/munged.pid
fi
echo "slurm_down: stopped"
