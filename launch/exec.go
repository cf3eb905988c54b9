package launch

import (
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/unpack"
)

// ExecIn runs p in running container id, as runtime's ExecIn does. In a
// container that hpcrun runs from an image (not an OCI bundle), p gets the
// environment that the image's Apptainer scripts make, as the job got it:
// `apptainer exec instance://NAME CMD` sources them too.
func ExecIn(c *runtime.Containers, id string, p runtime.Process, stdio runtime.Stdio, stdinTTY bool) (int, error) {
	if s, err := c.Load(id); err == nil && s.Bundle == "" && s.Rootfs != "" {
		p.Args = withImageEnv(p.Args, &unpack.Image{Rootfs: s.Rootfs})
	}
	return c.ExecIn(id, p, stdio, stdinTTY)
}
