// Package unpack turns what --rootfs or --image names into a root
// filesystem on local disk, with what the image's config says about it
// (its environment). A plain directory is used in place (OpenRootfs).
// Images are read by package unpack/source and unpacked into the
// node-local cache by package unpack/cache.
package unpack
