#!/usr/bin/env bash
# Stops what scripts/slurm-up.sh started: slurmd, slurmctld, munged (and removes its slurm.conf).
set -uo pipefail
STATE=/var/lib/lmexp-slurm
CONF=/etc/slurm/slurm.conf
for daemon in slurmd slurmctld munged; do
  pidfile="$STATE/$daemon.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid=$(cat "$pidfile"); kill "$pid"
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$pidfile"
done
grep -qsF "# written by lmexp scripts/slurm-up.sh" "$CONF" && rm -f "$CONF"
rm -rf "$STATE"
echo "slurm-down.sh: stopped"
