#!/usr/bin/env bash
# mkpython.sh OUT.tar [PACKAGE...]
# Builds a real Debian + Python 3 image with debootstrap, with the Debian
# PACKAGEs added, and packs it as an OCI archive (examples/mkimage.sh). The
# release differs from the host's, so the container's python3 --version
# differs from the host's; with criu, it is trixie, whose criu (4.1) hpcrun
# checkpoint can use:
#   mkpython.sh py3-criu.tar criu
# Needs root, for debootstrap, which it installs from apt when missing.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT.tar [PACKAGE...]" >&2; exit 2; }
out=$1
shift
include=python3
for p in "$@"; do include=$include,$p; done
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "mkpython: run as root (debootstrap needs it)" >&2; exit 1; }
. /etc/os-release
release=trixie
[ "${VERSION_CODENAME:-}" = trixie ] && [[ " $* " != *" criu "* ]] && release=bookworm
command -v debootstrap >/dev/null || {
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
work=$(mktemp -d /var/tmp/mkpython.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "mkpython: debootstrap Debian $release with $include (about a minute)"
debootstrap --variant=minbase --include="$include" "$release" "$work/rootfs" http://deb.debian.org/debian >"$work/log" 2>&1 ||
	{ tail -5 "$work/log" >&2; echo "mkpython: debootstrap failed" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
"$here/mkimage.sh" "$work/rootfs" "$out" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
chmod 644 "$out"
