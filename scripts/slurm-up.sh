#!/usr/bin/env bash
# A one-node SLURM cluster on localhost (Debian 12: slurm-wlm 22.05 + munge), for lmexp's `slurm`
# tests and for trying `hydra/launcher=slurm` on one machine. Run as root; scripts/slurm-down.sh
# stops what this starts. Installs the packages when they are missing (apt-get).
#   scripts/slurm-up.sh && sbatch --wrap hostname && scripts/slurm-down.sh
set -euo pipefail
STATE=/var/lib/lmexp-slurm                 # spool dirs, logs and the pids of what this script started
CONF=/etc/slurm/slurm.conf
MARK="# written by lmexp scripts/slurm-up.sh"

if [ "$(id -u)" != 0 ]; then echo "slurm-up.sh: run as root" >&2; exit 1; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
fi
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  echo "slurm-up.sh: $CONF exists and was not written by this script; not touching it" >&2; exit 1
fi
mkdir -p "$STATE"/{ctld,d,log} /etc/slurm

# munge: the key comes with the package; munged runs as the munge user.
[ -f /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$STATE/munged.pid"
fi

# One node with this machine's CPUs and memory (as slurmd -C sees them), one partition `debug`.
# No cgroups in a container: processes are tracked by parent pid (proctrack/linuxproc), no task
# binding (task/none). No accounting database: finished jobs stay visible to `scontrol show job` for
# MinJobAge seconds, which is where lmexp's launcher reads their state (lmexp/launchers.py).
node=$(slurmd -C | head -1)
cat > "$CONF" <<CONF
$MARK
ClusterName=lmexp
SlurmctldHost=$(hostname -s)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=3600
KillWait=30
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

[ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null || slurmctld -i
[ -f "$STATE/slurmd.pid" ] && kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null || slurmd

for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
    echo "slurm-up.sh: one-node cluster up ($(sinfo -h -o '%P %D nodes %c CPUs %T'))"; exit 0
  fi
  sleep 1
done
echo "slurm-up.sh: the node did not become idle in 60 s; logs in $STATE/log" >&2
sinfo >&2 || true; tail -5 "$STATE"/log/*.log >&2 || true
exit 1
