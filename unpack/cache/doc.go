// Package cache unpacks images rootlessly, with the umoci library, into a
// digest-keyed cache on node-local disk: published atomically by rename,
// unpacked once per node under a per-digest flock while other jobs wait,
// found again on a warm start from a key of the source file alone, and
// removed only when no job uses it.
//
// It is not yet linked into hpcrun: umoci and its dependencies (protobuf,
// klauspost, logrus) add about a millisecond of package initialization to
// every process start, the container's init stage included, which a warm
// start cannot afford (see the notes of issue 3).
package cache
