#!/usr/bin/env bash
# bench/coldstart.sh - cold start of `hpcrun --image` vs umoci vs tar.
#
# Usage: bench/coldstart.sh [-n ROUNDS] [--hpcrun PATH] [--image PATH]
#          [--concurrent N] [--kernsim KERNEL] [--no-warmup]
#          [--samples FILE [--tag TAG]]
#
#   -n ROUNDS        measured rounds (default 5; 2 when BENCH_QUICK=1)
#   --hpcrun PATH    hpcrun binary (default: bin/hpcrun under the repo root,
#                    built with `make build` if it is missing)
#   --image PATH     OCI image archive (default /var/tmp/hpcrun-demo/py3.tar,
#                    built with examples/mkpython.sh when missing and root)
#   --concurrent N   one more contender, hpcrun-xN: N hpcrun processes started
#                    together on one empty cache (they unpack once)
#   --kernsim KERNEL one more contender, hpcrun-kernsim: hpcrun under
#                    `kernsim KERNEL` (4.18: RHEL 8), where newer syscalls fail
#                    (openat2, pidfds, ...) and hpcrun takes its fallbacks
#   --no-warmup      no warm-up round; the archive is read once instead
#   --samples FILE   append the samples ("TAG ROUND NAME MICROSECONDS") and
#                    hpcrun's peak RSS ("TAG rss hpcrun KIB") to FILE instead
#                    of printing the table; TAG defaults to the image's name
#                    (bench/bench.sh reports them)
#
# The work dir (the layout, the targets, the caches) is made under $BENCH_DIR,
# default /var/tmp.
# "Cold" means the image is not in hpcrun's cache yet, so hpcrun unpacks it.
# Each round runs every contender once, into a fresh directory after a sync
# (both untimed), in an order rotating from round to round; one warm-up round
# comes first and is not counted, so the page cache holds the archive for all.
# Contenders:
#   tar     tar -xzf of each layer blob in order (the floor; no whiteouts)
#   pigz    pigz -dc BLOB | tar -x, each layer in order
#   umoci   umoci unpack --rootless of the extracted OCI layout
#   hpcrun  hpcrun --cache FRESH --image IMAGE true: unpack AND start the
#           container and run `true`, the cold start a user sees
# Then hpcrun's (and umoci's) peak RSS during one more cold run, measured with
# GNU time (%M: the largest of the process and its waited-for children; the
# hpcrun unpacker is such a child). Everything runs as an unprivileged user:
# when started as root the script drops to uid/gid 65534 with setpriv, and
# installs missing peers (umoci, pigz, time) with apt-get. Exits non-zero, with the
# failing command's stderr, if any run fails.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=coldstart.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
CONTENDERS=(tar pigz umoci hpcrun) # the first is the baseline of the ratios

