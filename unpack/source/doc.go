// Package source opens the images that --image names, in place and without
// extracting anything: OCI layout directories, OCI archives, both forms
// of `docker save` archives, and Apptainer's SIF files and bare squashfs
// images. It picks the manifest for a platform and hands
// out blobs whose digests are verified as they stream; the unpacking is
// package cache's.
package source
