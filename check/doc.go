// Package check diagnoses a node for `hpcrun check`: what hpcrun needs
// (user namespaces, a usable image cache), what some features need
// (overlayfs in a user namespace for --writable-tmpfs, a state dir for
// named containers, a GPU driver for --gpu and --rocm), and what the batch
// system says. Each Result says what was found and, when it is not ok, the
// one thing to do about it.
//
// Run takes the node as an Env value: where the kernel's /proc files are,
// the caller's environment and uid, the cache as the settings resolved it,
// and functions for what touches the node (a directory's filesystem
// facts, the namespace probes). The command line fills it in with
// jobs.ProbeDir and runtime.ProbeUserNS and ProbeOverlay; the tests with
// fakes, so every diagnosis is covered on crafted nodes.
//
// A check fails only where no container can run (no user namespaces, no
// usable cache): Failed says whether any did, and `hpcrun check` exits 1
// then. Everything else that does not work is a warning.
package check
