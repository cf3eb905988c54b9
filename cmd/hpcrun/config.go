package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/jobs"
)

// settings are what the config layers, the flags over them and the batch
// job say about a run.
type settings struct {
	job    jobs.Job
	loaded jobs.Loaded
	conf   jobs.Config // with the flags applied and the cache resolved

	// probe looks at a directory for the cache's choice: jobs.ProbeDir,
	// faked by tests.
	probe func(string) jobs.Dir
}

// loadSettings reads the config (site, user, HPCRUN_* variables) and puts
// the --cache and --net flags over it ("" when not given).
func loadSettings(h host, cacheFlag, netFlag string) (*settings, error) {
	st := &settings{job: jobs.FromEnv(h.env), probe: jobs.ProbeDir}
	l, err := jobs.LoadConfig(h.env, int(h.uid))
	if err != nil {
		return nil, err
	}
	st.loaded, st.conf = l, l.Config
	if cacheFlag != "" {
		if !filepath.IsAbs(cacheFlag) {
			cacheFlag = filepath.Join(h.cwd, cacheFlag)
		}
		st.conf.Cache = jobs.Setting[string]{Value: filepath.Clean(cacheFlag), From: "--cache"}
	}
	if netFlag != "" {
		st.conf.Network = jobs.Setting[string]{Value: netFlag, From: "--net"}
	}
	return st, nil
}

// cache is the image cache, settled on first use (a --rootfs run needs
// none): --cache, HPCRUN_CACHE or the config's cache, refused on a noexec
// filesystem; else hpcrun-UID in the node-local scratch dir. Nothing in
// the job's environment (TMPDIR) moves it: see jobs.Candidates.
func (st *settings) cache(h host) (string, error) {
	if c := st.conf.Cache; c.Value != "" {
		if err := jobs.CheckCache(c.Value, c.From, st.probe); err != nil {
			return "", err
		}
		return c.Value, nil
	}
	sc, err := jobs.ChooseScratch(st.conf, st.probe)
	if err != nil {
		return "", err
	}
	from := sc.From
	if len(sc.Why) > 0 {
		from += "; passed over " + strings.Join(sc.Why, ", ")
	}
	st.conf.Scratch = jobs.Setting[string]{Value: sc.Dir, From: from}
	st.conf.Cache = jobs.Setting[string]{
		Value: jobs.CacheIn(sc.Dir, int(h.uid)),
		From:  "default: hpcrun-UID in the scratch dir " + sc.Dir,
	}
	return st.conf.Cache.Value, nil
}

// logTo writes the job's facts and the config's sources to -v.
func (st *settings) logTo(log *logger) {
	if !log.verbose {
		return
	}
	j := st.job
	sched := string(j.Scheduler)
	if j.Flavor != "" {
		sched += " (" + j.Flavor + ")"
	}
	log.debugf("scheduler: %s", sched)
	for _, s := range j.Sources {
		log.debugf("job %s: %s (from %s)", s.Fact, s.Value, s.From)
	}
	if len(st.loaded.Read) > 0 {
		log.debugf("config files: %s", strings.Join(st.loaded.Read, ", "))
	}
	log.debugf("network: %s (%s)", st.conf.Network.Value, st.conf.Network.From)
}

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration and where each value came from",
		Long: `config prints hpcrun's configuration as YAML, each value followed by where it
came from. Layers, each overriding the one before:

  1. the site's ` + jobs.SiteConfig + `, then conf.d/*.yaml next to it, in name order
     ($` + jobs.ConfigEnv + ` names another site file)
  2. your ~/.config/hpcrun/config.yaml ($XDG_CONFIG_HOME/hpcrun/config.yaml)
  3. HPCRUN_* variables
  4. the flags of a run (--cache, --net, --bind, --new-keyring)

A list in a later layer replaces the whole list; --bind adds to the binds.
Keys:

  cache: DIR               where images are unpacked (HPCRUN_CACHE); refused on
                           a filesystem mounted noexec
  scratch: DIR             node-local scratch; the default cache is
                           hpcrun-$UID in it (HPCRUN_SCRATCH). Default: the
                           first of /var/tmp, /tmp that exists, is node-local,
                           is not mounted noexec and is writable; never
                           $TMPDIR, which differs between a job's tasks
  scratch_dirs: [DIR]      scratch filesystems bound into every container when
                           present (HPCRUN_SCRATCH_DIRS, ':'-separated)
  binds: [BIND]            binds every container gets: "SRC[:DST[:ro]]" or
                           {src: SRC, dst: DST, ro: true, required: true}; a
                           missing optional one is skipped (HPCRUN_BINDS,
                           ','-separated)
  env: {pass: [], deny: [] }
                           host variables (NAME or PREFIX*) that pass even with
                           --cleanenv, and that never pass (HPCRUN_ENV_PASS,
                           HPCRUN_ENV_DENY, ','-separated); the scheduler's
                           always pass
  network: host|none       the default of --net (HPCRUN_NETWORK)
  allow_system_binds: BOOL whether --bind may name the host's /usr, /etc, /lib,
                           /var and the other system dirs (site file only;
                           default true)
  batch_line_warning: BOOL whether a plain hpcrun line of a Slurm batch
                           script, which scancel and the time limit SIGKILL
                           without a TERM, is warned about (default true)
  join_timeout: DURATION   how long the tasks of a group wait for those that
                           have not come at all before the group fails, from
                           1s to 24h (HPCRUN_JOIN_TIMEOUT; default 60s)
  new_keyring: BOOL        give each job a fresh session keyring, without
                           your keys, as --new-keyring does (default false:
                           jobs share yours, with its Kerberos KEYRING:
                           caches and AFS tokens)

Paths may use $USER, $UID and $HOME. A config error names the file and line.

` + exitStatus(statusDone("the configuration was printed"),
			statusFailed("a config file that cannot be read or parsed, or a bad value in it (with its file:line); "+
				"a cache or scratch dir on a noexec filesystem, or no usable one, after the configuration was printed")),
		Example: `  hpcrun config
  HPCRUN_CONFIG=./site.yaml hpcrun config     # check a site file before installing it`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h := hostFacts()
			st, err := loadSettings(h, "", "")
			if err != nil {
				return err
			}
			// An unusable cache or scratch dir is reported after the config,
			// which is printed anyway: it is what one checks it with.
			_, cacheErr := st.cache(h)
			var b strings.Builder
			b.WriteString("# hpcrun's effective configuration; after each value, where it came from.\n")
			site, confd, user := jobs.ConfigPaths(h.env)
			fmt.Fprintf(&b, "# files: %s, %s/*.yaml, %s\n", site, confd, orNone(user))
			fmt.Fprintf(&b, "# read: %s\n", orNone(strings.Join(st.loaded.Read, ", ")))
			j := st.job
			fmt.Fprintf(&b, "# scheduler: %s", j.Scheduler)
			if j.Flavor != "" {
				fmt.Fprintf(&b, " (%s)", j.Flavor)
			}
			b.WriteString("\n")
			for _, s := range j.Sources {
				fmt.Fprintf(&b, "#   %s: %s (from %s)\n", s.Fact, s.Value, s.From)
			}
			b.WriteString(st.conf.Render())
			if _, err := os.Stdout.WriteString(b.String()); err != nil {
				return err
			}
			return cacheErr
		},
	}
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
