// Package unpack turns what --rootfs or --image names into a root
// filesystem on local disk, with what the image's config says about it
// (its environment). A plain directory is used in place.
package unpack
