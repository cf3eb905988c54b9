// Package runtime runs an OCI runtime-spec container without root.
//
// It owns two things: Generate, a pure function that turns the resolved
// settings of one job into a rootless specs.Spec, and Start and Run, the
// only code in hpcrun that touches namespaces. Start re-executes
// /proc/self/exe as a small init stage in new user, mount and pid
// namespaces, ahead of its config; Run writes its id maps and hands it the
// spec. The init unshares any further namespace the spec asks for
// (network, whose lo it brings up; uts; ipc), applies the spec's mounts,
// pivots into the root filesystem, drops its capabilities and starts the
// job as its child; it stays PID 1, passes on the signals hpcrun forwards,
// reaps orphans and reports the job's exit status back.
//
// The package knows nothing about schedulers or images: it runs any spec and
// root filesystem, so the OCI life-cycle verbs can reuse it unchanged.
package runtime
