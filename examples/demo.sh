#!/usr/bin/env bash
# The demo: builds a Debian + Python 3 root filesystem once (a different
# Debian release than the host's, so its python3 differs), then runs a Python
# script in it with hpcrun, rootless. Run it from the repository root:
#   make demo
# As root it needs no setup (debootstrap comes from apt) and runs the job as
# the unprivileged user nobody. Otherwise point HPCRUN_DEMO_ROOTFS at an
# unpacked image that has python3.
set -euo pipefail
cd "$(dirname "$0")/.."
hpcrun=$PWD/bin/hpcrun
[ -x "$hpcrun" ] || make build

. /etc/os-release
release=trixie
[ "${VERSION_CODENAME:-}" = trixie ] && release=bookworm
rootfs=${HPCRUN_DEMO_ROOTFS:-/var/tmp/hpcrun-demo/debian-$release-python3}

if [ ! -x "$rootfs/usr/bin/python3" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "demo: no Python image at $rootfs; run 'make demo' once as root to build it, or set HPCRUN_DEMO_ROOTFS" >&2
		exit 125
	fi
	command -v debootstrap >/dev/null || {
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	}
	echo "demo: building a Debian $release + python3 rootfs in $rootfs (about a minute, once)"
	tmp=$rootfs.tmp.$$
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$(dirname "$rootfs")"
	debootstrap --variant=minbase --include=python3 "$release" "$tmp" http://deb.debian.org/debian >"$tmp.log" 2>&1 ||
		{ tail -5 "$tmp.log" >&2; rm -f "$tmp.log"; echo "demo: debootstrap failed" >&2; exit 125; }
	rm -f "$tmp.log"
	mv "$tmp" "$rootfs"
	trap - EXIT
fi

work=$(mktemp -d /tmp/hpcrun-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp examples/hello.py "$work/"
chmod -R a+rX "$work"
run=()
if [ "$(id -u)" -eq 0 ]; then
	# Show the rootless path: run as nobody, with a home of its own.
	mkdir "$work/home" && chown 65534:65534 "$work/home"
	cp "$hpcrun" "$work/hpcrun" && hpcrun=$work/hpcrun
	run=(setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$work/home" USER=nobody)
fi
echo "host:      $(python3 --version 2>&1 || echo 'no python3'), $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "+ hpcrun --rootfs $rootfs python3 hello.py --arg 1"
cd "$work"
"${run[@]}" "$hpcrun" --rootfs "$rootfs" python3 hello.py --arg 1
