// Package stage runs the stage that hpcrun's binary was re-executed as
// (the container's init, the reaper of a fenced exec, the pre-exec shim,
// a kernel probe), from its init function: the stage skips the
// initialization of the packages whose paths sort after this one (cobra,
// pflag, yaml, the image and scheduler code), and never reaches main.
package stage

import (
	"os"

	"github.com/hpcrun/hpcrun/runtime"
)

func init() {
	if len(os.Args) == 0 {
		return
	}
	switch os.Args[0] {
	case runtime.InitArg0:
		runtime.RunInit()
	case runtime.ExecReaperArg0:
		runtime.RunExecReaper()
	case runtime.RlimitArg0:
		runtime.RunRlimitShim()
	case runtime.ProbeArg0:
		runtime.RunProbe()
	}
}
