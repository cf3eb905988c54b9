package procs

import (
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/hpcrun/hpcrun/internal/termsafe"

	"github.com/hpcrun/hpcrun/internal/columns"
)

// WriteTable writes processes as hpcrun ps shows them: the pid on the
// host and inside, the user, the state, the CPU time, the RSS and the
// command line, which the job writes and so is made safe to print.
func WriteTable(w io.Writer, ps []Proc) error {
	rows := [][]string{{"PID", "PID INSIDE", "USER", "STAT", "TIME", "RSS", "COMMAND"}}
	for _, p := range ps {
		cmd := strings.Join(p.Cmdline, " ")
		if cmd == "" {
			cmd = "[" + p.Comm + "]"
		}
		rows = append(rows, []string{strconv.Itoa(p.Pid), strconv.Itoa(p.NSPid), UserName(strconv.Itoa(p.UID)), string(p.State),
			cpuTime(p.CPU), kib(p.RSS), termsafe.Line(cmd)})
	}
	return columns.Write(w, 2, rows)
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
