package main

// ps, pause, resume and events: what runc needs cgroups for, from /proc.

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/runtime/procs"
)

func newProcessCommands(so *stateOptions) []*cobra.Command {
	var psFormat string
	psCmd := verb(so, "ps [--format table|json] ID", "List a container's processes",
		`ps lists the processes of container ID: the pid on the host and inside, the
user, the CPU time and the command. They are found by their pid namespace in
/proc; no cgroup is needed.

`+helptext.ExitStatus(helptext.Done("the processes were listed"),
			helptext.Failed("no such container, a bad flag or --format")),
		`  hpcrun ps db
  hpcrun ps --format json slurm-1234.0`,
		exactID, func(c *runtime.Containers, args []string) error {
			ps, err := c.Processes(args[0])
			if err != nil {
				return err
			}
			switch psFormat {
			case "json":
				pids := make([]int, 0, len(ps))
				for _, p := range ps {
					pids = append(pids, p.Pid)
				}
				return json.NewEncoder(os.Stdout).Encode(pids) // runc's form: the host pids
			case "table", "":
			default:
				return launch.UsageError{Err: fmt.Errorf("--format %q: want table or json", psFormat)}
			}
			return procs.WriteTable(os.Stdout, ps)
		})
	psCmd.Flags().StringVarP(&psFormat, "format", "f", "table", "`table` or json (the host pids, as runc prints them)")

	pauseCmd := verb(so, "pause ID", "Stop every process of a container",
		`pause stops the processes of container ID. Where the container's cgroup is
delegated to you (cgroup v2, owned by you, as systemd's Delegate=yes leaves
it), it moves them, all but the init, into a child cgroup and freezes that.
Elsewhere it stops them with SIGSTOP, sweeping /proc until none is left
running, so that one forked meanwhile is stopped too. Either way the init
keeps serving, and SIGKILL still ends a paused container.

`+helptext.ExitStatus(helptext.Done("the processes were stopped"),
			helptext.Failed("no such container, one that is paused already or not running, a process that could not be stopped")),
		`  hpcrun pause db
  hpcrun resume db`,
		exactID, func(c *runtime.Containers, args []string) error { return c.Pause(args[0]) })
	resumeCmd := verb(so, "resume ID", "Continue the processes of a paused container",
		`resume thaws the child cgroup of container ID and moves its processes
back, or sends SIGCONT to every process of it, as pause stopped them.

`+helptext.ExitStatus(helptext.Done("the processes were continued"),
			helptext.Failed("no such container, one that is not paused")),
		`  hpcrun pause db
  hpcrun resume db`,
		exactID, func(c *runtime.Containers, args []string) error { return c.Resume(args[0]) })

	var ev struct {
		stats    bool
		interval time.Duration
	}
	eventsCmd := verb(so, "events [--stats] [--interval D] ID", "Print a container's resource use as JSON lines",
		`events prints a JSON line every interval with the CPU time, memory and number
of processes of container ID, in the shape of runc's events, read from /proc;
then, when the container stops, an exit event (an oom event instead when the
kernel's OOM killer killed its process). --stats prints one line and exits.

`+helptext.ExitStatus(helptext.Done("the container stopped and its exit (or oom) event was printed; with --stats, "+
			"the one line was printed"),
			helptext.Failed("no such container, a stopped one with --stats, a bad flag or --interval")),
		`  hpcrun events --stats db
  hpcrun events --interval 1s db | jq -c .data.memory`,
		exactID, func(c *runtime.Containers, args []string) error {
			if ev.interval <= 0 {
				return launch.UsageError{Err: fmt.Errorf("--interval %v: want a positive duration", ev.interval)}
			}
			return c.Events(args[0], ev.stats, ev.interval, os.Stdout)
		})
	eventsCmd.Flags().BoolVar(&ev.stats, "stats", false, "print the figures once and exit")
	eventsCmd.Flags().DurationVar(&ev.interval, "interval", 5*time.Second, "how often to print the figures")
	return []*cobra.Command{psCmd, pauseCmd, resumeCmd, eventsCmd}
}
