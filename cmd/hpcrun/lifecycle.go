package main

// The runc-style life cycle over OCI bundles: create, start, state, kill,
// delete, run, list and exec. Slurm's oci.conf and other OCI tooling drive
// hpcrun through these, with runc's command lines.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/atomicfile"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"

	"github.com/hpcrun/hpcrun/internal/termsafe"
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
	f.BoolVar(&o.systemdCgroup, "systemd-cgroup", false, "accepted for runc compatibility; hpcrun uses no cgroups")
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
	return runtime.OpenContainers(root, create)
}

// logError appends a failed verb's error to --log, as runc does, so that
// callers that read only that file (Slurm) see why.
func (o *stateOptions) logError(err error) error {
	if err == nil || o.log == "" {
		return err
	}
	if f, ferr := os.OpenFile(o.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); ferr == nil {
		fmt.Fprintf(f, "time=%q level=error msg=%q\n", time.Now().Format(time.RFC3339), termsafe.Line(err.Error()))
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
	var create struct {
		bundle, pidFile, consoleSocket string
	}
	createCmd := verb(so, "create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] ID",
		"Create a container from an OCI bundle; its process waits for start",
		`create builds container ID from the OCI bundle (config.json and its root.path):
namespaces, mounts and the root filesystem, rootless, and returns once it is
ready. Its process inherits create's stdio and starts with hpcrun start ID.

`+exitStatus(statusDone("the container was created; its process waits for hpcrun start"),
			statusFailed("a bad flag, a bundle without a usable config.json or rootfs, an ID that exists "+
				"already or is not a valid name, user namespaces disabled"),
			status{"126", "the process's command, looked up in its PATH, is there but not executable"},
			status{"127", "the process's command is not in its PATH in the container"}),
		`  hpcrun spec --rootfs bundle/rootfs -- python3 job.py > bundle/config.json
  hpcrun create --bundle bundle job1 && hpcrun start job1
  hpcrun --root /tmp/hpcrun-oci-$UID create --bundle bundle --pid-file job1.pid job1`,
		exactID, func(c *runtime.Containers, args []string) error {
			_, err := createContainer(c, args[0], create.bundle, create.pidFile, create.consoleSocket)
			return err
		})
	addBundleFlags(createCmd.Flags(), &create.bundle, &create.pidFile, &create.consoleSocket)

	startCmd := verb(so, "start ID", "Start the process of a created container",
		`start runs the process of container ID, created by hpcrun create, and returns
without waiting for it; hpcrun state ID tells when it has stopped.

`+exitStatus(statusDone("the process was started"),
			statusFailed("no such container, or one that is not created (started already, or stopped)"),
			status{"126", "the process's command exists in the container but cannot be executed; the " +
				"container stays created"},
			status{"127", "the process's command was not found in the container; the container stays created"}),
		`  hpcrun create --bundle bundle job1
  hpcrun start job1`,
		exactID, func(c *runtime.Containers, args []string) error { return c.Start(args[0]) })

	stateCmd := verb(so, "state ID", "Print a container's state as OCI runtime-spec JSON",
		`state prints the state of container ID: its status (creating, created,
running, paused or stopped), the pid of its init and its bundle.

`+exitStatus(statusDone("the state was printed, whatever the status"), statusFailed("no such container")),
		`  hpcrun state job1
  hpcrun --root /tmp/hpcrun-oci-$UID state job1`,
		exactID, func(c *runtime.Containers, args []string) error {
			s, err := c.Load(args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(s.OCI())
		})

	var killAll bool
	killCmd := verb(so, "kill [--all] ID [SIGNAL]", "Send a signal to a container's process",
		`kill sends SIGNAL (default TERM; a name, with or without SIG, or a number) to
the process of container ID, or with --all to every process in it. A created
container, whose process has not started, ends.

`+exitStatus(statusDone("the signal was sent"),
			statusFailed("no such container, one that has stopped, an unknown signal")),
		`  hpcrun kill job1                 # TERM
  hpcrun kill job1 USR1
  hpcrun kill --all job1 KILL      # every process in it`,
		cobra.RangeArgs(1, 2), func(c *runtime.Containers, args []string) error {
			sig := unix.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = parseSignal(args[1]); err != nil {
					return usageError{err}
				}
			}
			return c.Kill(args[0], sig, killAll)
		})
	killCmd.Flags().BoolVarP(&killAll, "all", "a", false, "signal every process in the container")

	var force bool
	deleteCmd := verb(so, "delete [--force] ID", "Delete a stopped container's state",
		`delete removes container ID, which must be stopped; with --force a created
or running one is killed first.

`+exitStatus(statusDone("the container's state was removed"),
			statusFailed("no such container, or a created, running or paused one without --force")),
		`  hpcrun delete job1
  hpcrun delete --force job1       # kill it first if it runs`,
		exactID, func(c *runtime.Containers, args []string) error { return c.Delete(args[0], force) })
	deleteCmd.Flags().BoolVarP(&force, "force", "f", false, "kill the container first if it runs")

	var run struct {
		bundle, pidFile, consoleSocket string
		detach, keep                   bool
	}
	runCmd := verb(so, "run [--bundle DIR] [-d] [--pid-file FILE] ID", "Create and start a container from an OCI bundle",
		`run creates container ID from the bundle and starts it. Without -d it waits
for the process, passes on signals, deletes the container and exits with the
process's status; with -d it returns at once.

`+jobStatus("the process", "its command", "a bad flag, a bundle without a usable config.json or rootfs, an "+
			"ID that exists already or is not a valid name, user namespaces disabled",
			status{"0", "with -d: the process was started"}),
		`  hpcrun run --bundle bundle job1
  hpcrun run -d --bundle bundle --pid-file job1.pid job1
  hpcrun --root /tmp/hpcrun-oci-$UID run --keep --bundle bundle job1   # as examples/slurm/oci.conf does`,
		exactID, func(c *runtime.Containers, args []string) error {
			id := args[0]
			// Caught from the start: a signal before the process runs is
			// passed on once it does, not the end of hpcrun.
			var sigs chan os.Signal
			if !run.detach {
				sigs = make(chan os.Signal, 8)
				signal.Notify(sigs, runtime.ForwardedSignals...)
				defer signal.Stop(sigs)
			}
			if _, err := createContainer(c, id, run.bundle, run.pidFile, run.consoleSocket); err != nil {
				return err
			}
			if err := c.Start(id); err != nil {
				c.Delete(id, true)
				return err
			}
			if run.detach {
				return nil
			}
			return waitContainer(c, id, !run.keep, sigs)
		})
	addBundleFlags(runCmd.Flags(), &run.bundle, &run.pidFile, &run.consoleSocket)
	runCmd.Flags().BoolVarP(&run.detach, "detach", "d", false, "return once the container runs")
	runCmd.Flags().BoolVar(&run.keep, "keep", false, "leave the stopped container for delete, as Slurm's oci.conf wants (it queries and deletes it itself)")

	var list struct {
		quiet  bool
		format string
	}
	listCmd := verb(so, "list [-q] [--format table|json]", "List your containers on this node",
		`list shows the containers under --root: named runs (--name, and every run
under Slurm or PBS), detached ones and those of the OCI verbs (create, run).
The state of a container that has stopped is swept by the next hpcrun.

`+exitStatus(statusDone("the list was printed (no containers lists none)"),
			statusFailed("a bad flag or --format, a state root that cannot be read")),
		`  hpcrun list
  hpcrun list -q
  hpcrun list --format json`,
		cobra.NoArgs, func(c *runtime.Containers, _ []string) error {
			all, err := c.List()
			if err != nil {
				return err
			}
			switch list.format {
			case "json":
				out := make([]map[string]any, 0, len(all))
				for _, s := range all {
					out = append(out, map[string]any{"ociVersion": runtime.SpecVersion, "id": s.ID, "pid": s.OCI().Pid,
						"status": s.Status, "bundle": s.Bundle, "rootfs": s.Rootfs, "created": s.Created, "owner": s.Owner})
				}
				return json.NewEncoder(os.Stdout).Encode(out)
			case "table", "":
			default:
				return usageError{fmt.Errorf("--format %q: want table or json", list.format)}
			}
			if list.quiet {
				for _, s := range all {
					fmt.Println(termsafe.Escape(s.ID))
				}
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
			fmt.Fprintln(tw, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
			for _, s := range all {
				// The fields come from state files, which their owner
				// writes and root may print (see internal/termsafe).
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", termsafe.Line(s.ID), s.OCI().Pid, termsafe.Line(s.Status),
					termsafe.Line(s.Bundle), s.Created.Format(time.RFC3339Nano), termsafe.Line(s.Owner))
			}
			return tw.Flush()
		})
	listCmd.Flags().BoolVarP(&list.quiet, "quiet", "q", false, "print only the IDs")
	listCmd.Flags().StringVarP(&list.format, "format", "f", "table", "`table` or json")

	var ex struct {
		tty bool
		env []string
		cwd string
	}
	execCmd := verb(so, "exec [-t] [--env K=V]... [--cwd DIR] ID CMD [ARGS...]", "Run a process in a running container",
		`exec runs CMD inside container ID, in its namespaces, as its process's user,
with your stdio, and exits with CMD's status. Signals to exec go to CMD.
-t gives CMD a terminal of its own.

`+jobStatus("CMD", "CMD", "no such container, or one that is not running, a bad flag"),
		`  hpcrun exec db sh -c 'ps; df -h /tmp'
  hpcrun exec -t db sh
  hpcrun exec --env OMP_NUM_THREADS=4 --cwd /data job1 ./post.sh
  srun --overlap --jobid=1234 hpcrun exec slurm-1234.0.0 nvidia-smi`,
		cobra.MinimumNArgs(2), func(c *runtime.Containers, args []string) error {
			code, err := execIn(c, args[0], runtime.Process{Args: args[1:], Env: ex.env, Cwd: ex.cwd, TTY: ex.tty})
			if err != nil {
				return err
			}
			return exitError{code}
		})
	execCmd.Flags().SetInterspersed(false)
	execCmd.Flags().BoolVarP(&ex.tty, "tty", "t", false, "give the process a terminal")
	execCmd.Flags().StringArrayVarP(&ex.env, "env", "e", nil, "set `K=V` for the process (repeatable)")
	execCmd.Flags().StringVar(&ex.cwd, "cwd", "", "the process's working `DIR` (default: the container's)")

	return []*cobra.Command{createCmd, startCmd, stateCmd, killCmd, deleteCmd, runCmd, listCmd, execCmd}
}

var exactID = cobra.ExactArgs(1)

func addBundleFlags(f *pflag.FlagSet, bundle, pidFile, consoleSocket *string) {
	f.StringVarP(bundle, "bundle", "b", ".", "the OCI bundle `DIR` (config.json and the rootfs)")
	f.StringVar(pidFile, "pid-file", "", "write the container's pid to `FILE`")
	f.StringVar(consoleSocket, "console-socket", "", "send the master of the process's terminal to this unix `SOCKET` (when config.json asks for a terminal)")
}

// createContainer creates id from a bundle, with this process's stdio or,
// when the spec asks for a terminal, a new pty whose master goes to
// consoleSocket.
func createContainer(c *runtime.Containers, id, bundle, pidFile, consoleSocket string) (*runtime.State, error) {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return nil, err
	}
	spec, err := runtime.LoadBundle(bundle, uid, gid)
	if err != nil {
		return nil, err
	}
	// What a bundle asks for that hpcrun does not do is said, not dropped
	// silently: tools may count on it for confinement.
	var ignored []string
	if spec.Hooks != nil {
		ignored = append(ignored, "hooks")
	}
	if spec.Linux.Seccomp != nil {
		ignored = append(ignored, "a seccomp filter")
	}
	if spec.Process.ApparmorProfile != "" || spec.Process.SelinuxLabel != "" {
		ignored = append(ignored, "an LSM label")
	}
	if len(ignored) > 0 {
		fmt.Fprintf(os.Stderr, "hpcrun: warning: config.json asks for %s, which hpcrun does not apply\n", strings.Join(ignored, ", "))
	}
	stdio := runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}
	if spec.Process.Terminal {
		if consoleSocket == "" {
			return nil, usageError{errors.New("config.json asks for a terminal: give --console-socket, or set process.terminal to false")}
		}
		pty, err := runtime.NewConsole(consoleSocket)
		if err != nil {
			return nil, err
		}
		defer pty.Close()
		stdio = runtime.Stdio{In: pty, Out: pty, Err: pty}
	}
	s, err := c.Create(id, &runtime.Config{Spec: spec, Terminal: spec.Process.Terminal}, runtime.CreateOptions{Bundle: bundle, Stdio: &stdio})
	if err != nil {
		return nil, err
	}
	if pidFile != "" {
		if err := writePidFile(pidFile, s.Pid); err != nil {
			c.Delete(id, true)
			return nil, fmt.Errorf("pid file: %w", err)
		}
	}
	return s, nil
}

