#!/usr/bin/env bash
# mkmpi.sh OUT.tar
# Builds a Debian 12 (bookworm) + Open MPI image with examples/mpi/hello.c
# compiled in as /hello, and packs it as an OCI archive (examples/mkimage.sh).
# bookworm's Open MPI 4.1.4 is built against PMIx 4.2.2 (libpmix2), the PMIx
# that Slurm's mpi/pmix plugin loads on a Debian 12 host, so that
# `srun --mpi=pmix hpcrun --image OUT.tar /hello` wires up. The compiler and
# the headers are removed again once /hello is built; openmpi-bin (mpirun)
# stays. Needs root, for debootstrap and chroot; installs debootstrap from apt
# when missing.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.tar" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "mkmpi: run as root (debootstrap and chroot need it)" >&2; exit 1; }
release=bookworm
mirror=http://deb.debian.org/debian
command -v debootstrap >/dev/null || {
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
work=$(mktemp -d /var/tmp/mkmpi.XXXXXX)
root=$work/rootfs
cleanup() {
	mountpoint -q "$root/proc" && umount "$root/proc"
	rm -rf "$work"
}
trap cleanup EXIT
log() { echo "mkmpi: $* ($SECONDS s)"; }
fail() { tail -15 "$work/log" >&2; echo "mkmpi: $*" >&2; exit 1; }

# The runtime by debootstrap (Depends only, never Recommends); the build
# tools by apt in the chroot, so that apt knows what they pulled in and
# removes it with them.
log "debootstrap Debian $release with openmpi-bin"
debootstrap --variant=minbase --include=openmpi-bin "$release" "$root" "$mirror" >"$work/log" 2>&1 ||
	fail "debootstrap failed"
mount -t proc proc "$root/proc"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }
log "installing gcc and libopenmpi-dev"
in_root apt-get install -y -q --no-install-recommends gcc libc6-dev libopenmpi-dev >"$work/log" 2>&1 ||
	fail "apt-get install gcc libopenmpi-dev failed"
install -m 0644 "$here/mpi/hello.c" "$root/tmp/hello.c"
in_root mpicc -O2 -Wall -o /hello /tmp/hello.c >"$work/log" 2>&1 || fail "mpicc hello.c failed"
rm -f "$root/tmp/hello.c"
log "removing the build tools"
in_root apt-get purge -y -q --autoremove gcc libc6-dev libopenmpi-dev >"$work/log" 2>&1 ||
	fail "apt-get purge failed"
if ! in_root ldd /hello >"$work/log" 2>&1 || grep -q 'not found' "$work/log"; then
	fail "/hello misses libraries once the build tools are gone"
fi
in_root apt-get clean
umount "$root/proc"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/usr/share/doc/* \
	"$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
mkdir -p "$(dirname "$out")"
"$here/mkimage.sh" "$root" "$out" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
chmod 644 "$out"
log "done: $out, $(($(stat -c %s "$out") / 1024 / 1024)) MiB"
