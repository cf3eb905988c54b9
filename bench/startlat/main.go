// Command startlat measures the start-up latency of several commands
// ("contenders") side by side. Every round runs each contender once, in an
// order that rotates from round to round, so that slow drifts of the machine
// (frequency scaling, page cache, noisy neighbours) hit all contenders alike.
//
// It is driven by bench/startup.sh, which builds it on the fly; it uses only
// the standard library so it builds without network access.
//
// Usage:
//
//	startlat [-n ROUNDS] [-warmup N] [-baseline NAME] [-label TEXT] [-timeout D] \
//	    NAME=COMMAND LINE [NAME=COMMAND LINE ...]
//
// A COMMAND LINE is split into words at blanks; single or double quotes group
// words, and a backslash escapes the next character (outside single quotes).
// There is no other shell processing. Each run gets /dev/null as stdin and
// stdout; its stderr is kept so that it can be shown if the run fails. Any
// run that does not exit 0 aborts the whole benchmark with exit status 1.
//
// The word {run} in a command line is replaced by a number unique to each run
// (for runtimes that want a fresh container ID, e.g. runc). With -samples
// FILE, every measured run is also appended to FILE as a line
// "[TAG ]ROUND NAME MICROSECONDS" (TAG from -tag), for a caller that reports
// several benchmarks in one table (bench/bench.sh).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

type contender struct {
	name    string
	line    string
	args    []string
	path    string
	perRun  []int // indexes of the args that hold {run}
	samples []time.Duration
}

// watchdog kills a run that takes longer than the limit. It lives in its own
// goroutine so that the timed path does no timer or context set-up.
type watchdog struct {
	mu      sync.Mutex
	proc    *os.Process
	started time.Time
	killed  bool
}

func (w *watchdog) watch(limit time.Duration) {
	for range time.Tick(limit / 10) {
		w.mu.Lock()
		if w.proc != nil && !w.killed && time.Since(w.started) > limit {
			w.killed = true
			_ = w.proc.Kill()
		}
		w.mu.Unlock()
	}
}

func (w *watchdog) set(p *os.Process, started time.Time) {
	w.mu.Lock()
	w.proc, w.started, w.killed = p, started, false
	w.mu.Unlock()
}

func (w *watchdog) clear() (killed bool) {
	w.mu.Lock()
	killed = w.killed
	w.proc = nil
	w.mu.Unlock()
	return killed
}

func main() {
	rounds := flag.Int("n", 200, "number of measured rounds")
	warmup := flag.Int("warmup", 5, "number of warm-up rounds (not counted)")
	baseline := flag.String("baseline", "", "contender that the ratio column is relative to (default: none)")
	label := flag.String("label", "`true`", "what is being started, for the title line")
	timeout := flag.Duration("timeout", 30*time.Second, "kill and fail a single run that takes longer than this")
	samples := flag.String("samples", "", "also append every measured run to this file, as \"[TAG ]ROUND NAME MICROSECONDS\"")
	tag := flag.String("tag", "", "first word of each -samples line")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] NAME=COMMAND-LINE ...\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*rounds, *warmup, *baseline, *label, *timeout, flag.Args(), *samples, *tag); err != nil {
		fmt.Fprintf(os.Stderr, "startlat: %v\n", err)
		os.Exit(1)
	}
}

