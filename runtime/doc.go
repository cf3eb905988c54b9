// Package runtime runs an OCI runtime-spec container without root.
//
// It owns two things: Generate, a pure function that turns the resolved
// settings of one job into a rootless specs.Spec, and Run, the only code in
// hpcrun that touches namespaces. Run re-executes /proc/self/exe as a small
// init stage inside new user, mount and pid namespaces (and a network
// namespace when the spec asks for one). The init applies the spec's mounts,
// pivots into the root filesystem, drops its capabilities and starts the job
// as its child; it stays PID 1, forwards signals, reaps orphans and reports
// the job's exit status back to the parent.
//
// The package knows nothing about schedulers or images: it runs any spec and
// root filesystem, so the OCI life-cycle verbs can reuse it unchanged.
package runtime
