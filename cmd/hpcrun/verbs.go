package main

// The runc-style life cycle over OCI bundles: create, start, state, kill,
// delete, run, list and exec. Slurm's oci.conf and other OCI tooling drive
// hpcrun through these, with runc's command lines.

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hpcrun/hpcrun/internal/termsafe"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"
)

// stateOptions are the global flags of the life-cycle verbs: --root, and
// runc's other global flags, accepted so that runc command lines work.
type stateOptions struct {
	root          string
	rootless      string
	systemdCgroup bool
	log           string
	logFormat     string
	debug         bool
}

func (o *stateOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.root, "root", "", "keep container state in `DIR` (default $XDG_RUNTIME_DIR/hpcrun, else /tmp/hpcrun-$UID/run)")
	f.StringVar(&o.rootless, "rootless", "auto", "accepted for runc compatibility; hpcrun is always rootless")
	f.BoolVar(&o.systemdCgroup, "systemd-cgroup", false, "accepted for runc compatibility; hpcrun places a bundle's cgroup as runc's cgroupfs driver does")
	f.StringVar(&o.log, "log", "", "also append errors to `FILE` (runc compatibility)")
	f.StringVar(&o.logFormat, "log-format", "text", "accepted for runc compatibility (text or json)")
	f.BoolVar(&o.debug, "debug", false, "accepted for runc compatibility; use -v")
	for _, name := range []string{"rootless", "systemd-cgroup", "log-format", "debug"} {
		f.MarkHidden(name)
	}
}

// open opens the state root; create makes it if it is missing (verbs that
// make containers), the others find no containers there.
func (o *stateOptions) open(create bool) (*runtime.Containers, error) {
	root := o.root
	if root == "" {
		root = runtime.DefaultRoot(os.Environ(), os.Getuid())
	}
	c, err := runtime.OpenContainers(root, create)
	if err != nil {
		return nil, fmt.Errorf("%w (--root gives another)", err)
	}
	return c, nil
}

// logError appends a failed verb's error to --log, as runc does, so that
// callers that read only that file (Slurm) see why.
func (o *stateOptions) logError(err error) error {
	if err == nil || o.log == "" {
		return err
	}
	if f, ferr := os.OpenFile(o.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); ferr == nil {
		fmt.Fprintf(f, "time=%q level=error msg=%q\n", time.Now().Format(time.RFC3339), termsafe.Line(launch.Message(err)))
		f.Close()
	}
	return err
}

// verb builds a life-cycle command whose run gets the opened containers.
// long ends with the command's EXIT STATUS section.
func verb(so *stateOptions, use, short, long, example string, args cobra.PositionalArgs, run func(c *runtime.Containers, args []string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    args,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Only the verbs that make containers make the state root.
			c, err := so.open(cmd.Name() == "create" || cmd.Name() == "run")
			if err == nil {
				err = run(c, args)
			}
			return so.logError(err)
		},
	}
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}

func newLifecycleCommands(so *stateOptions) []*cobra.Command {
	return []*cobra.Command{newCreateCommand(so), newStartCommand(so), newStateCommand(so), newKillCommand(so),
		newDeleteCommand(so), newOCIRunCommand(so), newListCommand(so), newExecCommand(so), newCheckpointCommand(so)}
}

var exactID = cobra.ExactArgs(1)

// bundleOptions are the flags of create and run that make a container of
// a bundle.
type bundleOptions struct{ bundle, pidFile, consoleSocket string }

func (o *bundleOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.bundle, "bundle", "b", ".", "the OCI bundle `DIR` (config.json and the rootfs)")
	f.StringVar(&o.pidFile, "pid-file", "", "write the container's pid to `FILE`")
	f.StringVar(&o.consoleSocket, "console-socket", "", "send the master of the process's terminal to this unix `SOCKET` (when config.json asks for a terminal)")
}

// create makes container id of the bundle, with this process's stdio, and
// says what the bundle asks for that hpcrun does not apply.
func (o *bundleOptions) create(c *runtime.Containers, id string) error {
	_, ignored, err := c.CreateBundle(id, runtime.BundleOptions{
		Bundle: o.bundle, PidFile: o.pidFile, ConsoleSocket: o.consoleSocket,
		Stdio: runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr},
	})
	if len(ignored) > 0 {
		fmt.Fprintf(os.Stderr, "hpcrun: warning: config.json asks for %s, which hpcrun does not apply\n", strings.Join(ignored, ", "))
	}
	if errors.Is(err, runtime.ErrNoConsoleSocket) {
		return launch.UsageError{Err: errors.New("config.json asks for a terminal: give --console-socket, or set process.terminal to false")}
	}
	return err
}
