package procs

import (
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

// WriteTable writes processes as hpcrun ps shows them: the pid on the
// host and inside, the user, the state, the CPU time, the RSS and the
// command line, which the job writes and so is made safe to print.
func WriteTable(w io.Writer, ps []Proc) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tPID INSIDE\tUSER\tSTAT\tTIME\tRSS\tCOMMAND")
	for _, p := range ps {
		cmd := strings.Join(p.Cmdline, " ")
		if cmd == "" {
			cmd = "[" + p.Comm + "]"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%c\t%s\t%s\t%s\n", p.Pid, p.NSPid, UserName(strconv.Itoa(p.UID)), p.State,
			cpuTime(p.CPU), kib(p.RSS), termsafe.Line(cmd))
	}
	return tw.Flush()
}

// UserName is the name of the user uid (decimal), or uid when it has
// none here.
func UserName(uid string) string {
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return uid
}

func cpuTime(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

func kib(n int64) string { return strconv.FormatInt(n>>10, 10) + "K" }
