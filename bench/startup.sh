#!/usr/bin/env bash
# bench/startup.sh - warm start-up latency of hpcrun vs bubblewrap vs native.
#
# Usage: bench/startup.sh [-n ROUNDS] [--hpcrun PATH]
#
#   -n ROUNDS      measured rounds (default 200; 30 when BENCH_QUICK=1)
#   --hpcrun PATH  hpcrun binary (default: bin/hpcrun under the repo root,
#                  built with `go build` if it is missing)
#
# Every round runs each contender once, in an order rotating from round to
# round; 5 warm-up rounds come first and are not counted. Timing is done by a
# small Go program (bench/startlat) so that no shell fork sits in the timed
# path. Everything runs as an unprivileged user: when started as root the
# script drops to uid/gid 65534 with setpriv.
#
# The script builds its own rootfs from Debian's static busybox in a temporary
# directory, which is removed on exit, packs it as an OCI archive
# (examples/mkimage.sh) and unpacks that into a fresh cache once, untimed:
# every contender then runs on the cached rootfs, and `hpcrun --image` on
# the archive is the warm start a job pays when its image is cached. When run as root it installs missing
# peers (bubblewrap, busybox-static) with apt-get.
#
# Exits non-zero, with the failing contender's stderr, if any run fails.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=startup.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
WARMUP=5

