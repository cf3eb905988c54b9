#!/usr/bin/env bash
# Makes this Debian 12 machine a Slurm cluster for the end-to-end tests:
# installs slurmctld, slurmd, the Slurm client and munge when missing, writes
# /etc/slurm/slurm.conf for two nodes on this host (two slurmd, each with half
# its CPUs and memory) in one partition "debug", starts munged, slurmctld and
# the slurmds directly (no systemd needed, no cgroups used) and checks that
# srun and sbatch work, as root and as nobody. Why two nodes: Slurm 22.05 runs
# one task per node in a container step (srun -n 2 --container needs two).
#
#   sudo scripts/slurm-up.sh      # CI, as root on a fresh machine
#
# Safe to rerun: what already runs is left alone, dead daemons are restarted,
# and a changed slurm.conf restarts the Slurm daemons. scripts/slurm-down.sh
# stops them again.
set -euo pipefail
die() { echo "slurm-up: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"
here=$(cd "$(dirname "$0")" && pwd)
conf=/etc/slurm/slurm.conf
logs=/var/log/slurm
host=$(hostname -s)

# 1. Packages. A policy-rc.d keeps the packages' init scripts from starting
# daemons: this script starts them itself, with its own configuration.
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v srun >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
	echo "slurm-up: installing ${need[*]}"
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || die "apt-get update failed"
	out=$(apt-get install -y -qq --no-install-recommends "${need[@]}" 2>&1) ||
		{ echo "$out" >&2; die "apt-get install ${need[*]} failed"; }
	rm -f /usr/sbin/policy-rc.d; trap - EXIT
fi

# 2. munge: a key, and munged running as user munge.
if [ ! -s /etc/munge/munge.key ]; then
	runuser -u munge -- mungekey -c || die "cannot create /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
	install -d -o munge -g munge -m 0755 /run/munge
	runuser -u munge -- /usr/sbin/munged || die "munged failed to start (see /var/log/munge/munged.log)"
	for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
	munge -n | unmunge >/dev/null || die "munge -n | unmunge fails after starting munged"
fi

# 3. slurm.conf: two nodes on this host, NAME1 and NAME2, reached on
# 127.0.0.1 on ports of their own whatever the hostname resolves to, each
# with half the CPUs, and RealMemory 5% under half of MemTotal so that no
# node is drained as "Low RealMemory". No cgroups, no systemd, no accounting.
cpus=$(( $(nproc) / 2 )); [ "$cpus" -ge 1 ] || cpus=1
mem=$(awk '/^MemTotal:/ { m = int($2 / 2048); print m - int(m / 20) }' /proc/meminfo)
nodes="${host}1 ${host}2"
new=$(cat <<EOF
# Written by hpcrun's scripts/slurm-up.sh: a two-node cluster on one host, for the tests.
ClusterName=hpcrun
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd-%n
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd-%n.log
KillWait=5
MinJobAge=30
SlurmctldTimeout=60
SlurmdTimeout=60
InactiveLimit=0
MailProg=/bin/true
NodeName=${host}1 NodeHostname=$host NodeAddr=127.0.0.1 Port=17001 CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=${host}2 NodeHostname=$host NodeAddr=127.0.0.1 Port=17002 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
mkdir -p /etc/slurm
if [ "$(cat "$conf" 2>/dev/null)" != "$new" ]; then
	[ -e "$conf" ] && "$here/slurm-down.sh" >/dev/null
	printf '%s\n' "$new" >"$conf"
	echo "slurm-up: wrote $conf"
fi
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld "$logs"
for n in $nodes; do install -d -o root -g root -m 0755 "/var/spool/slurmd-$n"; done

# 4. The daemons, each unless its pid file names a live one. slurmctld starts
# with -c, clearing the saved job and node state: a controller that died may
# have left jobs "running" that hold the node's CPUs.
logtail() {
	for f in "$logs/slurmctld.log" "$logs"/slurmd-*.log; do
		[ -e "$f" ] && { echo "--- tail of $f"; tail -n 15 "$f"; }
	done >&2
}
fail() { logtail; die "$*"; }
alive() { # pidfile name: true if the pid file names a process of that name, not a zombie
	local p s; p=$(cat "$1" 2>/dev/null) && s=$(cut -d' ' -f2,3 "/proc/$p/stat" 2>/dev/null) &&
		[ "${s% *}" = "($2)" ] && [ "${s#* }" != Z ]
}
alive /run/slurmctld.pid slurmctld || slurmctld -c || fail "slurmctld failed to start"
for n in $nodes; do
	alive "/run/slurmd-$n.pid" slurmd || slurmd -N "$n" || fail "slurmd -N $n failed to start"
done

# 5. Wait for the nodes to be idle, resuming any that registered DOWN or DRAIN.
deadline=$((SECONDS + 60))
while :; do
	states=$(timeout 5 sinfo -h -N -o '%N %t' 2>/dev/null) || true
	idle=0
	for n in $nodes; do
		case $(awk -v n="$n" '$1 == n { print $2 }' <<<"$states") in
		idle | mix | alloc) idle=$((idle + 1)) ;;
		down | drain | drng | fail) scontrol update nodename="$n" state=resume 2>/dev/null || true ;;
		esac
	done
	[ "$idle" -eq 2 ] && break
	if [ $SECONDS -ge $deadline ]; then
		dead=$(alive /run/slurmctld.pid slurmctld || echo -n " slurmctld"
			for n in $nodes; do alive "/run/slurmd-$n.pid" slurmd || echo -n " slurmd -N $n"; done)
		fail "nodes $nodes are not idle after 60s (${states:-no answer}${dead:+; not running:$dead})"
	fi
	sleep 0.5
done

# 6. Check jobs run: as root, as nobody from a directory it may enter, in
# batch, and with two tasks.
t=$(mktemp -d) && chmod 755 "$t"
trap 'rm -rf "$t"' EXIT
run() { # description command...: runs it in $t, its output in $out
	out=$(cd "$t" && timeout 60 "${@:2}" 2>&1) ||
		{ [ $? -eq 124 ] && out="timed out after 60s"; fail "$1 failed: $(tail -n 1 <<<"$out")"; }
}
run "srun as root" srun -N1 -n1 hostname
[ "$out" = "$(hostname)" ] || fail "srun as root printed '$out', not $(hostname)"
run "srun as nobody" runuser -u nobody -- srun -N1 -n1 id -u
[ "$out" = 65534 ] || fail "srun as nobody printed '$out', not 65534"
printf '#!/bin/sh\necho batch-ok\n' >"$t/job.sh"
run "sbatch --wait" sbatch -Q --wait -o "$t/job.out" "$t/job.sh"
grep -qx batch-ok "$t/job.out" || fail "sbatch --wait: the job's output is not batch-ok"
run "srun -n 2" srun -n 2 true
echo "slurm-up: ok: $(sinfo -V), nodes $nodes (CPUs=$cpus RealMemory=$mem each) idle in partition debug;" \
	"srun as root and nobody, sbatch --wait, srun -n 2 work (${SECONDS}s)"
