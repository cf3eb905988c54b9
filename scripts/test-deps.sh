#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages, when it is
# missing: busybox-static (the end-to-end tests' rootfs), runc (to prove the
# spec output runs), util-linux (setpriv, unshare), iproute2 and debootstrap
# (for the Debian + Python image, examples/mkpython.sh), nftables (a registry
# address that drops packets, in a network namespace of a test's), lmod (to load the
# modulefiles that `make install` writes), man-db, bash-completion, zsh and
# fish (to read the man pages and load the completion scripts it writes),
# keyutils (keyctl: a key in the caller's session keyring), squashfs-tools
# (mksquashfs: the squashfs inside the tests' SIF images).
# Test-only: hpcrun itself depends on none of them.
set -euo pipefail
need=()
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || need+=(busybox-static)
command -v runc >/dev/null || need+=(runc)
command -v setpriv >/dev/null && command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v nft >/dev/null || need+=(nftables)
[ -r /etc/profile.d/lmod.sh ] || need+=(lmod)
command -v man >/dev/null || need+=(man-db)
[ -r /usr/share/bash-completion/bash_completion ] || need+=(bash-completion)
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
command -v keyctl >/dev/null || need+=(keyutils)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "the tests need these Debian packages: ${need[*]}; install them (sudo apt-get install ${need[*]}) or run as root" >&2
	exit 1
fi
echo "installing test dependencies: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