// writePidFile writes the bare pid, no newline, as runc does: into a new
// file of its own (never through a planted link), renamed into place.
func writePidFile(path string, pid int) error {
	return atomicfile.Write(path, []byte(strconv.Itoa(pid)), 0o644)
}

// waitContainer waits for a started container, passing on the signals
// caught on sigs, then deletes it (with remove) and exits with its
// process's status.
func waitContainer(c *runtime.Containers, id string, remove bool, sigs chan os.Signal) error {
	go func() {
		for s := range sigs {
			c.Kill(id, s.(unix.Signal), false)
		}
	}()
	code, err := c.Wait(id)
	if remove {
		c.Delete(id, true)
	}
	if err != nil {
		return err
	}
	return exitError{code}
}

// execIn runs p in container id, forwarding signals and, with p.TTY, a
// terminal.
func execIn(c *runtime.Containers, id string, p runtime.Process) (int, error) {
	s, err := c.Load(id)
	if err != nil {
		return runtime.StatusFailed, err
	}
	if s.Status != runtime.StatusRunning {
		return runtime.StatusFailed, fmt.Errorf("container %s is %s; exec needs a running container", id, s.Status)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, runtime.ForwardedSignals...)
	defer signal.Stop(sigs)
	stdio := runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}
	switch {
	case p.TTY && launch.IsTerminal(os.Stdin):
		t, err := runtime.NewExecTerminal(stdio)
		if err != nil {
			return runtime.StatusFailed, err
		}
		defer t.Close()
		stdio = t.Stdio()
	case p.TTY:
		t, err := runtime.NewRelayedTerminal(os.Stdin, os.Stdout)
		if err != nil {
			return runtime.StatusFailed, err
		}
		defer t.Close()
		stdio = t.Stdio()
	}
	return runtime.Exec(c.Dir(id), p, stdio, sigs)
}

// parseSignal reads a signal as kill(1) takes it: TERM, SIGTERM or 15.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %s is out of range", s)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
