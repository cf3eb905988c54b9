#!/usr/bin/env bash
# The demo: builds hpcrun and, once, a real Debian + Python 3 image as an OCI
# archive (a different Debian release than the host's, so its python3
# differs), then runs a Python script in it with hpcrun, rootless:
#   make demo
# As root it needs no setup (debootstrap comes from apt) and runs the job as
# the unprivileged user nobody. Otherwise point HPCRUN_DEMO_IMAGE at an image
# archive that has python3.
set -euo pipefail
cd "$(dirname "$0")/.."
hpcrun=$PWD/bin/hpcrun
[ -x "$hpcrun" ] || make build
image=${HPCRUN_DEMO_IMAGE:-/var/tmp/hpcrun-demo/py3.tar}
if [ ! -f "$image" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "demo: no image at $image; run 'make demo' once as root to build it, or set HPCRUN_DEMO_IMAGE" >&2
		exit 125
	fi
	examples/mkpython.sh "$image"
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
echo "+ hpcrun --image $image python3 hello.py --arg 1"
cd "$work"
"${run[@]}" "$hpcrun" --image "$image" python3 hello.py --arg 1
