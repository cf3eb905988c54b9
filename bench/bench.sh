#!/usr/bin/env bash
# bench/bench.sh - hpcrun against its peers, in one table (`make bench`).
#
# Usage: bench/bench.sh [--hpcrun PATH]
#
#   --hpcrun PATH  hpcrun binary (default: bin/hpcrun under the repo root,
#                  built with `make build` if it is missing)
#
# BENCH_QUICK=1 takes fewer rounds (under 2 minutes once the images exist);
# BENCH_DIR=DIR puts the work dir (targets, caches) there instead of /dev/shm
# (a tmpfs, so that the disk's noise stays out; /var/tmp when there is none).
#
# Measures, all as an unprivileged user (uid/gid 65534 via setpriv when run
# as root), each part in paired rounds whose order rotates from round to round:
#   warm start of `true` and of `python3 -c pass` in the Python image: hpcrun
#     --rootfs on the unpacked image and --image on the cached archive, bwrap
#     with hpcrun's default binds (the baseline) and with / /proc /dev alone,
#     ch-run, rootless runc (a bundle from `hpcrun spec`) and native; ratios
#     vs bwrap (bench/startlat);
#   hpcrun --version against an empty static Go program: the fixed cost of
#     starting hpcrun's binary;
#   srun -N1 -n 4 hpcrun true, the 4 tasks joined in one container against
#     4 containers (--no-join), on the test cluster (scripts/slurm-up.sh,
#     run as root; skipped without srun);
#   as root, where the time of a warm `true` goes (bench/phases.py, from the
#     kernel's tracepoints with perf), next to bwrap's total;
#   cold start, empty cache, of the Python image and of the two-layer numpy
#     image: hpcrun vs tar -xzf of the layers (the floor), pigz -dc | tar -x
#     and umoci unpack --rootless; ratios vs tar (bench/coldstart.sh);
#   hpcrun's peak RSS during a cold start (GNU time %M);
#   8 hpcrun processes started together on one empty cache (the Python image)
#     vs one cold start.
# As root it builds the images when missing (examples/mkpython.sh into
# /var/tmp/hpcrun-demo/py3.tar, examples/mknumpy.sh into numpy.tar there) and
# installs the peers when missing (bubblewrap, charliecloud, umoci, runc, pigz,
# time, linux-perf). Exits non-zero, with the failing contender's stderr, if a run fails.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=bench.sh
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
DEMO=/var/tmp/hpcrun-demo
PY_IMAGE=$DEMO/py3.tar
NP_IMAGE=$DEMO/numpy.tar
CONCURRENT=8

