package main

// ps, pause, resume and events: what runc needs cgroups for, from /proc.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/runtime"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

func newProcessCommands(so *stateOptions) []*cobra.Command {
	var psFormat string
	psCmd := verb(so, "ps [--format table|json] ID", "List a container's processes",
		`ps lists the processes of container ID: the pid on the host and inside, the
user, the CPU time and the command. They are found by their pid namespace in
/proc; no cgroup is needed.

`+exitStatus(statusDone("the processes were listed"),
			statusFailed("no such container, a bad flag or --format")),
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
				return usageError{fmt.Errorf("--format %q: want table or json", psFormat)}
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "PID\tPID INSIDE\tUSER\tSTAT\tTIME\tRSS\tCOMMAND")
			for _, p := range ps {
				cmd := strings.Join(p.Cmdline, " ")
				if cmd == "" {
					cmd = "[" + p.Comm + "]"
				}
				fmt.Fprintf(tw, "%d\t%d\t%s\t%c\t%s\t%s\t%s\n", p.Pid, p.NSPid, userName(p.UID), p.State,
					cpuTime(p.CPU), kib(p.RSS), termsafe.Line(cmd)) // the job writes its command line
			}
			return tw.Flush()
		})
	psCmd.Flags().StringVarP(&psFormat, "format", "f", "table", "`table` or json (the host pids, as runc prints them)")

	pauseCmd := verb(so, "pause ID", "Stop every process of a container",
		`pause stops the processes of container ID. Where the container's cgroup is
delegated to you (cgroup v2, owned by you, as systemd's Delegate=yes leaves
it), it moves them, all but the init, into a child cgroup and freezes that.
Elsewhere it stops them with SIGSTOP, sweeping /proc until none is left
running, so that one forked meanwhile is stopped too. Either way the init
keeps serving, and SIGKILL still ends a paused container.

`+exitStatus(statusDone("the processes were stopped"),
			statusFailed("no such container, one that is paused already or not running, a process that could not be stopped")),
		`  hpcrun pause db
  hpcrun resume db`,
		exactID, func(c *runtime.Containers, args []string) error { return c.Pause(args[0]) })
	resumeCmd := verb(so, "resume ID", "Continue the processes of a paused container",
		`resume thaws the child cgroup of container ID and moves its processes
back, or sends SIGCONT to every process of it, as pause stopped them.

`+exitStatus(statusDone("the processes were continued"),
			statusFailed("no such container, one that is not paused")),
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

`+exitStatus(statusDone("the container stopped and its exit (or oom) event was printed; with --stats, "+
			"the one line was printed"),
			statusFailed("no such container, a stopped one with --stats, a bad flag or --interval")),
		`  hpcrun events --stats db
  hpcrun events --interval 1s db | jq -c .data.memory`,
		exactID, func(c *runtime.Containers, args []string) error {
			return events(c, args[0], ev.stats, ev.interval)
		})
	eventsCmd.Flags().BoolVar(&ev.stats, "stats", false, "print the figures once and exit")
	eventsCmd.Flags().DurationVar(&ev.interval, "interval", 5*time.Second, "how often to print the figures")
	return []*cobra.Command{psCmd, pauseCmd, resumeCmd, eventsCmd}
}

// event is one line of `hpcrun events`, as runc prints them.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

type statsData struct {
	CPU struct {
		Usage struct {
			Total uint64 `json:"total"` // ns
		} `json:"usage"`
	} `json:"cpu"`
	Memory struct {
		Usage struct {
			Usage uint64 `json:"usage"` // bytes
		} `json:"usage"`
	} `json:"memory"`
	Pids struct {
		Current uint64 `json:"current"`
	} `json:"pids"`
}

func events(c *runtime.Containers, id string, once bool, interval time.Duration) error {
	if interval <= 0 {
		return usageError{fmt.Errorf("--interval %v: want a positive duration", interval)}
	}
	enc := json.NewEncoder(os.Stdout)
	oomBefore := oomKills()
	for {
		st, err := c.Stats(id)
		if err != nil {
			s, lerr := c.Load(id)
			if lerr != nil || s.Status != runtime.StatusStopped || once {
				return err
			}
			// Stopped: say how, and end.
			typ := "exit"
			if s.ExitCode == 128+9 && oomKills() > oomBefore {
				typ = "oom"
			}
			return enc.Encode(event{Type: typ, ID: id, Data: map[string]int{"status": s.ExitCode}})
		}
		var d statsData
		d.CPU.Usage.Total = uint64(st.CPU.Nanoseconds())
		d.Memory.Usage.Usage = uint64(st.RSS)
		d.Pids.Current = uint64(st.Procs)
		if err := enc.Encode(event{Type: "stats", ID: id, Data: d}); err != nil || once {
			return err
		}
		time.Sleep(interval)
	}
}

// oomKills is the kernel's count of OOM kills (/proc/vmstat oom_kill).
func oomKills() int {
	b, _ := os.ReadFile("/proc/vmstat")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

func cpuTime(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

func kib(n int64) string { return strconv.FormatInt(n>>10, 10) + "K" }
