package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hpcrun/hpcrun/internal/helptext"
	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/launch"
	"github.com/hpcrun/hpcrun/runtime"
)

// globalOptions are the flags every command has.
type globalOptions struct {
	verbose, quiet bool
}

func (o *globalOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log every resolved setting and the time of each phase")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print no warnings, only errors")
}

// runOptions are the flags that shape a container.
type runOptions struct {
	image         string
	cacheDir      string
	platform      string
	rootfs        string
	binds         []string
	noHome        bool
	home          string
	contain       bool
	containAll    bool
	entrypoint    string
	runImage      bool
	pwd           string
	writableTmpfs bool
	net           string
	fakeroot      bool
	cleanEnv      bool
	env           []string
	envFiles      []string
	name          string
	detach        bool
	joinTag       string
	joinCount     int
	noJoin        bool
	gpu, rocm     bool
	newKeyring    bool
	restore       string
	registry      registryOptions
}

func (o *runOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.image, "image", "", "run in the image `REF`: an OCI or docker-save archive, an OCI layout DIR[:TAG], a SIF or squashfs file, docker://REF from a registry, or a rootfs directory")
	f.StringVar(&o.cacheDir, "cache", "", "keep unpacked images in `DIR`, not on a noexec filesystem (default: the config's cache, else hpcrun-$UID in the first usable of /var/tmp, /tmp, whatever $TMPDIR says; see hpcrun config)")
	f.StringVar(&o.platform, "platform", "", "take `OS/ARCH[/VARIANT]` from a multi-platform image (default: this node's)")
	o.registry.AddFlags(f)
	f.StringVar(&o.rootfs, "rootfs", "", "run in this root filesystem `DIR` (an unpacked image), used in place")
	f.StringArrayVarP(&o.binds, "bind", "B", nil, "bind a host path into the container as `SRC[:DST[:ro]]`; DST defaults to SRC (repeatable, or a comma list; adds to the config's binds)")
	f.BoolVar(&o.noHome, "no-home", false, "give the job an empty private $HOME instead of the real one")
	f.StringVar(&o.home, "home", "", "bind the host's `SRC[:DST]` as the job's $HOME, at DST (default: at your $HOME's path); the real one is not bound")
	f.BoolVar(&o.contain, "contain", false, "a private empty /tmp and /var/tmp, an empty $HOME (unless --home), and the current directory only if it is outside $HOME")
	f.BoolVar(&o.containAll, "containall", false, "--contain, --cleanenv and a private IPC namespace and /dev/shm")
	f.StringVar(&o.entrypoint, "entrypoint", "", "run `CMD` in place of the image's Entrypoint, with ARGS as its arguments (the image's Cmd is dropped)")
	f.BoolVar(&o.runImage, "run", false, "run the image's Entrypoint with ARGS as its arguments (apptainer run IMG ARGS, docker run IMG ARGS); without --run, CMD ARGS replace Entrypoint and Cmd")
	f.StringVar(&o.pwd, "pwd", "", "start the job in `DIR` inside the container (default: the current directory)")
	f.BoolVar(&o.writableTmpfs, "writable-tmpfs", false, "let the job write anywhere; writes go to a tmpfs and are discarded at exit")
	f.StringVar(&o.net, "net", "", "network `MODE`: host (share the node's) or none (a new one with only lo); default: the config's network, else host")
	f.BoolVar(&o.fakeroot, "fakeroot", false, "run as uid 0 inside (still your own uid outside)")
	f.BoolVarP(&o.cleanEnv, "cleanenv", "e", false, "pass only HOME, USER, TERM and the scheduler's variables from the host")
	f.StringArrayVar(&o.env, "env", nil, "set `K=V` in the container (repeatable); K alone copies it from the host")
	f.StringArrayVar(&o.envFiles, "env-file", nil, "read K=V lines from `FILE` (repeatable)")
	f.StringVar(&o.name, "name", "", "name the container `N`, so that hpcrun exec, ps and kill find it (see hpcrun list)")
	f.BoolVarP(&o.detach, "detach", "d", false, "run in the background, past hpcrun's exit, with the output in a log file kept until hpcrun delete; under Slurm it ends with the job")
	f.StringVar(&o.joinTag, "join-tag", "", "run in one container with the other tasks that give this `TAG` (default under srun: the job and step); they start together, and if one cannot start, all end with its reason, exit 125")
	f.IntVar(&o.joinCount, "join-count", 0, "how many tasks join the container (default: the tasks of the step on this node); the group fails if they have not all come within join_timeout (60s; see hpcrun config)")
	f.BoolVar(&o.noJoin, "no-join", false, "give this task a container of its own, even as one of several tasks of a step on this node")
	f.BoolVar(&o.gpu, "gpu", false, "make the node's NVIDIA driver (libcuda, nvidia-smi, ...) usable in the container")
	f.BoolVar(&o.gpu, "nv", false, "the same as --gpu")
	f.BoolVar(&o.newKeyring, "new-keyring", false, "give the job a fresh session keyring, without your keys (Kerberos KEYRING: caches, AFS tokens); default: the config's new_keyring, else the job shares yours")
	f.BoolVar(&o.rocm, "rocm", false, "make the node's AMD ROCm driver (libamdhip64, libhsa-runtime64, ...) usable in the container")
	f.StringVar(&o.restore, "restore", "", "go on with the job that hpcrun checkpoint saved in `DIR`, in the same image (its own unless --image) with the same binds; no CMD")
}

