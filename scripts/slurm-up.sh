#!/usr/bin/env bash
# Makes this Debian 12 machine a Slurm cluster for the end-to-end tests:
# installs slurmctld, slurmd, the Slurm client and munge when missing, writes
# /etc/slurm/slurm.conf for two nodes on this host (two slurmd reached on
# 127.0.0.1, 8 CPUs each whatever the hardware) in one partition "debug", with
# proctrack/cgroup where this host allows it, else proctrack/linuxproc (see 3),
# starts munged, slurmctld and the slurmds directly (no systemd needed) and
# checks that srun and sbatch work, as root and as nobody, and that srun
# --mpi=pmix gives tasks a PMIx server (Open MPI jobs). Why two nodes:
# Slurm 22.05 runs one task per node in a container step (srun -n 2
# --ntasks-per-node=1 --container needs two).
#
#   sudo scripts/slurm-up.sh                     # CI, as root on a fresh machine
#   sudo PROCTRACK=linuxproc scripts/slurm-up.sh  # force a proctrack plugin
#   sudo TASKPLUGIN=cgroup scripts/slurm-up.sh    # task/cgroup, ConstrainRAMSpace=yes
#
# The default is "stock", as a cluster's Slurm 22.05 of Debian's packages is
# set up: proctrack/cgroup, task/none, the default cgroup.conf, and no TmpFS,
# Prolog or job_container. TASKPLUGIN=cgroup is the other common setup, whose
# tasks sit in a memory cgroup of the job's size; running the script again
# without it restores the stock config (make e2e-slurm-taskcgroup does both).
#
# Safe to rerun: what already runs is left alone, dead daemons are restarted,
# and a changed slurm.conf or cgroup.conf restarts the Slurm daemons.
# scripts/slurm-down.sh stops them again.
set -euo pipefail
die() { echo "slurm-up: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root"
here=$(cd "$(dirname "$0")" && pwd)
conf=/etc/slurm/slurm.conf
logs=/var/log/slurm
host=$(hostname -s)

# 1. Packages. A policy-rc.d keeps the packages' init scripts from starting
# daemons: this script starts them itself, with its own configuration.
# libpmix-dev for srun --mpi=pmix: Slurm's mpi/pmix plugin dlopens
# pmix2/lib/libpmix.so, the unversioned name, which only the -dev package
# ships (libpmix2 has libpmix.so.2); PMIx 4.2.2 here, which Open MPI 4.1.4 of
# Debian 12 is built against too.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v srun >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
installed libpmix-dev || need+=(libpmix-dev)
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

# 3. How slurmstepd finds a job's processes, to signal and kill them.
# proctrack/cgroup, the usual choice of production clusters, when a cgroup v1
# freezer hierarchy is mounted and root can make cgroups in it: a step's
# processes stay in its cgroup whatever becomes of their parents, so one
# re-parented to init is still killed at the end. It sends a job's TERM
# (scancel, the time limit) only to the step's tasks, the direct children of
# slurmstepd (the batch shell, srun's tasks), and SIGKILL to every process,
# at once when the batch shell dies of the TERM: hpcrun gets the TERM, and
# passes it to the job, only as such a task (srun hpcrun, exec hpcrun; see
# examples/slurm/signals.sbatch, and oci.conf execs it). Two slurmds on one host keep apart because Debian builds Slurm with
# --enable-multiple-slurmd, whose default CgroupPrepend is /slurm_%n
# (freezer/slurm_NAME1/uid_U/job_J/...); step 5 checks that the nodes'
# cgroups differ and otherwise falls back for good (a "# proctrack/cgroup
# failed" line in slurm.conf says why).
# proctrack/linuxproc elsewhere: it follows parent links in /proc and signals
# every process it finds; a process whose parent died escapes it. Not tried
# on cgroup v2 only hosts: Slurm 22.05's cgroup/v2 wants a subtree delegated
# by systemd, and this script starts the daemons itself.
cgroup_conf=/etc/slurm/cgroup.conf
marker="# Written by hpcrun's scripts/slurm-up.sh"
failed=$(grep -m1 '^# proctrack/cgroup failed' "$conf" 2>/dev/null || true)
freezer_ok() {
	local d=/sys/fs/cgroup/freezer/hpcrun-probe.$$
	[ -e /sys/fs/cgroup/freezer/tasks ] && mkdir "$d" 2>/dev/null && rmdir "$d"
}
case ${TASKPLUGIN:=none} in
none | cgroup) ;;
*) die "TASKPLUGIN=$TASKPLUGIN: want none or cgroup" ;;
esac
case ${PROCTRACK:-} in
cgroup) proctrack=cgroup failed= ;;
linuxproc) proctrack=linuxproc ;;
"") if [ -z "$failed" ] && freezer_ok; then proctrack=cgroup; else proctrack=linuxproc; fi ;;
*) die "PROCTRACK=$PROCTRACK: want cgroup or linuxproc" ;;
esac

