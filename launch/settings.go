package launch

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hpcrun/hpcrun/jobs"
)

// Settings are what the config layers, the flags over them and the batch
// job say about a run.
type Settings struct {
	Job    jobs.Job
	Loaded jobs.Loaded
	Conf   jobs.Config // with the flags applied and, after Cache, the cache resolved

	// Probe looks at a directory for the cache's choice: jobs.ProbeDir,
	// faked by tests.
	Probe func(string) jobs.Dir
}

// LoadSettings reads the config (site, user, HPCRUN_* variables) and puts
// the --cache and --net flags over it ("" when not given).
func LoadSettings(h Host, cacheFlag, netFlag string) (*Settings, error) {
	st := &Settings{Job: jobs.FromEnv(h.Env), Probe: jobs.ProbeDir}
	l, err := jobs.LoadConfig(h.Env, int(h.UID))
	if err != nil {
		return nil, err
	}
	st.Loaded, st.Conf = l, l.Config
	if cacheFlag != "" {
		if !filepath.IsAbs(cacheFlag) {
			cacheFlag = filepath.Join(h.Cwd, cacheFlag)
		}
		st.Conf.Cache = jobs.Setting[string]{Value: filepath.Clean(cacheFlag), From: "--cache"}
	}
	if netFlag != "" {
		st.Conf.Network = jobs.Setting[string]{Value: netFlag, From: "--net"}
	}
	return st, nil
}

// Cache is the image cache, settled on first use (a --rootfs run needs
// none): --cache, HPCRUN_CACHE or the config's cache, refused on a noexec
// filesystem; else hpcrun-UID in the node-local scratch dir. Nothing in
// the job's environment (TMPDIR) moves it: see jobs.Candidates.
func (st *Settings) Cache(h Host) (string, error) {
	if c := st.Conf.Cache; c.Value != "" {
		if err := jobs.CheckCache(c.Value, c.From, st.Probe); err != nil {
			return "", err
		}
		return c.Value, nil
	}
	sc, err := jobs.ChooseScratch(st.Conf, st.Probe)
	if err != nil {
		return "", err
	}
	from := sc.From
	if len(sc.Why) > 0 {
		from += "; passed over " + strings.Join(sc.Why, ", ")
	}
	st.Conf.Scratch = jobs.Setting[string]{Value: sc.Dir, From: from}
	st.Conf.Cache = jobs.Setting[string]{
		Value: jobs.CacheIn(sc.Dir, int(h.UID)),
		From:  "default: hpcrun-UID in the scratch dir " + sc.Dir,
	}
	return st.Conf.Cache.Value, nil
}

// LogTo writes the job's facts and the config's sources to -v.
func (st *Settings) LogTo(log *Log) {
	if !log.Verbose {
		return
	}
	j := st.Job
	sched := string(j.Scheduler)
	if j.Flavor != "" {
		sched += " (" + j.Flavor + ")"
	}
	log.Debugf("scheduler: %s", sched)
	for _, s := range j.Sources {
		log.Debugf("job %s: %s (from %s)", s.Fact, s.Value, s.From)
	}
	if len(st.Loaded.Read) > 0 {
		log.Debugf("config files: %s", strings.Join(st.Loaded.Read, ", "))
	}
	log.Debugf("network: %s (%s)", st.Conf.Network.Value, st.Conf.Network.From)
}

// Render is the effective configuration as hpcrun config prints it: YAML,
// each value followed by where it came from, after comments that name the
// config files and the job's facts.
func (st *Settings) Render(h Host) string {
	var b strings.Builder
	b.WriteString("# hpcrun's effective configuration; after each value, where it came from.\n")
	site, confd, user := jobs.ConfigPaths(h.Env)
	fmt.Fprintf(&b, "# files: %s, %s/*.yaml, %s\n", site, confd, orNone(user))
	fmt.Fprintf(&b, "# read: %s\n", orNone(strings.Join(st.Loaded.Read, ", ")))
	j := st.Job
	fmt.Fprintf(&b, "# scheduler: %s", j.Scheduler)
	if j.Flavor != "" {
		fmt.Fprintf(&b, " (%s)", j.Flavor)
	}
	b.WriteString("\n")
	for _, s := range j.Sources {
		fmt.Fprintf(&b, "#   %s: %s (from %s)\n", s.Fact, s.Value, s.From)
	}
	b.WriteString(st.Conf.Render())
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
