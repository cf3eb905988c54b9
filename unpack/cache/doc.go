// Package cache unpacks images rootlessly, with the umoci library, into a
// store.Store on node-local disk: once per node under a per-digest flock
// while other jobs wait, published atomically by rename, and found again on
// a warm start from a key of the source file alone. A fast path (fastpath.go)
// extracts the common entries, those that cannot depend on lower layers,
// with directory-fd-relative syscalls; umoci extracts the rest and is the
// reference the tests hold the fast path to. A SIF file or a squashfs
// (a source.Tree) is one tree rather than layers: its entries go through
// the same extraction, checks and size limit as a layer's.
//
// hpcrun does not link this package: the hpcrun-unpack program does (see
// cmd/hpcrun-unpack), because umoci and its dependencies (protobuf,
// klauspost, logrus) add about a millisecond of package initialisation to
// every process that links them.
package cache
