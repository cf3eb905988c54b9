#!/usr/bin/env bash
# mkimage.sh DIR OUT.tar [KEY=VALUE...]
# Packs a root filesystem directory as a single-layer OCI image archive, the
# format `skopeo copy ... oci-archive:` writes: a tar of an OCI layout. The
# KEY=VALUE arguments become the image's Env; MKIMAGE_ENTRYPOINT and
# MKIMAGE_CMD (JSON arrays), MKIMAGE_WORKDIR and MKIMAGE_LABELS (a JSON
# object) set the rest of its config.
# Needs only tar, gzip and sha256sum. Run it as root when DIR holds files of
# other owners.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR OUT.tar [KEY=VALUE...]" >&2; exit 2; }
dir=$1 out=$2
shift 2
[ -d "$dir" ] || { echo "mkimage: $dir is not a directory" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/blobs/sha256"

# The layer: the whole tree, numeric owners, in a stable order.
tar --numeric-owner --sort=name -C "$dir" -cf - . | gzip -n -1 >"$work/layer.tar.gz"
diffid=$(gzip -dc "$work/layer.tar.gz" | sha256sum | cut -d' ' -f1)
layer=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
layersize=$(stat -c %s "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$work/blobs/sha256/$layer"

env_json=""
for kv in "$@"; do
	env_json="$env_json${env_json:+,}\"${kv//\"/\\\"}\""
done
arch=$(uname -m)
case $arch in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; ppc64le) arch=ppc64le ;; esac
extra=""
[ -n "${MKIMAGE_ENTRYPOINT:-}" ] && extra="$extra,\"Entrypoint\":$MKIMAGE_ENTRYPOINT"
[ -n "${MKIMAGE_CMD:-}" ] && extra="$extra,\"Cmd\":$MKIMAGE_CMD"
[ -n "${MKIMAGE_WORKDIR:-}" ] && extra="$extra,\"WorkingDir\":\"$MKIMAGE_WORKDIR\""
[ -n "${MKIMAGE_LABELS:-}" ] && extra="$extra,\"Labels\":$MKIMAGE_LABELS"
printf '{"architecture":"%s","os":"linux","config":{"Env":[%s]%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
	"$arch" "$env_json" "$extra" "$diffid" >"$work/config.json"
config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
configsize=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$work/blobs/sha256/$config"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
	"$config" "$configsize" "$layer" "$layersize" >"$work/manifest.json"
manifest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
manifestsize=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$work/blobs/sha256/$manifest"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"latest"},"platform":{"architecture":"%s","os":"linux"}}]}' \
	"$manifest" "$manifestsize" "$arch" >"$work/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"

tar --numeric-owner --owner=0 --group=0 --sort=name -C "$work" -cf "$out.tmp.$$" oci-layout index.json blobs
mv "$out.tmp.$$" "$out"
echo "mkimage: $out: manifest sha256:$manifest, layer $((layersize / 1024 / 1024)) MiB"