// newRootCommand builds the command line: the job's flags and every
// subcommand. early is an init started ahead for the job, or nil.
func newRootCommand(early *runtime.Init) *cobra.Command {
	cmd, g, so := newRunCommand(early)
	cmd.AddCommand(newSpecCommand(g), newImagesCommand(), newRmiCommand(), newPruneCommand(), newConfigCommand(), newCheckCommand(so))
	cmd.AddCommand(newPullCommand(g), newLoginCommand(g), newLogoutCommand(), newShellCommand(g, so), newInspectCommand(g))
	cmd.AddCommand(newLifecycleCommands(so)...)
	cmd.AddCommand(newProcessCommands(so)...)
	for _, add := range buildTagCommands {
		cmd.AddCommand(add(cmd))
	}
	finishCommandTree(cmd)
	return cmd
}

// newRunCommand builds the root command alone, with the job's flags and
// no subcommands: all that `hpcrun [flags] CMD ARGS...` needs, without the
// cost of the subcommands' flags and help (a job start pays it twice
// otherwise, in classify and in execute). It returns the options that the
// subcommands share.
func newRunCommand(early *runtime.Init) (*cobra.Command, *globalOptions, *stateOptions) {
	var g globalOptions
	var so stateOptions
	var o runOptions
	cmd := &cobra.Command{
		Use:   "hpcrun [flags] (--image REF | --rootfs DIR) [CMD [ARGS...] | --run [ARGS...]]",
		Short: "Run HPC jobs in containers, without root",
		Long: `hpcrun runs CMD in a container made from an image, as you, without root,
setuid helpers, daemons or subuid ranges. It only needs unprivileged user
namespaces. The job shares the node's network, sees your $HOME, the current
directory, /tmp and /var/tmp at the same paths, and the host's /dev, so GPUs
and interconnects work as outside. The rootfs is read-only.

--image takes an OCI archive, a docker save archive, an OCI layout directory
(REF:TAG picks a tag), a SIF file or squashfs image, or a rootfs directory. The first start on a node unpacks
the image into the cache, once however many jobs start together; later
starts pay no unpack. The cache is --cache, else $HPCRUN_CACHE, else the
config's, else hpcrun-$UID in the first of /var/tmp and /tmp that is
node-local, writable and not mounted noexec; never $TMPDIR, which differs
between the tasks of a job. Without CMD the image's Entrypoint and Cmd run;
CMD ARGS replace both, as apptainer exec does; --run ARGS gives ARGS to the
Entrypoint, as apptainer run and docker run do.

Under Slurm or PBS the scheduler's variables always pass into the container,
and -v logs the job facts found and which variable gave each. The site's and
your config files set defaults; hpcrun config shows them.

Flag parsing stops at CMD: everything after it goes to CMD. When CMD fails
and a word after it is one of hpcrun's flags, a warning says so.

Every job finds HPCRUN_CONTAINER (the --name, else 1) and HPCRUN_IMAGE in its
environment, and both in /run/.containerenv, as podman writes it.

Signals TERM, INT, HUP, QUIT, USR1, USR2 and CONT sent to hpcrun reach the
job; if hpcrun is killed, the job dies with it. Before the job has started
(while the image unpacks), a signal ends hpcrun, but USR1 and USR2 (Slurm's
--signal warnings), which are dropped with a warning.

` + launch.JoinHelp + `

` + jobs.EnvRule + `

` + helptext.JobStatus("CMD", "CMD", "a bad flag, no --image or --rootfs, a missing, broken or "+
			"hostile image, a full cache, a missing bind source, a bad config file (with its file:line), a bind "+
			"the site forbids, an unusable scratch dir, --gpu on a node without the driver, user namespaces "+
			"disabled (the message names the sysctl and the fix)",
			helptext.Status("0", "with --detach: the container was started in the background")),
		Example: `  hpcrun --image py3.tar python3 script.py --arg 1
  hpcrun --image /scratch/images/py3.tar --bind /scratch/$USER:/data:ro python3 train.py
  srun hpcrun --image py3.tar --cleanenv python3 -c 'import os; print(os.environ["SLURM_PROCID"])'
  hpcrun --rootfs ./rootfs sh
  hpcrun --image lolcow.tar --run moo          # the Entrypoint with the argument moo
  hpcrun --image py3.tar --containall -B /scratch/$USER/in:/in python3 /in/job.py
  hpcrun --image pg.tar --name db --detach postgres; hpcrun exec db psql -l
  hpcrun spec --image py3.tar -- python3 script.py > bundle/config.json`,
		Version:       version,
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := runJob(cmd, &g, &o, &so, args, early)
			if err != nil {
				return err
			}
			return exitError{code}
		},
	}
	cmd.SetVersionTemplate("hpcrun {{.Version}}\n")
	cmd.Flags().SetInterspersed(false)
	g.AddFlags(cmd.PersistentFlags())
	so.AddFlags(cmd.PersistentFlags())
	o.AddFlags(cmd.Flags())
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.verbose && g.quiet {
			return launch.UsageError{Err: errors.New("-v and -q cannot be used together")}
		}
		return nil
	}
	cmd.SetFlagErrorFunc(flagError)
	return cmd, &g, &so
}

