package main

import (
	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/runtime"
)

// newCreateCommand is runc's create: a container from a bundle, whose
// process waits for start.
func newCreateCommand(so *stateOptions) *cobra.Command {
	var create bundleOptions
	createCmd := verb(so, "create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] ID",
		"Create a container from an OCI bundle; its process waits for start",
		`create builds container ID from the OCI bundle (config.json and its root.path):
namespaces, mounts and the root filesystem, rootless, and returns once it is
ready. Its process inherits create's stdio and starts with hpcrun start ID.
The mounts are made in config.json's order; linux.devices are bound from the
host's nodes, which must exist there with the type and numbers asked. The
bundle's prestart, createRuntime and createContainer hooks run before create
returns, writing to its stderr.

`+helptext.ExitStatus(helptext.Done("the container was created; its process waits for hpcrun start"),
			helptext.Failed("a bad flag, a bundle without a usable config.json or rootfs, a linux.devices node the host lacks, an ID that exists "+
				"already or is not a valid name, user namespaces disabled, a config.json that asks for what "+
				"cannot be done rootless (a process.user the id maps leave out, a linux.sysctl key that no "+
				"namespace of the container scopes) or names what does not exist (a capability, a propagation mode), "+
				"a prestart, createRuntime or createContainer hook that failed or timed out (the container is removed, "+
				"and its poststop hooks run)"),
			helptext.Status("126", "the process's command, looked up in its PATH in the container, is there but not executable"),
			helptext.Status("127", "the process's command is not in the container")),
		`  hpcrun spec --rootfs bundle/rootfs -- python3 job.py > bundle/config.json
  hpcrun create --bundle bundle job1 && hpcrun start job1
  hpcrun --root /tmp/hpcrun-oci-$UID create --bundle bundle --pid-file job1.pid job1`,
		exactID, func(c *runtime.Containers, args []string) error {
			return create.create(c, args[0])
		})
	create.AddFlags(createCmd.Flags())
	return createCmd
}
