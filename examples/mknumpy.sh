#!/usr/bin/env bash
# mknumpy.sh BASE.tar OUT.tar
# Builds a two-layer OCI image archive: BASE.tar's layer(s), unchanged (the
# same blobs), plus one more layer that adds python3-numpy and python3-scipy
# from apt (about 300 MB unpacked in all, with the Python image of
# examples/mkpython.sh as BASE). It unpacks BASE into a directory, notes the
# time, installs the packages in a chroot, and packs every path changed since
# (ctime) as the new layer. The layer only adds or replaces files: a file that
# apt deleted stays in the image from the layer below, so no whiteouts are
# needed. Needs root (for the chroot and the owners) and python3 on the host.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BASE.tar OUT.tar" >&2; exit 2; }
base=$1 out=$2
[ "$(id -u)" -eq 0 ] || { echo "mknumpy: run as root (chroot and apt need it)" >&2; exit 1; }
[ -f "$base" ] || { echo "mknumpy: $base: no such file" >&2; exit 1; }
command -v python3 >/dev/null || { echo "mknumpy: python3 not found" >&2; exit 1; }
PKGS=(python3-numpy python3-scipy)

work=$(mktemp -d /var/tmp/mknumpy.XXXXXX)
R=$work/rootfs
cleanup() {
	umount "$R/proc" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/layout" "$R"
tar -xf "$base" -C "$work/layout"

# The base's layers, in order (through nested indexes), and its config.
mapfile -t meta < <(python3 - "$work/layout" <<'EOF'
import json, os, sys
d = sys.argv[1]
blob = lambda dg: os.path.join(d, "blobs", *dg.split(":", 1))
m = json.load(open(os.path.join(d, "index.json")))
while "manifests" in m:
    m = json.load(open(blob(m["manifests"][0]["digest"])))
print(blob(m["config"]["digest"]))
for l in m["layers"]:
    print(l["mediaType"], blob(l["digest"]))
EOF
)
for l in "${meta[@]:1}"; do
	read -r mt path <<<"$l"
	case $mt in *gzip) tar --numeric-owner -xzpf "$path" -C "$R" ;; *zstd) tar --numeric-owner --zstd -xpf "$path" -C "$R" ;; *) tar --numeric-owner -xpf "$path" -C "$R" ;; esac
done
[ -x "$R/usr/bin/python3" ] || { echo "mknumpy: $base has no /usr/bin/python3" >&2; exit 1; }

# The snapshot: everything whose ctime is later than the stamp is new.
touch "$work/stamp"
sleep 1.1
resolv_saved=0
if [ -e "$R/etc/resolv.conf" ] || [ -L "$R/etc/resolv.conf" ]; then
	mv "$R/etc/resolv.conf" "$work/resolv.conf.image"
	resolv_saved=1
fi
cp /etc/resolv.conf "$R/etc/resolv.conf"
mount -t proc proc "$R/proc"
echo "mknumpy: apt-get install ${PKGS[*]} in a chroot of $(basename "$base") (a minute or two)"
if ! chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
	sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${PKGS[*]} && apt-get clean" >"$work/log" 2>&1; then
	tail -n 20 "$work/log" >&2
	echo "mknumpy: apt-get install failed" >&2
	exit 1
fi
umount "$R/proc"
rm -f "$R/etc/resolv.conf"
[ "$resolv_saved" -eq 0 ] || mv "$work/resolv.conf.image" "$R/etc/resolv.conf"
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/log/apt/eipp.log.xz

# The changed paths, and the directories above them (so the layer holds each
# parent, with its owner and mode), minus what the install touched only in
# passing (apt's lists and caches, the resolver file restored above).
(cd "$R" && find . -mindepth 1 -cnewer "$work/stamp" -print0) | python3 -c '
import os, sys
skip = ("./etc/resolv.conf", "./var/lib/apt/lists", "./var/cache/apt", "./proc")
paths = set()
for p in sys.stdin.buffer.read().decode("utf-8", "surrogateescape").split("\0"):
    if not p or any(p == s or p.startswith(s + "/") for s in skip):
        continue
    while p not in paths and p != ".":
        paths.add(p)
        p = os.path.dirname(p)
out = sys.stdout.buffer
for p in sorted(paths):
    out.write(p.encode("utf-8", "surrogateescape") + b"\0")
' >"$work/list"
n=$(tr -cd '\0' <"$work/list" | wc -c)
[ "$n" -gt 0 ] || { echo "mknumpy: the install changed nothing" >&2; exit 1; }

mkdir -p "$work/out/blobs/sha256"
tar --numeric-owner --no-recursion --null -C "$R" -T "$work/list" -cf - | gzip -n -1 >"$work/layer.tar.gz"
diffid=$(gzip -dc "$work/layer.tar.gz" | sha256sum | cut -d' ' -f1)
layer=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
mv "$work/layer.tar.gz" "$work/out/blobs/sha256/$layer"

# Config (the base's, one more diff_id), manifest, index, oci-layout; every
# blob named by its sha256.
python3 - "$work/layout" "$work/out" "$layer" "$diffid" "${PKGS[*]}" <<'EOF'
import hashlib, json, os, shutil, sys
src, dst, layer, diffid, pkgs = sys.argv[1:]
blob = lambda d, dg: os.path.join(d, "blobs", *dg.split(":", 1))
def put(obj):
    b = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    dg = "sha256:" + hashlib.sha256(b).hexdigest()
    open(blob(dst, dg), "wb").write(b)
    return dg, len(b)
idx = json.load(open(os.path.join(src, "index.json")))
top = idx["manifests"][0]
m = json.load(open(blob(src, top["digest"])))
while "manifests" in m:
    top = m["manifests"][0]
    m = json.load(open(blob(src, top["digest"])))
for l in m["layers"]:
    shutil.copyfile(blob(src, l["digest"]), blob(dst, l["digest"]))
cfg = json.load(open(blob(src, m["config"]["digest"])))
cfg["rootfs"]["diff_ids"].append("sha256:" + diffid)
cfg.setdefault("history", []).append({"created_by": "apt-get install " + pkgs + " (examples/mknumpy.sh)"})
cdg, csz = put(cfg)
lsz = os.path.getsize(blob(dst, "sha256:" + layer))
m["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdg, "size": csz}
m["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + layer, "size": lsz})
m["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
mdg, msz = put(m)
entry = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdg, "size": msz,
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}
if "platform" in top:
    entry["platform"] = top["platform"]
json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]},
          open(os.path.join(dst, "index.json"), "w"), separators=(",", ":"))
open(os.path.join(dst, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
print("mknumpy: manifest %s, %d layers, new layer %d MiB" % (mdg, len(m["layers"]), lsz >> 20))
EOF
mkdir -p "$(dirname "$out")"
tar --numeric-owner --owner=0 --group=0 --sort=name -C "$work/out" -cf "$out.tmp.$$" oci-layout index.json blobs
chmod 644 "$out.tmp.$$"
mv "$out.tmp.$$" "$out"
echo "mknumpy: $out: $n paths in the new layer, $(($(stat -c %s "$out") >> 20)) MiB archive"