# slurmd loads its MPI plugins when it starts: one started before libpmix was
# installed has no mpi/pmix ("can not load PMIx library" in its log), and the
# slurmstepd of an srun --mpi=pmix step then dies at once ("Task launch ...
# failed", "_send_slurmstepd_init failed" in the slurmd log). Such a slurmd is
# stopped here and started again below; the steps that run go on without it.
started_before() { # pidfile file: true if the process started before file last changed
	local p t btime hz
	p=$(cat "$1" 2>/dev/null) && t=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null | awk '{ print $20 }') || return 1
	btime=$(awk '/^btime / { print $2 }' /proc/stat) hz=$(getconf CLK_TCK)
	[ $((btime + t / hz)) -lt "$(stat -L -c %Z "$2")" ]
}
pmixlib=$(dpkg -L libpmix-dev 2>/dev/null | grep -m1 '/pmix2/lib/libpmix\.so$' || true)

# 4. slurm.conf: two nodes on this host, NAME1 and NAME2, reached on
# 127.0.0.1 on ports of their own whatever the hostname resolves to, and
# RealMemory 5% under half of MemTotal so that no node is drained as "Low
# RealMemory". Each node offers 8 CPUs whatever the hardware has
# (config_overrides): the tests' jobs mostly wait, and so they run at once
# rather than queue behind a job that waits for its time limit. No systemd, no
# accounting.
cpus=8
mem=$(awk '/^MemTotal:/ { m = int($2 / 2048); print m - int(m / 20) }' /proc/meminfo)
nodes="${host}1 ${host}2"
logtail() {
	for f in "$logs/slurmctld.log" "$logs"/slurmd-*.log; do
		[ -e "$f" ] && { echo "--- tail of $f"; tail -n 15 "$f"; }
	done >&2
}
fail() { logtail; die "$*"; }
stop() { # pidfile name: TERM, and wait up to 10s for it to end
	local p; p=$(cat "$1") && kill -TERM "$p" || return 0
	for _ in $(seq 100); do alive "$1" "$2" || return 0; sleep 0.1; done
	fail "$2 (pid $p) did not stop in 10s"
}
alive() { # pidfile name: true if the pid file names a process of that name, not a zombie
	local p s; p=$(cat "$1" 2>/dev/null) && s=$(cut -d' ' -f2,3 "/proc/$p/stat" 2>/dev/null) &&
		[ "${s% *}" = "($2)" ] && [ "${s#* }" != Z ]
}
# configure: writes slurm.conf and cgroup.conf for $proctrack (and $failed),
# restarting the daemons when either changes; starts what does not run; waits
# for the nodes to be idle.
configure() {
	local new newcg=
	new=$(cat <<EOF
$marker: a two-node cluster on one host, for the tests.${failed:+
$failed}
ClusterName=hpcrun
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/$proctrack
TaskPlugin=task/$TASKPLUGIN
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
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
	# Slurm's defaults, which need no line on this host: CgroupPlugin
	# autodetects cgroup/v1 (/sys/fs/cgroup is a tmpfs and its systemd
	# hierarchy cgroup v1, though a cgroup2 is mounted at unified/), and
	# CgroupAutomount=no finds the freezer and memory hierarchies mounted.
	# But the file must exist: without one, Slurm 22.05 leaves CgroupPrepend
	# unset rather than /slurm_%n, and the two slurmds of this host would
	# share freezer/uid_U/job_J (see 5). task/cgroup adds the one line it is
	# there for.
	if [ "$TASKPLUGIN" = cgroup ]; then
		newcg=$(printf '%s\nConstrainRAMSpace=yes' "$marker: task/cgroup.")
	elif [ "$proctrack" = cgroup ]; then
		newcg="$marker: Slurm's defaults (see the script)."
	fi
	local oldcg=
	[ -e "$cgroup_conf" ] && oldcg=$(cat "$cgroup_conf")
	# A cgroup.conf of our own goes with proctrack/linuxproc; a site's stays.
	[ -z "$newcg" ] && [ "${oldcg%%:*}" != "$marker" ] && newcg=$oldcg
	mkdir -p /etc/slurm
	if [ "$(cat "$conf" 2>/dev/null)" != "$new" ] || [ "$oldcg" != "$newcg" ]; then
		[ -e "$conf" ] && "$here/slurm-down.sh" >/dev/null
		printf '%s\n' "$new" >"$conf"
		if [ -n "$newcg" ]; then printf '%s\n' "$newcg" >"$cgroup_conf"; else rm -f "$cgroup_conf"; fi
		echo "slurm-up: wrote $conf (proctrack/$proctrack, task/$TASKPLUGIN)"
	fi
	install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld "$logs"
	for n in $nodes; do install -d -o root -g root -m 0755 "/var/spool/slurmd-$n"; done

	# The daemons, each unless its pid file names a live one. slurmctld
	# starts with -c, clearing the saved job and node state: a controller
	# that died may have left jobs "running" that hold the node's CPUs.
	alive /run/slurmctld.pid slurmctld || slurmctld -c || fail "slurmctld failed to start"
	for n in $nodes; do
		if [ -n "$pmixlib" ] && alive "/run/slurmd-$n.pid" slurmd && started_before "/run/slurmd-$n.pid" "$pmixlib"; then
			echo "slurm-up: restarting slurmd -N $n, started before libpmix was installed"
			stop "/run/slurmd-$n.pid" slurmd
		fi
		alive "/run/slurmd-$n.pid" slurmd || slurmd -N "$n" || fail "slurmd -N $n failed to start"
	done

	# Wait for the nodes to be idle, resuming any that registered DOWN or DRAIN.
	local deadline=$((SECONDS + 60)) states idle dead
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
}
configure

# 5. With proctrack/cgroup, a task on each node must land in that node's own
# freezer cgroup; else (a Slurm built without --enable-multiple-slurmd) the
# two slurmds would share /slurm/uid_U/job_J/step_S, and the first stepd done
# with a two-node step would SIGKILL the other node's tasks.
if [ "$proctrack" = cgroup ]; then
	why=
	# shellcheck disable=SC2016 # expanded by the task's shell
	task='echo "$SLURMD_NODENAME $(grep -m1 :freezer: /proc/self/cgroup)"'
	out=$(timeout 60 srun -Q -N2 -n2 --ntasks-per-node=1 sh -c "$task" 2>&1) ||
		why="srun -N2 failed: $(tail -n 1 <<<"$out")"
	for n in $nodes; do
		[ -n "$why" ] || grep -q "^$n [0-9]*:freezer:/slurm_$n/" <<<"$out" ||
			why="the task on $n is not in freezer/slurm_$n: $(tr '\n' ';' <<<"$out")"
	done
	if [ -n "$why" ]; then
		echo "slurm-up: proctrack/cgroup does not work here ($why); using proctrack/linuxproc" >&2
		proctrack=linuxproc failed="# proctrack/cgroup failed on $(date -u +%F): $why"
		configure
	fi
fi

# 6. Check jobs run: as root, as nobody from a directory it may enter, in
# batch, and with a task on each node.
t=$(mktemp -d) && chmod 755 "$t"
trap 'rm -rf "$t"' EXIT
run() { # description command...: runs it in $t, its output in $out
	out=$(cd "$t" && timeout 60 "${@:2}" 2>&1) ||
		{ [ $? -eq 124 ] && out="timed out after 60s"; fail "$1 failed: $(tail -n 1 <<<"$out")"; }
}
run "srun as root" srun -Q -N1 -n1 hostname
[ "$out" = "$(hostname)" ] || fail "srun as root printed '$out', not $(hostname)"
run "srun as nobody" runuser -u nobody -- srun -Q -N1 -n1 id -u
[ "$out" = 65534 ] || fail "srun as nobody printed '$out', not 65534"
printf '#!/bin/sh\necho batch-ok\n' >"$t/job.sh"
run "sbatch --wait" sbatch -Q --wait -o "$t/job.out" "$t/job.sh"
grep -qx batch-ok "$t/job.out" || fail "sbatch --wait: the job's output is not batch-ok"
run "srun -N 2" srun -Q -N2 -n2 --ntasks-per-node=1 true
# shellcheck disable=SC2016 # expanded by the task's shell
run "srun --mpi=pmix as nobody" runuser -u nobody -- srun -Q --mpi=pmix -N1 -n2 sh -c 'echo "$PMIX_RANK $PMIX_NAMESPACE"'
if [ "$(cut -d' ' -f1 <<<"$out" | sort | tr '\n' ' ')" != "0 1 " ] || grep -q ' $' <<<"$out"; then
	fail "srun --mpi=pmix: want PMIX_RANK 0 and 1, each with a PMIX_NAMESPACE; got '$out'"
fi
echo "slurm-up: ok: $(sinfo -V), nodes $nodes (CPUs=$cpus RealMemory=$mem each) idle in partition debug," \
	"proctrack/$proctrack, task/$TASKPLUGIN; srun as root and nobody, sbatch --wait, srun -N 2, srun --mpi=pmix work (${SECONDS}s)"