usage() { sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

# ---------------------------------------------------------------- arguments
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then ROUNDS=30; else ROUNDS=200; fi
HPCRUN=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	-n) [[ $# -ge 2 ]] || die "-n needs a value"; ROUNDS=$2; shift 2 ;;
	-n*) ROUNDS=${1#-n}; shift ;;
	--hpcrun) [[ $# -ge 2 ]] || die "--hpcrun needs a value"; HPCRUN=$2; shift 2 ;;
	--hpcrun=*) HPCRUN=${1#--hpcrun=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive integer, got '$ROUNDS'"

# ---------------------------------------------------------------- contenders
# One entry per contender: NAME=COMMAND LINE. The line is split into words at
# blanks (quotes group words; no other shell processing) and run directly.
# Placeholders, replaced below: @ROOTFS@ (the busybox rootfs, as unpacked in
# the cache), @IMAGE@ (its OCI archive), @CACHE@ (the cache) and @HPCRUN@
# (the hpcrun binary, copied where the unprivileged user can run it).
# To add a contender, add a line here. BASELINE names the one that the ratio
# column is relative to.
CONTENDERS=(
	"native=true"
	"bwrap=bwrap --unshare-user --unshare-pid --bind @ROOTFS@ / --proc /proc --dev /dev true"
	"hpcrun=@HPCRUN@ --rootfs @ROOTFS@ true"
	"hpcrun-image=@HPCRUN@ --cache @CACHE@ --image @IMAGE@ true"
)
BASELINE=bwrap

# ---------------------------------------------------------------- peers
install_missing bwrap=bubblewrap /bin/busybox=busybox-static
command -v bwrap >/dev/null 2>&1 || die "bwrap not found after install"
[[ -x /bin/busybox ]] || die "/bin/busybox not found after install"
command -v go >/dev/null 2>&1 || die "go not found (needed to build bench/startlat)"

# ---------------------------------------------------------------- hpcrun
if [[ -z "$HPCRUN" ]]; then
	HPCRUN=$ROOT/bin/hpcrun
	if [[ ! -x "$HPCRUN" ]]; then
		echo "startup.sh: $HPCRUN missing; building it" >&2
		(cd "$ROOT" && make build) ||
			die "building bin/hpcrun failed (try 'make build')"
	fi
fi
[[ -f "$HPCRUN" && -x "$HPCRUN" ]] || die "hpcrun binary '$HPCRUN' not found or not executable"

# ---------------------------------------------------------------- temp dir
TMP=$(mktemp -d "${TMPDIR:-/tmp}/hpcrun-startup.XXXXXX")
cleanup() {
	# Files made inside user namespaces may be odd; do our best.
	chmod -R u+rwX "$TMP" 2>/dev/null || true
	rm -rf "$TMP" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 755 "$TMP"
[[ "$TMP" != *[[:space:]\'\"\\]* ]] || die "temp dir '$TMP' contains blanks or quotes; set TMPDIR"

# rootfs: static busybox + one symlink per applet.
R=$TMP/rootfs
# Laid out like any distribution image: the mount points a container runtime
# binds (/var/tmp, /home, /etc/hosts, /etc/resolv.conf) exist.
mkdir -p "$R"/{bin,etc,proc,sys,dev,tmp,home,var/tmp}
chmod 1777 "$R/tmp" "$R/var/tmp"
: >"$R/etc/hosts"
: >"$R/etc/resolv.conf"
cp /bin/busybox "$R/bin/busybox"
chmod 755 "$R/bin/busybox"
n_applets=0
while read -r applet; do
	[[ -n "$applet" && "$applet" != busybox && "$applet" != */* ]] || continue
	ln -s busybox "$R/bin/$applet"
	n_applets=$((n_applets + 1))
done < <(/bin/busybox --list)
[[ -L "$R/bin/true" ]] || die "busybox has no 'true' applet"
cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

# hpcrun, copied so that the unprivileged user can execute it.
mkdir -p "$TMP/bin"
cp "$HPCRUN" "$TMP/bin/hpcrun"
chmod 755 "$TMP/bin/hpcrun"

# The timing program, built from an isolated copy so that the state of the
# repository's go.mod cannot break it (stdlib only).
mkdir -p "$TMP/startlat-src"
cp "$ROOT/bench/startlat/main.go" "$TMP/startlat-src/"
printf 'module startlat\n\ngo 1.21\n' >"$TMP/startlat-src/go.mod"
gocache=$(go env GOCACHE 2>/dev/null || true)
if [[ -z "$gocache" ]] || ! mkdir -p "$gocache" 2>/dev/null || [[ ! -w "$gocache" ]]; then
	gocache=$TMP/gocache # e.g. HOME is not writable
fi
(cd "$TMP/startlat-src" && GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$gocache" \
	go build -o "$TMP/bin/startlat" .) || die "building bench/startlat failed"
chmod 755 "$TMP/bin/startlat"

# Home (and a runtime dir, as rootless runtimes like one) for the runner.
mkdir -p "$TMP/home" "$TMP/run"
chmod 700 "$TMP/run"

# The image: the rootfs as an OCI archive.
"$ROOT/examples/mkimage.sh" "$R" "$TMP/busybox.tar" PATH=/bin >/dev/null || die "examples/mkimage.sh failed"
chmod 644 "$TMP/busybox.tar"
mkdir -p "$TMP/cache"

# ---------------------------------------------------------------- run
[[ $(id -u) -eq 0 ]] && chown "$BENCH_UID:$BENCH_GID" "$TMP/home" "$TMP/run" "$TMP/cache"
bench_user "$TMP/home" "$TMP/run"

cd "$TMP/home"
# Unpack the image once (untimed); all contenders run on that rootfs.
"${as_user[@]}" "$TMP/bin/hpcrun" -q --cache "$TMP/cache/c" --image "$TMP/busybox.tar" true ||
	die "hpcrun could not unpack the benchmark image"
cached=$(echo "$TMP"/cache/c/images/*/rootfs)
[[ -d "$cached" ]] || die "no unpacked rootfs in $TMP/cache/c"
args=()
for c in "${CONTENDERS[@]}"; do
	c=${c//@ROOTFS@/$cached}
	c=${c//@IMAGE@/$TMP/busybox.tar}
	c=${c//@CACHE@/$TMP/cache/c}
	c=${c//@HPCRUN@/$TMP/bin/hpcrun}
	args+=("$c")
done

status=0
# shellcheck disable=SC2016 # the label is literal backquotes
"${as_user[@]}" "$TMP/bin/startlat" -n "$ROUNDS" -warmup "$WARMUP" -baseline "$BASELINE" \
	-label '`true`' "${args[@]}" || status=$?
if [[ $status -ne 0 ]]; then
	die "benchmark failed (exit $status); see the contender error above"
fi