// runJob runs the job that the flags and args ask for and returns its
// exit status.
func runJob(cmd *cobra.Command, g *globalOptions, o *runOptions, so *stateOptions, args []string, early *runtime.Init) (int, error) {
	log := g.log()
	log.Phase("parsed the command line")
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	r := o.request(cmd.Flags(), args)
	code, err := launch.Run(ctx, r, launch.Options{Log: log, State: so.open, Early: early})
	if w := launch.FlagAfterCmd(r, code, func(n string) bool { return cmd.LocalNonPersistentFlags().Lookup(n) != nil }); err == nil && w != "" {
		log.Warnf("%s", w)
	}
	return code, err
}

// request is what the run flags ask for.
func (o *runOptions) request(f *pflag.FlagSet, args []string) *launch.Request {
	r := &launch.Request{
		Image: o.image, Rootfs: o.rootfs, Platform: o.platform, Cache: o.cacheDir, Args: args,
		Binds: o.binds, NoHome: o.noHome, Home: o.home, Contain: o.contain, ContainAll: o.containAll, Run: o.runImage, Pwd: o.pwd, WritableTmpfs: o.writableTmpfs, Net: o.net,
		Fakeroot: o.fakeroot, CleanEnv: o.cleanEnv, Env: o.env, EnvFiles: o.envFiles, GPU: o.gpu, ROCm: o.rocm,
		Name: o.name, Detach: o.detach, JoinTag: o.joinTag, JoinCount: o.joinCount, NoJoin: o.noJoin, Restore: o.restore,
		Insecure: o.registry.insecure(), CAFile: o.registry.caFile,
	}
	if f.Changed("entrypoint") {
		r.Entrypoint = &o.entrypoint
	}
	if f.Changed("new-keyring") {
		r.NewKeyring = &o.newKeyring
	}
	return r
}

// log is the -v and warning printer of a command, timed from main's start.
func (g *globalOptions) log() *launch.Log {
	start := started
	if start.IsZero() {
		start = time.Now()
	}
	return &launch.Log{Verbose: g.verbose, Quiet: g.quiet, Start: start, W: os.Stderr, Out: os.Stdout}
}
