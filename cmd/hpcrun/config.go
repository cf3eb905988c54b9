package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/launch"
)

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
  criu: PATH               a static criu (4.1 or newer) for hpcrun checkpoint
                           and --restore, in place of the image's own
                           (HPCRUN_CRIU)

Paths may use $USER, $UID and $HOME. A config error names the file and line.

` + helptext.ExitStatus(helptext.Done("the configuration was printed"),
			helptext.Failed("a config file that cannot be read or parsed, or a bad value in it (with its file:line); "+
				"a cache or scratch dir on a noexec filesystem, or no usable one, after the configuration was printed")),
		Example: `  hpcrun config
  HPCRUN_CONFIG=./site.yaml hpcrun config     # check a site file before installing it`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h := launch.HostFacts()
			st, err := launch.LoadSettings(h, "", "")
			if err != nil {
				return err
			}
			// An unusable cache or scratch dir is reported after the config,
			// which is printed anyway: it is what one checks it with.
			_, cacheErr := st.Cache(h)
			if _, err := os.Stdout.WriteString(st.Render(h)); err != nil {
				return err
			}
			return cacheErr
		},
	}
	cmd.SetFlagErrorFunc(flagError)
	return cmd
}
