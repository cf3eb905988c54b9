#!/usr/bin/env bash
# mkpython.sh OUT.tar
# Builds a real Debian + Python 3 image with debootstrap and packs it as an
# OCI archive (examples/mkimage.sh). The release differs from the host's, so
# the container's python3 --version differs from the host's. Needs root, for
# debootstrap, which it installs from apt when missing.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.tar" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "mkpython: run as root (debootstrap needs it)" >&2; exit 1; }
. /etc/os-release
release=trixie
[ "${VERSION_CODENAME:-}" = trixie ] && release=bookworm
command -v debootstrap >/dev/null || {
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
work=$(mktemp -d /var/tmp/mkpython.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "mkpython: debootstrap Debian $release with python3 (about a minute)"
debootstrap --variant=minbase --include=python3 "$release" "$work/rootfs" http://deb.debian.org/debian >"$work/log" 2>&1 ||
	{ tail -5 "$work/log" >&2; echo "mkpython: debootstrap failed" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
"$here/mkimage.sh" "$work/rootfs" "$out" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
chmod 644 "$out"
