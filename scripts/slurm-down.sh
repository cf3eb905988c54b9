#!/usr/bin/env bash
# Stops the slurmd and slurmctld that scripts/slurm-up.sh started; munged is
# left running. Safe to run when they are not running.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "slurm-down: must run as root" >&2; exit 1; }
running() { # pid name: true while it runs (a zombie has stopped)
	local s; s=$(cut -d' ' -f2,3 "/proc/$1/stat" 2>/dev/null) && [ "${s% *}" = "($2)" ] && [ "${s#* }" != Z ]
}
for f in /run/slurmd*.pid /run/slurmctld.pid; do
	d=$(basename "$f" .pid) && d=${d%%-*}
	p=$(cat "$f" 2>/dev/null) || continue
	running "$p" "$d" || continue
	kill -TERM "$p"
	for _ in $(seq 100); do running "$p" "$d" || break; sleep 0.1; done
	running "$p" "$d" && { echo "slurm-down: $d (pid $p) did not stop in 10s" >&2; exit 1; }
	echo "slurm-down: stopped $(basename "$f" .pid)"
done