func run(rounds, warmup int, baseline, label string, timeout time.Duration, specs []string, samples, tag string) error {
	if rounds < 1 || warmup < 0 {
		return errors.New("-n must be >= 1 and -warmup >= 0")
	}
	if timeout <= 0 {
		return errors.New("-timeout must be positive")
	}
	if strings.ContainsAny(tag, " \t\n") {
		return errors.New("-tag must be one word")
	}
	if len(specs) == 0 {
		return errors.New("no contenders given (NAME=COMMAND-LINE ...)")
	}
	cs, err := parseContenders(specs)
	if err != nil {
		return err
	}
	if baseline != "" && indexOf(cs, baseline) < 0 {
		return fmt.Errorf("baseline %q is not a contender", baseline)
	}

	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	errf, err := os.CreateTemp("", "startlat-stderr-*")
	if err != nil {
		return err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()

	wd := &watchdog{}
	go wd.watch(timeout)

	// Keep the collector out of the measurements as far as possible.
	runtime.GC()
	debug.SetGCPercent(-1)

	nrun := 0
	runOnce := func(c *contender, round int, warm bool) error {
		nrun++
		args := c.args
		if len(c.perRun) > 0 {
			args = append([]string(nil), c.args...)
			id := fmt.Sprintf("%d-%d", os.Getpid(), nrun)
			for _, i := range c.perRun {
				args[i] = strings.ReplaceAll(args[i], "{run}", id)
			}
		}
		if err := errf.Truncate(0); err != nil {
			return err
		}
		if _, err := errf.Seek(0, io.SeekStart); err != nil {
			return err
		}
		cmd := &exec.Cmd{
			Path:   c.path,
			Args:   args,
			Stdin:  devnull,
			Stdout: devnull,
			Stderr: errf,
		}
		t0 := time.Now()
		err := cmd.Start()
		if err == nil {
			wd.set(cmd.Process, t0)
			err = cmd.Wait()
		}
		d := time.Since(t0)
		killed := wd.clear()
		if err != nil {
			what := "warm-up run"
			if !warm {
				what = fmt.Sprintf("round %d", round+1)
			}
			if killed {
				err = fmt.Errorf("timed out after %v (killed)", timeout)
			}
			return &runError{c: c, what: what, err: err, stderr: readAll(errf)}
		}
		if !warm {
			c.samples = append(c.samples, d)
		}
		return nil
	}

	k := len(cs)
	for r := 0; r < warmup; r++ {
		for i := 0; i < k; i++ {
			if err := runOnce(cs[(r+i)%k], r, true); err != nil {
				return err
			}
		}
	}
	for r := 0; r < rounds; r++ {
		for i := 0; i < k; i++ {
			if err := runOnce(cs[(r+i)%k], r, false); err != nil {
				return err
			}
		}
		if r%64 == 63 {
			runtime.GC()
		}
	}
	debug.SetGCPercent(100)

	if samples != "" {
		if err := writeSamples(samples, tag, cs); err != nil {
			return err
		}
	}
	report(os.Stdout, cs, rounds, baseline, label)
	return nil
}

// writeSamples appends the samples, still in round order, to path.
func writeSamples(path, tag string, cs []*contender) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if tag != "" {
		tag += " "
	}
	var b strings.Builder
	for _, c := range cs {
		for r, d := range c.samples {
			fmt.Fprintf(&b, "%s%d %s %d\n", tag, r+1, c.name, d.Microseconds())
		}
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type runError struct {
	c      *contender
	what   string
	err    error
	stderr string
}

func (e *runError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "contender %q failed in %s: %v\n", e.c.name, e.what, e.err)
	fmt.Fprintf(&b, "  command: %s\n", e.c.line)
	if s := strings.TrimRight(e.stderr, "\n"); s != "" {
		b.WriteString("  stderr:\n")
		for _, l := range strings.Split(s, "\n") {
			b.WriteString("    | " + l + "\n")
		}
	} else {
		b.WriteString("  stderr: (empty)\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

func readAll(f *os.File) string {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "(cannot read stderr: " + err.Error() + ")"
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "(cannot read stderr: " + err.Error() + ")"
	}
	return string(b)
}

func parseContenders(specs []string) ([]*contender, error) {
	var cs []*contender
	for _, s := range specs {
		name, line, ok := strings.Cut(s, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("bad contender %q: want NAME=COMMAND-LINE", s)
		}
		if indexOf(cs, name) >= 0 {
			return nil, fmt.Errorf("contender %q given twice", name)
		}
		args, err := splitWords(line)
		if err != nil {
			return nil, fmt.Errorf("contender %q: %v", name, err)
		}
		if len(args) == 0 {
			return nil, fmt.Errorf("contender %q: empty command line", name)
		}
		// Resolve the program once, outside the timed path.
		path, err := exec.LookPath(args[0])
		if err != nil {
			return nil, fmt.Errorf("contender %q: %v", name, err)
		}
		c := &contender{name: name, line: line, args: args, path: path}
		for i, a := range args {
			if i > 0 && strings.Contains(a, "{run}") {
				c.perRun = append(c.perRun, i)
			}
		}
		cs = append(cs, c)
	}
	return cs, nil
}

func indexOf(cs []*contender, name string) int {
	for i, c := range cs {
		if c.name == name {
			return i
		}
	}
	return -1
}

// splitWords splits a command line at blanks, honouring '...' and "..."
// quoting and backslash escapes (the latter not inside single quotes).
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case quote == '"':
			if r == '"' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	if escaped {
		return nil, fmt.Errorf("trailing backslash in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// quantile returns the q-quantile of sorted samples, interpolating linearly
// between the two nearest ranks.
func quantile(sorted []time.Duration, q float64) float64 {
	n := len(sorted)
	if n == 1 {
		return ms(sorted[0])
	}
	pos := q * float64(n-1)
	lo := int(pos)
	if lo >= n-1 {
		return ms(sorted[n-1])
	}
	frac := pos - float64(lo)
	return ms(sorted[lo])*(1-frac) + ms(sorted[lo+1])*frac
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	rel := strings.TrimSpace(string(b))
	// Keep major.minor, as in "6.18".
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) >= 2 {
		minor := parts[1]
		if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			minor = minor[:i]
		}
		return parts[0] + "." + minor
	}
	return rel
}

func report(w io.Writer, cs []*contender, rounds int, baseline, label string) {
	fmt.Fprintf(w, "start-up of %s, %d interleaved rounds, uid %d, kernel %s, %d CPUs\n",
		label, rounds, os.Getuid(), kernelRelease(), runtime.NumCPU())

	med := make(map[string]float64, len(cs))
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	ratioHdr := ""
	if baseline != "" {
		ratioHdr = "\tratio vs " + baseline + "\tpaired ratio"
	}
	fmt.Fprintf(tw, "contender\tmedian ms\tp10\tp90%s\n", ratioHdr)
	// The paired ratio is the median over rounds of this round's time over
	// the baseline's in the same round: drifts of the machine that hit both
	// alike cancel out. Samples are still in round order here.
	paired := make(map[string]float64, len(cs))
	if b := indexOf(cs, baseline); b >= 0 {
		for _, c := range cs {
			var rs []float64
			for i, d := range c.samples {
				if i < len(cs[b].samples) && cs[b].samples[i] > 0 {
					rs = append(rs, float64(d)/float64(cs[b].samples[i]))
				}
			}
			sort.Float64s(rs)
			if len(rs) > 0 {
				paired[c.name] = rs[len(rs)/2]
			}
		}
	}
	for _, c := range cs {
		s := append([]time.Duration(nil), c.samples...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		med[c.name] = quantile(s, 0.5)
		c.samples = s
	}
	for _, c := range cs {
		ratio := ""
		if baseline != "" {
			switch {
			case c.name == baseline:
				ratio = "\t-\t-"
			case med[baseline] > 0:
				ratio = fmt.Sprintf("\t%.2fx\t%.2fx", med[c.name]/med[baseline], paired[c.name])
			default:
				ratio = "\t?\t?"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s%s\n", c.name,
			fmtMS(med[c.name]), fmtMS(quantile(c.samples, 0.1)), fmtMS(quantile(c.samples, 0.9)), ratio)
	}
	tw.Flush()
}

// fmtMS prints three significant digits, at most three decimals.
func fmtMS(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}
