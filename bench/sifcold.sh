#!/usr/bin/env bash
# bench/sifcold.sh - cold start of one image as a SIF against as an OCI archive.
#
# Usage: bench/sifcold.sh [-n ROUNDS] [--hpcrun PATH] [--image PATH] [--comp C,...]
#
#   -n ROUNDS      measured rounds (default 5; 2 when BENCH_QUICK=1)
#   --hpcrun PATH  hpcrun binary (default: bin/hpcrun under the repo root)
#   --image PATH   OCI image archive (default /var/tmp/hpcrun-demo/py3.tar,
#                  built with examples/mkpython.sh when missing and root)
#   --comp C,...   squashfs compressions to build a SIF with (default gzip,zstd;
#                  gzip is what apptainer build uses)
#
# The SIF is built from the archive: hpcrun unpacks it, mksquashfs squashes
# the rootfs (-all-root -no-xattrs, as apptainer build does), and bench/mksif
# wraps that in a SIF. Each round then runs, in a rotating order, into a
# fresh empty cache after a sync (untimed):
#   oci       hpcrun --cache FRESH --image IMAGE.tar true
#   sif-COMP  hpcrun --cache FRESH --image IMAGE-COMP.sif true
# each the cold start a user sees: hash and unpack the image, start the
# container, run `true`. One warm-up round comes first, so that the page
# cache holds every image. Wall times, and the CPU time of hpcrun and its
# unpacker (GNU time), which a busy machine disturbs less. Runs as uid
# 65534 when started as root.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=sifcold.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

usage() { sed -n '2,23s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then ROUNDS=2; else ROUNDS=5; fi
HPCRUN=$ROOT/bin/hpcrun IMAGE=/var/tmp/hpcrun-demo/py3.tar COMPS=gzip,zstd
while [[ $# -gt 0 ]]; do
	case "$1" in
	-n) [[ $# -ge 2 ]] || die "-n needs a value"; ROUNDS=$2; shift 2 ;;
	--hpcrun) [[ $# -ge 2 ]] || die "--hpcrun needs a value"; HPCRUN=$2; shift 2 ;;
	--image) [[ $# -ge 2 ]] || die "--image needs a value"; IMAGE=$2; shift 2 ;;
	--comp) [[ $# -ge 2 ]] || die "--comp needs a value"; COMPS=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive integer, got '$ROUNDS'"
[[ ${BASH_VERSINFO[0]} -ge 5 ]] || die "needs bash 5 (for EPOCHREALTIME)"
install_missing mksquashfs=squashfs-tools /usr/bin/time=time
[[ -x "$HPCRUN" ]] || make -C "$ROOT" build >&2 || die "make build failed"
if [[ ! -f "$IMAGE" ]]; then
	[[ $(id -u) -eq 0 ]] || die "image '$IMAGE' missing; build it as root with: examples/mkpython.sh $IMAGE"
	"$ROOT/examples/mkpython.sh" "$IMAGE" >&2 || die "examples/mkpython.sh $IMAGE failed"
fi

# Under /var/tmp, not /tmp: the e2e tests read /tmp/hpcrun* as leftovers.
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/hpcrun-sifbench.XXXXXX")
rmtree() { chmod -R u+rwX "$1" 2>/dev/null || true; rm -rf "$1" 2>/dev/null || true; }
trap 'rmtree "$W"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 755 "$W"
mkdir -p "$W/bin" "$W/home" "$W/run" "$W/img"
chmod 700 "$W/run"
cp "$HPCRUN" "$W/bin/hpcrun"
(cd "$ROOT" && go build -o "$W/bin/mksif" ./bench/mksif) || die "cannot build bench/mksif"
chmod 755 "$W/bin/hpcrun" "$W/bin/mksif" "$W/img"
cp "$IMAGE" "$W/img/oci.tar"
[[ $(id -u) -ne 0 ]] || chown -R "$BENCH_UID:$BENCH_GID" "$W/home" "$W/run"
bench_user "$W/home" "$W/run"
cd "$W/home"

# The SIFs, from the archive's rootfs.
"${as_user[@]}" "$W/bin/hpcrun" -q --cache "$W/home/c0" --image "$W/img/oci.tar" true || die "hpcrun cannot run $IMAGE"
rootfs=$(echo "$W"/home/c0/images/*/rootfs)
CONTENDERS=(oci)
IFS=, read -ra comps <<<"$COMPS"
for c in "${comps[@]}"; do
	mksquashfs "$rootfs" "$W/img/$c.squashfs" -comp "$c" -all-root -no-xattrs -noappend -quiet -no-progress >&2 ||
		die "mksquashfs -comp $c failed"
	"$W/bin/mksif" "$W/img/$c.squashfs" "$W/img/sif-$c.sif" || die "mksif failed"
	rm "$W/img/$c.squashfs"
	CONTENDERS+=("sif-$c")
done
chmod 644 "$W"/img/*
rmtree "$W/home/c0"

image_of() { if [[ $1 == oci ]]; then echo "$W/img/oci.tar"; else echo "$W/img/$1.sif"; fi; }
: >"$W/samples"
nc=${#CONTENDERS[@]}
for ((r = 0; r <= ROUNDS; r++)); do # round 0 is the warm-up
	printf '%s: round %d/%d%s\n' "$PROG" "$r" "$ROUNDS" "$([[ $r -eq 0 ]] && echo ' (warm-up)')" >&2
	for ((i = 0; i < nc; i++)); do
		n=${CONTENDERS[(i + r) % nc]}
		rmtree "$W/home/c"; sync
		t0=${EPOCHREALTIME//[!0-9]/}
		"${as_user[@]}" /usr/bin/time -f '%U %S' -o "$W/home/cpu" "$W/bin/hpcrun" -q --cache "$W/home/c" --image "$(image_of "$n")" true \
			</dev/null >/dev/null 2>"$W/err" || { cat "$W/err" >&2; die "$n failed (round $r)"; }
		t1=${EPOCHREALTIME//[!0-9]/}
		[[ $r -eq 0 ]] || printf '%d %s %d %s\n' "$r" "$n" $((t1 - t0)) "$(tail -n1 "$W/home/cpu")" >>"$W/samples"
	done
done
rmtree "$W/home/c"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
printf 'cold start of %s as an OCI archive and as SIF: %d interleaved rounds + 1 warm-up, kernel %s, %d CPUs\n' \
	"$(basename "$IMAGE")" "$ROUNDS" "$(uname -r)" "$(nproc)"
for n in "${CONTENDERS[@]}"; do printf '  %-10s %s\n' "$n" "$(mib "$(stat -c %s "$(image_of "$n")")")"; done
python3 - "$W/samples" "${CONTENDERS[@]}" <<'PY'
import statistics as st, sys
names = sys.argv[2:]
s = {n: {} for n in names}
cpu = {n: [] for n in names}
for line in open(sys.argv[1]):
    r, n, us, u, sy = line.split()
    s[n][int(r)] = int(us) / 1e6
    cpu[n].append(float(u) + float(sy))
rows = [("image", "median s", "min", "max", "vs oci", "paired", "CPU s (user+sys)")]
for n in names:
    v = list(s[n].values())
    paired = st.median([s[n][r] / s["oci"][r] for r in s[n]])
    rows.append((n, "%.3f" % st.median(v), "%.3f" % min(v), "%.3f" % max(v), "%.2fx" % (st.median(v) / st.median(s["oci"].values())),
                 "%.2fx" % paired, "%.2f" % st.median(cpu[n])))
w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for r in rows:
    print("   ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
PY
