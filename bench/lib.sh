# shellcheck shell=bash disable=SC2034 # the variables are the sourcing script's
# bench/lib.sh - what the bench scripts share. Source it after setting PROG,
# the script's name for its messages.

# Everything runs as this unprivileged user when a script starts as root.
BENCH_UID=65534
BENCH_GID=65534

die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 1; }

# install_missing CMD=PKG...: installs with apt-get each PKG whose CMD (a
# name on PATH, or an absolute path) is missing; that needs root.
install_missing() {
	local need=() spec
	for spec; do
		command -v "${spec%%=*}" >/dev/null 2>&1 || need+=("${spec#*=}")
	done
	[[ ${#need[@]} -eq 0 ]] && return 0
	[[ $(id -u) -eq 0 ]] || die "missing ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root"
	echo "$PROG: installing ${need[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2; } ||
		die "apt-get install ${need[*]} failed"
}

# bench_user HOME RUNDIR: sets drop, the command prefix that becomes the
# bench user (empty unless root), user, that user's name, and as_user, drop
# with a clean environment whose HOME and XDG_RUNTIME_DIR are HOME and
# RUNDIR.
bench_user() {
	if [[ $(id -u) -eq 0 ]]; then
		command -v setpriv >/dev/null 2>&1 || die "setpriv (util-linux) not found"
		drop=(setpriv --reuid="$BENCH_UID" --regid="$BENCH_GID" --clear-groups)
		user=$(getent passwd "$BENCH_UID" | cut -d: -f1) || user=nobody
	else
		drop=()
		user=$(id -un 2>/dev/null || echo "uid$(id -u)")
	fi
	as_user=("${drop[@]}" env -i
		HOME="$1" USER="$user" LOGNAME="$user"
		PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
		XDG_RUNTIME_DIR="$2" TMPDIR=/tmp LANG=C.UTF-8)
}