usage() { sed -n '2,23s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

# ---------------------------------------------------------------- arguments
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then ROUNDS=2; else ROUNDS=5; fi
HPCRUN="" IMAGE=/var/tmp/hpcrun-demo/py3.tar CONCURRENT=0 WARMUP=1 SAMPLES="" TAG="" KERNSIM=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	-n) [[ $# -ge 2 ]] || die "-n needs a value"; ROUNDS=$2; shift 2 ;;
	-n*) ROUNDS=${1#-n}; shift ;;
	--hpcrun) [[ $# -ge 2 ]] || die "--hpcrun needs a value"; HPCRUN=$2; shift 2 ;;
	--hpcrun=*) HPCRUN=${1#--hpcrun=}; shift ;;
	--image) [[ $# -ge 2 ]] || die "--image needs a value"; IMAGE=$2; shift 2 ;;
	--image=*) IMAGE=${1#--image=}; shift ;;
	--concurrent) [[ $# -ge 2 ]] || die "--concurrent needs a value"; CONCURRENT=$2; shift 2 ;;
	--concurrent=*) CONCURRENT=${1#--concurrent=}; shift ;;
	--kernsim) [[ $# -ge 2 ]] || die "--kernsim needs a value"; KERNSIM=$2; shift 2 ;;
	--kernsim=*) KERNSIM=${1#--kernsim=}; shift ;;
	--no-warmup) WARMUP=0; shift ;;
	--samples) [[ $# -ge 2 ]] || die "--samples needs a value"; SAMPLES=$2; shift 2 ;;
	--samples=*) SAMPLES=${1#--samples=}; shift ;;
	--tag) [[ $# -ge 2 ]] || die "--tag needs a value"; TAG=$2; shift 2 ;;
	--tag=*) TAG=${1#--tag=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive integer, got '$ROUNDS'"
[[ "$CONCURRENT" =~ ^[0-9]+$ ]] || die "--concurrent wants a number, got '$CONCURRENT'"
[[ "$TAG" != *[[:space:]]* ]] || die "--tag must be one word"
[[ $CONCURRENT -lt 2 ]] || CONTENDERS+=("hpcrun-x$CONCURRENT")
if [[ -n "$KERNSIM" ]]; then
	[[ "$KERNSIM" =~ ^[0-9]+\.[0-9]+$ ]] || die "--kernsim wants a kernel version such as 4.18, got '$KERNSIM'"
	command -v kernsim >/dev/null 2>&1 || die "kernsim not found: build it from ../shared/tools/kernsim.c"
	CONTENDERS+=(hpcrun-kernsim)
fi
[[ ${BASH_VERSINFO[0]} -ge 5 ]] || die "needs bash 5 (for EPOCHREALTIME)"
IS_ROOT=0; [[ $(id -u) -eq 0 ]] && IS_ROOT=1

# ---------------------------------------------------------------- peers
install_missing umoci=umoci pigz=pigz /usr/bin/time=time
UMOCI=$(command -v umoci) || die "umoci not found after install"
PIGZ=$(command -v pigz) || die "pigz not found after install"
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) not found after install"
command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to read index.json)"
[[ $IS_ROOT -eq 0 ]] || command -v setpriv >/dev/null 2>&1 || die "setpriv (util-linux) not found"

# ---------------------------------------------------------------- hpcrun, image
if [[ -z "$HPCRUN" ]]; then
	HPCRUN=$ROOT/bin/hpcrun
	if [[ ! -x "$HPCRUN" ]]; then
		echo "coldstart.sh: $HPCRUN missing; running make build" >&2
		make -C "$ROOT" build >&2 || die "make build failed"
	fi
fi
[[ -f "$HPCRUN" && -x "$HPCRUN" ]] || die "hpcrun binary '$HPCRUN' not found or not executable"
if [[ ! -f "$IMAGE" ]]; then
	[[ $IS_ROOT -eq 1 ]] || die "image '$IMAGE' missing; build it as root with: examples/mkpython.sh $IMAGE"
	echo "coldstart.sh: $IMAGE missing; building it with examples/mkpython.sh (about a minute)" >&2
	"$ROOT/examples/mkpython.sh" "$IMAGE" >&2 || die "examples/mkpython.sh $IMAGE failed"
fi
IMAGE=$(cd "$(dirname "$IMAGE")" && pwd)/$(basename "$IMAGE")
[[ -n "$TAG" ]] || TAG=$(basename "$IMAGE")
[[ -z "$SAMPLES" ]] || { : >>"$SAMPLES" && SAMPLES=$(cd "$(dirname "$SAMPLES")" && pwd)/$(basename "$SAMPLES"); } ||
	die "cannot write to $SAMPLES"

# ---------------------------------------------------------------- work dir
# Under /var/tmp, not /tmp: the e2e tests read /tmp/hpcrun* as leftovers.
# BENCH_DIR puts it elsewhere, e.g. on a tmpfs, to keep a slow disk out.
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/hpcrun-coldbench.XXXXXX")
rmtree() { chmod -R u+rwX "$1" 2>/dev/null || true; rm -rf "$1" 2>/dev/null || true; }
trap 'rmtree "$W"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 755 "$W"
mkdir -p "$W/bin" "$W/home" "$W/run" "$W/layout"
chmod 700 "$W/run"
cp "$HPCRUN" "$W/bin/hpcrun" && chmod 755 "$W/bin/hpcrun"
tar -xf "$IMAGE" -C "$W/layout" || die "cannot extract $IMAGE (not a tar?)"
[[ -f "$W/layout/index.json" ]] || die "$IMAGE holds no index.json: not an OCI image archive"

# The manifest (through nested indexes), its layers in order, and the tag that
# umoci wants (layout:TAG): added to index.json as "bench" when there is none.
mapfile -t meta < <(python3 - "$W/layout" <<'EOF'
import json, os, sys
d = sys.argv[1]
blob = lambda dg: os.path.join(d, "blobs", *dg.split(":", 1))
idx = json.load(open(os.path.join(d, "index.json")))
if not idx.get("manifests"):
    sys.exit("index.json lists no manifests")
top = idx["manifests"][0]
ann = top.setdefault("annotations", {})
tag = ann.get("org.opencontainers.image.ref.name")
if not tag:
    tag = ann["org.opencontainers.image.ref.name"] = "bench"
    json.dump(idx, open(os.path.join(d, "index.json"), "w"))
m = json.load(open(blob(top["digest"])))
arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine)
while "manifests" in m:  # a nested index: this node's platform, else the first
    ms = [x for x in m["manifests"] if x.get("platform", {}).get("architecture", arch) == arch]
    m = json.load(open(blob((ms or m["manifests"])[0]["digest"])))
print(tag)
for l in m["layers"]:
    mt = l.get("mediaType", "")
    kind = "zstd" if "zstd" in mt else "gzip" if "gzip" in mt else "plain"
    print(kind, blob(l["digest"]), l["size"])
EOF
) || die "cannot read the OCI layout of $IMAGE"
[[ ${#meta[@]} -ge 2 ]] || die "$IMAGE: manifest has no layers"
REF=${meta[0]}
LAYERS=("${meta[@]:1}")
compressed=0
for l in "${LAYERS[@]}"; do compressed=$((compressed + ${l##* })); done

# Make everything the user's (umoci writes into the layout while it reads it).
[[ $IS_ROOT -eq 1 ]] && chown -R "$BENCH_UID:$BENCH_GID" "$W/home" "$W/run" "$W/layout"
bench_user "$W/home" "$W/run"
if ! "${drop[@]}" test -r "$IMAGE"; then
	cp "$IMAGE" "$W/image.tar" && chmod 644 "$W/image.tar" && IMAGE=$W/image.tar
fi
cd "$W/home"

# ---------------------------------------------------------------- contenders
# run_NAME TARGET: one cold unpack into the fresh, empty, user-owned TARGET.
run_tar() {
	local kind path rc flag
	for l in "${LAYERS[@]}"; do
		read -r kind path _ <<<"$l"
		case $kind in gzip) flag=(-z) ;; zstd) flag=(--zstd) ;; *) flag=() ;; esac
		rc=0; "${as_user[@]}" tar "${flag[@]}" -xf "$path" -C "$1/rootfs" 2>>"$W/err" || rc=$?
		# Unprivileged tar cannot make device nodes (neither does umoci --rootless).
		[[ $rc -eq 0 ]] || { [[ $rc -eq 2 ]] && ! grep -qv -e 'Cannot mknod' -e 'Exiting with failure' "$W/err"; } || return 1
	done
}
run_pigz() {
	local kind path
	for l in "${LAYERS[@]}"; do
		read -r kind path _ <<<"$l"
		[[ $kind == gzip ]] || { run_tar "$1"; return; } # pigz reads gzip only
		# shellcheck disable=SC2016 # expanded by the inner shell
		"${as_user[@]}" sh -c '"$1" -dc "$2" | tar -xf - -C "$3"' sh "$PIGZ" "$path" "$1/rootfs" 2>>"$W/err" || {
			! grep -qv -e 'Cannot mknod' -e 'Exiting with failure' "$W/err" || return 1
		}
	done
}
run_umoci() { "${as_user[@]}" "$UMOCI" unpack --rootless --image "$W/layout:$REF" "$1/bundle" 2>"$W/err"; }
run_hpcrun() { "${as_user[@]}" "$W/bin/hpcrun" --cache "$1/cache" --image "$IMAGE" true 2>"$W/err"; }
run_hpcrun-kernsim() { "${as_user[@]}" kernsim "$KERNSIM" -- "$W/bin/hpcrun" --cache "$1/cache" --image "$IMAGE" true 2>"$W/err"; }
# N hpcrun processes started together on one empty cache; done when all are.
run_hpcrun_many() {
	local i rc=0 pids=()
	for ((i = 0; i < CONCURRENT; i++)); do
		"${as_user[@]}" "$W/bin/hpcrun" --cache "$1/cache" --image "$IMAGE" true 2>>"$W/err" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || rc=1; done
	return $rc
}

# fresh: a new empty target, owned by the user, with rootfs/ for tar; synced
# so that writeback of the run before does not bleed in. Prints its path.
fresh() {
	rmtree "$W/t"; mkdir -p "$W/t/rootfs"
	[[ $IS_ROOT -eq 0 ]] || chown -R "$BENCH_UID:$BENCH_GID" "$W/t"
	sync; echo "$W/t"
}

# timed NAME ROUND: one run, appends "ROUND NAME SECONDS" to the samples.
timed() {
	local t t0 t1
	t=$(fresh); : >"$W/err"
	t0=${EPOCHREALTIME//[!0-9]/}
	local fn=run_$1
	[[ $1 != hpcrun-x* ]] || fn=run_hpcrun_many
	"$fn" "$t" </dev/null >/dev/null || { tail -n 30 "$W/err" >&2; die "$1 failed (round $2)"; }
	t1=${EPOCHREALTIME//[!0-9]/}
	[[ $2 -eq 0 ]] || printf '%d %s %d\n' "$2" "$1" $((t1 - t0)) >>"$W/samples"
	[[ $1 != tar || $unpacked -ne 0 ]] || unpacked=$(du -sb "$t/rootfs" | cut -f1)
}

# ---------------------------------------------------------------- run
: >"$W/samples"
unpacked=0
nc=${#CONTENDERS[@]}
[[ $WARMUP -eq 1 ]] || cat "$IMAGE" >/dev/null # the archive in the page cache
for ((r = 1 - WARMUP; r <= ROUNDS; r++)); do # round 0 is the warm-up
	printf 'coldstart.sh: round %d/%d%s\n' "$r" "$ROUNDS" "$([[ $r -eq 0 ]] && echo ' (warm-up)')" >&2
	for ((i = 0; i < nc; i++)); do timed "${CONTENDERS[(i + r) % nc]}" "$r"; done
done

# Peak RSS of one more cold run each, in KiB.
rss() {
	local t; t=$(fresh); : >"$W/err"
	case $1 in
	hpcrun) "${as_user[@]}" /usr/bin/time -f %M -o "$W/home/rss" "$W/bin/hpcrun" --cache "$t/cache" --image "$IMAGE" true ;;
	umoci) "${as_user[@]}" /usr/bin/time -f %M -o "$W/home/rss" "$UMOCI" unpack --rootless --image "$W/layout:$REF" "$t/bundle" ;;
	esac </dev/null >/dev/null 2>"$W/err" || { tail -n 30 "$W/err" >&2; die "$1 failed (peak RSS run)"; }
	tail -n1 "$W/home/rss"
}
rss_hpcrun=$(rss hpcrun)
if [[ -n "$SAMPLES" ]]; then
	rmtree "$W/t"
	{ sed "s/^/$TAG /" "$W/samples"; printf '%s rss hpcrun %d\n' "$TAG" "$rss_hpcrun"
	  printf '%s size unpacked %d\n' "$TAG" "$unpacked"; } >>"$SAMPLES"
	exit 0
fi
rss_umoci=$(rss umoci)
rmtree "$W/t"

# ---------------------------------------------------------------- report
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
printf 'cold start of %s: archive %s, %d layer(s), %s compressed, %s unpacked\n' \
	"$(basename "$IMAGE")" "$(mib "$(stat -c %s "$IMAGE")")" "${#LAYERS[@]}" "$(mib "$compressed")" "$(mib "$unpacked")"
printf '%d interleaved rounds + 1 warm-up, uid %s, kernel %s, %d CPUs, fresh target each run\n' \
	"$ROUNDS" "$("${drop[@]}" id -u)" "$(uname -r)" "$(nproc)"
echo "hpcrun = unpack + start the container + run \`true\` (the cold start a user sees)"
python3 - "$W/samples" "${CONTENDERS[@]}" <<'EOF'
import statistics as st, sys
names, base = sys.argv[2:], sys.argv[2]
s = {n: {} for n in names}
for line in open(sys.argv[1]):
    r, n, us = line.split()
    s[n][int(r)] = int(us) / 1e6
rows = [("contender", "median s", "min", "max", "ratio vs " + base, "paired ratio")]
for n in names:
    v = list(s[n].values())
    paired = [s[n][r] / s[base][r] for r in s[n]]
    ratio = ("-", "-") if n == base else ("%.2fx" % (st.median(v) / st.median(s[base].values())), "%.2fx" % st.median(paired))
    rows.append((n, "%.3f" % st.median(v), "%.3f" % min(v), "%.3f" % max(v)) + ratio)
w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for r in rows:
    print("   ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
EOF
printf 'peak RSS (GNU time %%M, incl. waited-for children): hpcrun %s, umoci %s\n' \
	"$(mib $((rss_hpcrun * 1024)))" "$(mib $((rss_umoci * 1024)))"