usage() { sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

HPCRUN=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	--hpcrun) [[ $# -ge 2 ]] || die "--hpcrun needs a value"; HPCRUN=$2; shift 2 ;;
	--hpcrun=*) HPCRUN=${1#--hpcrun=}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
	WARM_ROUNDS=30 WARM_WARMUP=3 COLD=(-n 1 --no-warmup) JOIN_ROUNDS=5 PHASE_ROUNDS=5
else
	WARM_ROUNDS=200 WARM_WARMUP=5 COLD=(-n 5) JOIN_ROUNDS=21 PHASE_ROUNDS=41
fi
IS_ROOT=0; [[ $(id -u) -eq 0 ]] && IS_ROOT=1
T_START=${EPOCHREALTIME/./}

# ---------------------------------------------------------------- peers
install_missing bwrap=bubblewrap ch-run=charliecloud-runtime umoci=umoci runc=runc pigz=pigz /usr/bin/time=time
for c in bwrap ch-run umoci runc pigz go python3; do
	command -v "$c" >/dev/null 2>&1 || die "$c not found"
done
[[ $IS_ROOT -eq 0 ]] || command -v setpriv >/dev/null 2>&1 || die "setpriv (util-linux) not found"

# ---------------------------------------------------------------- hpcrun, images
if [[ -z "$HPCRUN" ]]; then
	HPCRUN=$ROOT/bin/hpcrun
	[[ -x "$HPCRUN" ]] || make -C "$ROOT" build >&2 || die "make build failed"
fi
[[ -f "$HPCRUN" && -x "$HPCRUN" ]] || die "hpcrun binary '$HPCRUN' not found or not executable"
HPCRUN=$(cd "$(dirname "$HPCRUN")" && pwd)/$(basename "$HPCRUN")
if [[ ! -f "$PY_IMAGE" ]]; then
	[[ $IS_ROOT -eq 1 ]] || die "$PY_IMAGE missing; build it as root with examples/mkpython.sh $PY_IMAGE"
	"$ROOT/examples/mkpython.sh" "$PY_IMAGE" >&2 || die "examples/mkpython.sh failed"
fi
if [[ ! -f "$NP_IMAGE" ]]; then
	[[ $IS_ROOT -eq 1 ]] || die "$NP_IMAGE missing; build it as root with examples/mknumpy.sh $PY_IMAGE $NP_IMAGE"
	"$ROOT/examples/mknumpy.sh" "$PY_IMAGE" "$NP_IMAGE" >&2 || die "examples/mknumpy.sh failed"
fi

# ---------------------------------------------------------------- work dir
if [[ -z "${BENCH_DIR:-}" ]]; then
	BENCH_DIR=/var/tmp
	[[ $(stat -f -c %T /dev/shm 2>/dev/null) != tmpfs ]] || BENCH_DIR=/dev/shm
fi
export BENCH_DIR
W=$(mktemp -d "$BENCH_DIR/hpcrun-bench.XXXXXX")
rmtree() { chmod -R u+rwX "$1" 2>/dev/null || true; rm -rf "$1" 2>/dev/null || true; }
trap 'rmtree "$W"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 755 "$W"
[[ "$W" != *[[:space:]\'\"\\]* ]] || die "work dir '$W' contains blanks or quotes; set BENCH_DIR"
mkdir -p "$W/bin" "$W/home" "$W/run" "$W/runc" "$W/cache" "$W/src"
chmod 700 "$W/run"
cp "$HPCRUN" "$W/bin/hpcrun" && chmod 755 "$W/bin/hpcrun"
cp "$ROOT/bench/startlat/main.go" "$W/src/"
printf 'module startlat\n\ngo 1.21\n' >"$W/src/go.mod"
gocache=$(go env GOCACHE 2>/dev/null || true)
if [[ -z "$gocache" ]] || ! mkdir -p "$gocache" 2>/dev/null || [[ ! -w "$gocache" ]]; then gocache=$W/gocache; fi
(cd "$W/src" && GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$gocache" \
	go build -o "$W/bin/startlat" .) || die "building bench/startlat failed"
cp "$PY_IMAGE" "$W/py3.tar" && chmod 644 "$W/py3.tar"
SAMPLES=$W/samples
: >"$SAMPLES"

if [[ $IS_ROOT -eq 1 ]]; then
	chown -R "$BENCH_UID:$BENCH_GID" "$W/home" "$W/run" "$W/runc" "$W/cache"
	chmod 666 "$SAMPLES"
fi
bench_user "$W/home" "$W/run"
cd "$W/home"

# ---------------------------------------------------------------- warm
# The Python image, unpacked once (untimed); every warm contender runs on it.
"${as_user[@]}" "$W/bin/hpcrun" -q --cache "$W/cache" --image "$W/py3.tar" true ||
	die "hpcrun could not unpack $PY_IMAGE"
rootfs=$(echo "$W"/cache/images/*/rootfs)
[[ -d "$rootfs" ]] || die "no unpacked rootfs in $W/cache"
# runc bundles: config.json from `hpcrun spec`, root.path the cached rootfs.
for b in true python; do
	mkdir -p "$W/bundle-$b"
	cmd=(true); [[ $b == true ]] || cmd=(python3 -c pass)
	"${as_user[@]}" "$W/bin/hpcrun" -q --cache "$W/cache" spec --image "$W/py3.tar" -- "${cmd[@]}" >"$W/bundle-$b/config.json" ||
		die "hpcrun spec failed"
done
[[ $IS_ROOT -eq 0 ]] || chown -R "$BENCH_UID:$BENCH_GID" "$W"/bundle-*

warm() { # TAG BUNDLE CMD...
	local tag=$1 bundle=$2; shift 2
	local line="$*"
	"${as_user[@]}" "$W/bin/startlat" -n "$WARM_ROUNDS" -warmup "$WARM_WARMUP" -baseline bwrap \
		-samples "$SAMPLES" -tag "$tag" -label "\`$line\`" \
		"native=$line" \
		"bwrap=bwrap --unshare-user --unshare-pid --ro-bind $rootfs / --proc /proc $BWRAP_BINDS $line" \
		"bwrap-min=bwrap --unshare-user --unshare-pid --ro-bind $rootfs / --proc /proc --dev /dev $line" \
		"ch-run=ch-run $rootfs -- $line" \
		"runc=runc --root $W/runc run --bundle $W/$bundle bench-{run}" \
		"hpcrun=$W/bin/hpcrun --rootfs $rootfs $line" \
		"hpcrun-image=$W/bin/hpcrun --cache $W/cache --image $W/py3.tar $line" >>"$W/log" ||
		die "warm start of \`$line\` failed"
}
# bwrap with what hpcrun binds by default: /sys read-only, /dev, /tmp,
# /var/tmp, $HOME (also the working directory), /etc/hosts and
# /etc/resolv.conf read-only.
BWRAP_BINDS="--ro-bind /sys /sys --dev-bind /dev /dev --bind /tmp /tmp --bind /var/tmp /var/tmp --bind $W/home $W/home --ro-bind /etc/hosts /etc/hosts --ro-bind /etc/resolv.conf /etc/resolv.conf --chdir $W/home"
echo "bench.sh: warm start, $WARM_ROUNDS rounds each" >&2
warm warm-true bundle-true true
warm warm-python bundle-python python3 -c pass

# hpcrun's fixed cost as a Go program: --version against a static Go
# program that does nothing, built here as hpcrun is (CGO_ENABLED=0, -s -w).
mkdir -p "$W/src/empty"
printf 'package main\n\nfunc main() {}\n' >"$W/src/empty/main.go"
printf 'module empty\n\ngo 1.21\n' >"$W/src/empty/go.mod"
(cd "$W/src/empty" && GOWORK=off GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$gocache" \
	go build -ldflags '-s -w' -o "$W/bin/empty" .) || die "building the empty Go program failed"
echo "bench.sh: --version against an empty Go program, $WARM_ROUNDS rounds" >&2
"${as_user[@]}" "$W/bin/startlat" -n "$WARM_ROUNDS" -warmup "$WARM_WARMUP" -baseline empty \
	-samples "$SAMPLES" -tag version -label "--version" \
	"empty=$W/bin/empty" "hpcrun=$W/bin/hpcrun --version" >>"$W/log" || die "hpcrun --version failed"

# A step of 4 tasks on one node, srun to the last task's end: one
# container that the 4 join (the default under srun) against 4 of their
# own (--no-join). Needs the test cluster (scripts/slurm-up.sh, run here as
# root); skipped without one.
if [[ $IS_ROOT -eq 1 ]] && ! "$ROOT/scripts/slurm-up.sh" >&2; then
	echo "bench.sh: scripts/slurm-up.sh failed; no joined-start rows" >&2
fi
if command -v srun >/dev/null 2>&1 && "${as_user[@]}" srun -N1 -n1 true >/dev/null 2>&1; then
	echo "bench.sh: joined start of srun -n 4, $JOIN_ROUNDS rounds" >&2
	"${as_user[@]}" "$W/bin/startlat" -n "$JOIN_ROUNDS" -warmup 1 -baseline separate -timeout 60s \
		-samples "$SAMPLES" -tag join -label "srun -n 4" \
		"separate=srun -N1 -n 4 $W/bin/hpcrun --no-join --rootfs $rootfs true" \
		"joined=srun -N1 -n 4 $W/bin/hpcrun --rootfs $rootfs true" >>"$W/log" || die "srun -n 4 hpcrun failed"
fi

# Where the time of a warm `true` goes, from the kernel's tracepoints
# (bench/phases.py; root only, for perf).
PHASES=""
if [[ $IS_ROOT -eq 1 ]]; then
	install_missing perf=linux-perf
	echo "bench.sh: phases of a warm start, $PHASE_ROUNDS rounds" >&2
	PHASES=$("$ROOT/bench/phases.py" --rounds "$PHASE_ROUNDS" --user "$BENCH_UID:$BENCH_GID" \
		--hpcrun "$W/bin/hpcrun" --rootfs "$rootfs" --home "$W/home") || die "bench/phases.py failed"
fi

# ---------------------------------------------------------------- cold
for img in "$PY_IMAGE" "$NP_IMAGE"; do
	extra=()
	[[ $img != "$PY_IMAGE" ]] || extra=(--concurrent "$CONCURRENT")
	echo "bench.sh: cold start of $(basename "$img")" >&2
	"$ROOT/bench/coldstart.sh" --hpcrun "$HPCRUN" --image "$img" "${COLD[@]}" "${extra[@]}" \
		--samples "$SAMPLES" --tag "cold-$(basename "$img" .tar)" >&2 || die "cold start of $img failed"
done

# ---------------------------------------------------------------- report
T_END=${EPOCHREALTIME/./}
printf 'hpcrun %s vs peers: uid %s, kernel %s, %d CPUs, work dir on %s (%s); %s\n' \
	"$("$HPCRUN" --version 2>/dev/null | head -n1 | awk '{print $NF}')" "$("${drop[@]}" id -u)" "$(uname -r)" "$(nproc)" \
	"$BENCH_DIR" "$(stat -f -c %T "$BENCH_DIR")" "$([[ "${BENCH_QUICK:-0}" == 1 ]] && echo BENCH_QUICK=1 || echo full run)"
printf 'warm: %d interleaved rounds (+%d warm-up); cold: %s interleaved round(s)%s, fresh target each run\n' \
	"$WARM_ROUNDS" "$WARM_WARMUP" "${COLD[1]}" "$([[ ${#COLD[@]} -eq 2 ]] && echo ' (+1 warm-up)')"
python3 - "$SAMPLES" "$CONCURRENT" <<'EOF'
import statistics as st, sys
conc = sys.argv[2]
data, rss, size = {}, {}, {}
for line in open(sys.argv[1]):
    tag, r, name, v = line.split()
    if r == "rss":
        rss[tag] = int(v)
    elif r == "size":
        size[tag] = int(v)
    else:
        data.setdefault(tag, {}).setdefault(name, {})[int(r)] = int(v) / 1e3  # ms

def q(v, p):
    v = sorted(v)
    pos = p * (len(v) - 1)
    lo = int(pos)
    return v[lo] if lo >= len(v) - 1 else v[lo] + (v[lo + 1] - v[lo]) * (pos - lo)

def fmt(ms):
    if ms >= 1000:
        return "%.2f s" % (ms / 1000)
    return "%.3g ms" % ms if ms < 100 else "%.0f ms" % ms

rows = [("benchmark", "contender", "median", "p10", "p90", "ratio", "paired", "vs")]
def add(section, tag, names, base, label=None):
    s = data.get(tag)
    if not s:
        return
    for n in names:
        if n not in s:
            continue
        v = list(s[n].values())
        if n == base:
            ratio = ("-", "-", "")
        else:
            paired = st.median(s[n][r] / s[base][r] for r in s[n] if r in s[base])
            ratio = ("%.2fx" % (st.median(v) / st.median(s[base].values())), "%.2fx" % paired, base)
        rows.append((section, (label or {}).get(n, n), fmt(st.median(v)), fmt(q(v, .1)), fmt(q(v, .9))) + ratio)
        section = ""

warm = ["bwrap", "bwrap-min", "hpcrun", "hpcrun-image", "ch-run", "runc", "native"]
wl = {"hpcrun": "hpcrun --rootfs", "hpcrun-image": "hpcrun --image", "bwrap": "bwrap, same binds",
      "bwrap-min": "bwrap, / /proc /dev"}
add("warm start `true`", "warm-true", warm, "bwrap", wl)
add("warm `python3 -c pass`", "warm-python", warm, "bwrap", wl)
add("fixed cost", "version", ["empty", "hpcrun"], "empty",
    {"empty": "empty static Go", "hpcrun": "hpcrun --version"})
add("srun -n 4 true", "join", ["separate", "joined"], "separate",
    {"separate": "4 containers", "joined": "1 joined"})
cold = ["tar", "pigz", "umoci", "hpcrun"]
lbl = {"tar": "tar -xzf", "pigz": "pigz -dc | tar -x", "umoci": "umoci unpack", "hpcrun": "hpcrun --image"}
for img in ("py3", "numpy"):
    tag = "cold-" + img
    mib = " %.0f MiB" % (size[tag] / 1048576) if tag in size else ""
    add("cold %s (%s)" % (img, mib.strip()), tag, cold, "tar", lbl)
for img in ("py3", "numpy"):
    if "cold-" + img in rss:
        rows.append(("peak RSS, cold " + img, "hpcrun", "%.1f MiB" % (rss["cold-" + img] / 1024), "", "", "", "", ""))
s = data.get("cold-py3", {})
many = "hpcrun-x" + conc
if many in s:
    add(conc + " concurrent cold py3", "cold-py3", ["hpcrun", many], "hpcrun",
        {"hpcrun": "1 x hpcrun", many: conc + " x hpcrun, 1 cache"})
w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for i, r in enumerate(rows):
    print("  ".join(c.ljust(w[j]) for j, c in enumerate(r)).rstrip())
    if i == 0:
        print("  ".join("-" * x for x in w))
EOF
printf 'ratio: of the medians; paired: median over rounds of the per-round ratio. wall time %.0f s\n' \
	"$(((T_END - T_START) / 1000000))"
[[ -z "$PHASES" ]] || printf '\n%s\n' "$PHASES"
