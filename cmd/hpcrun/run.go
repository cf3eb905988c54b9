package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hpcrun/hpcrun/gpu"
	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/netns"
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/unpack"
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
	keyringSet    bool // --new-keyring was given, =false included
}

func (o *runOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.image, "image", "", "run in the image `REF`: an OCI or docker-save archive, an OCI layout DIR[:TAG], or a rootfs directory")
	f.StringVar(&o.cacheDir, "cache", "", "keep unpacked images in `DIR`, not on a noexec filesystem (default: the config's cache, else hpcrun-$UID in the first usable of /var/tmp, /tmp, whatever $TMPDIR says; see hpcrun config)")
	f.StringVar(&o.platform, "platform", "", "take `OS/ARCH[/VARIANT]` from a multi-platform image (default: this node's)")
	f.StringVar(&o.rootfs, "rootfs", "", "run in this root filesystem `DIR` (an unpacked image), used in place")
	f.StringArrayVar(&o.binds, "bind", nil, "bind a host path into the container as `SRC[:DST[:ro]]`; DST defaults to SRC (repeatable; adds to the config's binds)")
	f.BoolVar(&o.noHome, "no-home", false, "give the job an empty private $HOME instead of the real one")
	f.StringVar(&o.pwd, "pwd", "", "start the job in `DIR` inside the container (default: the current directory)")
	f.BoolVar(&o.writableTmpfs, "writable-tmpfs", false, "let the job write anywhere; writes go to a tmpfs and are discarded at exit")
	f.StringVar(&o.net, "net", "", "network `MODE`: host (share the node's) or none (a new one with only lo); default: the config's network, else host")
	f.BoolVar(&o.fakeroot, "fakeroot", false, "run as uid 0 inside (still your own uid outside)")
	f.BoolVar(&o.cleanEnv, "cleanenv", false, "pass only HOME, USER, TERM and the scheduler's variables from the host")
	f.StringArrayVar(&o.env, "env", nil, "set `K=V` in the container (repeatable); K alone copies it from the host")
	f.StringArrayVar(&o.envFiles, "env-file", nil, "read K=V lines from `FILE` (repeatable)")
	f.StringVar(&o.name, "name", "", "name the container `N`, so that hpcrun exec, ps and kill find it (see hpcrun list)")
	f.BoolVarP(&o.detach, "detach", "d", false, "run in the background, past hpcrun's exit, with the output in a log file; under Slurm it ends with the job")
	f.StringVar(&o.joinTag, "join-tag", "", "run in one container with the other tasks that give this `TAG` (default under srun: the job and step); they start together, and if one cannot start, all end with its reason, exit 125")
	f.IntVar(&o.joinCount, "join-count", 0, "how many tasks join the container (default: the tasks of the step on this node); the group fails if they have not all come within join_timeout (60s; see hpcrun config)")
	f.BoolVar(&o.noJoin, "no-join", false, "give this task a container of its own, even as one of several tasks of a step on this node")
	f.BoolVar(&o.gpu, "gpu", false, "make the node's NVIDIA driver (libcuda, nvidia-smi, ...) usable in the container")
	f.BoolVar(&o.gpu, "nv", false, "the same as --gpu")
	f.BoolVar(&o.newKeyring, "new-keyring", false, "give the job a fresh session keyring, without your keys (Kerberos KEYRING: caches, AFS tokens); default: the config's new_keyring, else the job shares yours")
	f.BoolVar(&o.rocm, "rocm", false, "make the node's AMD ROCm driver (libamdhip64, libhsa-runtime64, ...) usable in the container")
}

// newRootCommand builds the command line. early is an init started ahead
// for the job, or nil.
func newRootCommand(early *runtime.Init) *cobra.Command {
	var g globalOptions
	var so stateOptions
	var o runOptions
	cmd := &cobra.Command{
		Use:   "hpcrun [flags] (--image REF | --rootfs DIR) [CMD [ARGS...]]",
		Short: "Run HPC jobs in containers, without root",
		Long: `hpcrun runs CMD in a container made from an image, as you, without root,
setuid helpers, daemons or subuid ranges. It only needs unprivileged user
namespaces. The job shares the node's network, sees your $HOME, the current
directory, /tmp and /var/tmp at the same paths, and the host's /dev, so GPUs
and interconnects work as outside. The rootfs is read-only.

--image takes an OCI archive, a docker save archive, an OCI layout directory
(REF:TAG picks a tag) or a rootfs directory. The first start on a node unpacks
the image into the cache, once however many jobs start together; later
starts pay no unpack. The cache is --cache, else $HPCRUN_CACHE, else the
config's, else hpcrun-$UID in the node's scratch dir: $SLURM_TMPDIR or
$TMPDIR when node-local, else /var/tmp. Without CMD the image's Entrypoint
and Cmd run.

Under Slurm or PBS the scheduler's variables always pass into the container,
and -v logs the job facts found and which variable gave each. The site's and
your config files set defaults; hpcrun config shows them.

Flag parsing stops at CMD: everything after it goes to CMD.

Signals TERM, INT, HUP, QUIT, USR1, USR2 and CONT sent to hpcrun reach the
job; if hpcrun is killed, the job dies with it.

` + joinHelp + `

` + jobs.EnvRule + `

` + jobStatus("CMD", "CMD", "a bad flag, no --image or --rootfs, a missing, broken or "+
			"hostile image, a full cache, a missing bind source, a bad config file (with its file:line), a bind "+
			"the site forbids, an unusable scratch dir, --gpu on a node without the driver, user namespaces "+
			"disabled (the message names the sysctl and the fix)",
			status{"0", "with --detach: the container was started in the background"}),
		Example: `  hpcrun --image py3.tar python3 script.py --arg 1
  hpcrun --image /scratch/images/py3.tar --bind /scratch/$USER:/data:ro python3 train.py
  srun hpcrun --image py3.tar --cleanenv python3 -c 'import os; print(os.environ["SLURM_PROCID"])'
  hpcrun --rootfs ./rootfs sh
  hpcrun --image pg.tar --name db --detach postgres; hpcrun exec db psql -l
  hpcrun spec --image py3.tar -- python3 script.py > bundle/config.json`,
		Version:       version,
		Args:          cobra.ArbitraryArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.keyringSet = cmd.Flags().Changed("new-keyring")
			code, err := runJob(cmd.Context(), &g, &o, &so, args, early)
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
			return usageError{errors.New("-v and -q cannot be used together")}
		}
		return nil
	}
	cmd.SetFlagErrorFunc(flagError)
	cmd.AddCommand(newSpecCommand(&g), newImagesCommand(), newRmiCommand(), newPruneCommand(), newConfigCommand(), newCheckCommand(&so))
	cmd.AddCommand(newPullCommand(&g), newLoginCommand())
	cmd.AddCommand(newLifecycleCommands(&so)...)
	cmd.AddCommand(newProcessCommands(&so)...)
	for _, add := range buildTagCommands {
		cmd.AddCommand(add(cmd))
	}
	finishCommandTree(cmd)
	return cmd
}

// runJob resolves the options and runs the job, returning its exit status.
func runJob(ctx context.Context, g *globalOptions, o *runOptions, so *stateOptions, args []string, early *runtime.Init) (int, error) {
	start := started
	if start.IsZero() {
		start = time.Now()
	}
	log := newLogger(g, start)
	log.phase("parsed the command line")
	if ctx == nil {
		ctx = context.Background()
	}
	h := hostFacts()
	st, err := loadSettings(h, o.cacheDir, o.net)
	if err != nil {
		return 0, err
	}
	st.logTo(log)
	if st.conf.BatchLineWarning.Value && jobs.PlainBatchLine(st.job, os.Getppid(), jobs.ProcFS{}) {
		log.warnf("%s", jobs.BatchLineWarning)
	}
	grp, err := joinGroup(o, st.job)
	if err != nil {
		return 0, err
	}
	var meet *runtime.Member
	if grp.name != "" {
		// Before anything of this task's can fail: the other tasks must
		// hear of it (see meetGroup).
		if meet, err = enterGroup(so, grp, log); err != nil {
			return 0, err
		}
		defer meet.Close()
	}
	im, err := openImage(ctx, o, h, st, log)
	if err != nil {
		return 0, failGroup(meet, grp, st.job, err)
	}
	defer im.release()
	cfg, err := resolve(o, im, args, h, st, log)
	if err != nil {
		return 0, failGroup(meet, grp, st.job, err)
	}
	cfg.Verbose = g.verbose
	cfg.Start = start
	log.phase("resolved options")
	if grp.name != "" {
		early.Abort()
		if err := meetGroup(meet, im, cfg, st.conf.JoinTimeout.Value, log); err != nil {
			return 0, err
		}
		return runJoined(so, im, cfg, grp, log)
	}
	if o.detach {
		early.Abort()
		return runNamed(so, o, im, cfg, log)
	}
	p := early
	if p == nil {
		p = runtime.Start(runtime.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	}
	if name := runName(o, st.job); name != "" && p.Pid() > 0 {
		// A named run: exec, ps and kill find it by name.
		c, err := so.open(true)
		if err == nil {
			cfg.StateDir, err = c.Register(name, p.Pid(), cfg.Spec.Root.Path)
		}
		switch {
		case err == nil:
			defer c.Unregister(name)
			log.debugf("container name: %s", name)
		case o.name != "":
			p.Abort()
			return 0, err
		default:
			// A second run in the same Slurm task: it goes unnamed.
			log.debugf("no container name: %v", err)
		}
	}
	code, err := p.Run(ctx, cfg)
	log.phase(fmt.Sprintf("job ended with status %d", code))
	return code, err
}

// runName is the name of a run: --name, else under a batch system one
// made of the job, step and task ids (slurm-J.S.T, pbs-J.T), so that
// `hpcrun exec` can find the run of a job step; else none.
func runName(o *runOptions, j jobs.Job) string {
	if o.name != "" {
		return o.name
	}
	return j.Name()
}

// host is what resolve needs to know about the caller and the node.
type host struct {
	env       []string
	cwd       string // as the shell knows it ($PWD)
	physCwd   string // with symlinks resolved
	uid, gid  uint32
	exists    func(string) bool
	tty       bool // stdin is a terminal
	stderrTTY bool // progress can be drawn
}

func hostFacts() host {
	cwd, err := os.Getwd()
	if err != nil {
		cwd = ""
	}
	phys, err := filepath.EvalSymlinks(cwd)
	if err != nil {
		phys = cwd
	}
	return host{
		env:       os.Environ(),
		cwd:       cwd,
		physCwd:   phys,
		uid:       uint32(os.Getuid()),
		gid:       uint32(os.Getgid()),
		exists:    func(p string) bool { _, err := os.Stat(p); return err == nil },
		tty:       isTerminal(os.Stdin),
		stderrTTY: isTerminal(os.Stderr),
	}
}

// resolve turns flags, the environment and the rootfs into the init's
// config, checking every input on the way.
func resolve(o *runOptions, im *chosenImage, args []string, h host, st *settings, log *logger) (*runtime.Config, error) {
	if h.cwd == "" {
		return nil, errors.New("the current directory no longer exists; cd somewhere that does and try again")
	}
	args, err := command(args, im.config)
	if err != nil {
		return nil, err
	}
	mode, err := netns.ParseMode(st.conf.Network.Value)
	if err != nil {
		return nil, usageError{err}
	}
	// The working directory is bound by its physical path: a logical one
	// ($PWD through ~/scratch -> /lustre/...) would show only the link.
	phys := h.physCwd
	if phys == "" {
		phys = h.cwd
	}
	mo := runtime.MountOptions{Cwd: phys, NoHome: o.noHome, Exists: h.exists}
	switch home := envValue(h.env, "HOME"); {
	case home != "" && home != "/" && filepath.IsAbs(home):
		if !o.noHome && !h.exists(home) {
			return nil, fmt.Errorf("your $HOME (%s) does not exist on this node; create it, or run with --no-home", home)
		}
		mo.Home = filepath.Clean(home)
	case !o.noHome:
		log.warnf("$HOME is %q, not an absolute path: no home directory is bound", home)
	}
	binds, err := siteBinds(st, h, runtime.Mounts(mo), log)
	if err != nil {
		return nil, err
	}
	for _, s := range o.binds {
		b, err := runtime.ParseBind(s, h.cwd)
		if err != nil {
			return nil, usageError{err}
		}
		if err := st.conf.CheckUserBind(b.Source); err != nil {
			return nil, err
		}
		if !h.exists(b.Source) {
			return nil, fmt.Errorf("bind source %s does not exist; create it or drop --bind %s", b.Source, s)
		}
		binds = append(binds, b)
	}
	drv, err := gpuDriver(o, h, log)
	if err != nil {
		return nil, err
	}
	if drv != nil {
		binds = append(drv.Binds(), binds...) // --bind still wins
	}
	mo.Binds = binds
	mounts := runtime.Mounts(mo)
	cwd := h.cwd
	switch {
	case o.pwd != "":
		if !strings.HasPrefix(o.pwd, "/") {
			return nil, usageError{fmt.Errorf("bad --pwd %q: give an absolute path inside the container", o.pwd)}
		}
		cwd = o.pwd
	case runtime.HostPathVisible(phys, mounts):
		// The host's directory wins when it is visible inside. The
		// logical path works where its links are visible too.
		if !runtime.HostPathVisible(cwd, mounts) {
			cwd = phys
		}
	case im.config.WorkingDir != "":
		cwd = im.config.WorkingDir
	case !im.Exists(phys):
		// A system directory of the host is not bound, and a stand-in made
		// for a mount below it would be empty: better to say so.
		return nil, fmt.Errorf("the current directory %s is not bound into the container (it is a system directory) and the image has no such directory; cd elsewhere or give --pwd", phys)
	default:
		log.warnf("the current directory %s is a system directory, not bound: the job starts in the image's %s", phys, phys)
		cwd = phys
	}
	set, err := envSettings(o)
	if err != nil {
		return nil, err
	}
	if drv != nil {
		// The GPU selection (CUDA_VISIBLE_DEVICES, ...) survives --cleanenv
		// and wins over the image's; --env still wins over it.
		set = append(slices.Clone(drv.Binding), set...)
	}
	env := jobs.ContainerEnv(jobs.EnvOptions{
		Host: h.env, Image: im.Env, DefaultPath: runtime.DefaultPath, CleanEnv: o.cleanEnv, Set: set,
		Pass: st.conf.EnvPass.Value, Deny: st.conf.EnvDeny.Value,
	})
	if drv != nil {
		env = drv.Env(env)
	}
	spec, err := runtime.Generate(runtime.Options{
		Rootfs: im.Rootfs, Args: args, Env: env, Cwd: cwd, UID: h.uid, GID: h.gid,
		Fakeroot: o.fakeroot, Mounts: mounts, Terminal: h.tty,
	})
	if err != nil {
		return nil, err
	}
	netns.Apply(spec, mode)
	files, err := identityFiles(im.Image, h, o.fakeroot)
	if err != nil {
		return nil, err
	}
	keyring := st.conf.NewKeyring
	if o.keyringSet {
		keyring = jobs.Setting[bool]{Value: o.newKeyring, From: "--new-keyring"}
	}
	cfg := &runtime.Config{Spec: spec, Files: files, WritableTmpfs: o.writableTmpfs, NewKeyring: keyring.Value}
	log.settings(cfg, mode)
	log.debugf("session keyring: %s (%s)", map[bool]string{false: "the caller's", true: "a fresh one"}[keyring.Value], keyring.From)
	return cfg, nil
}

// siteBinds are the binds every container gets, before --bind: the
// site's scratch dirs that exist on this node, the job's own scratch dir
// ($SLURM_TMPDIR, $TMPDIR), PBS's node file, and the PMIx server's and
// munge's socket dirs, unless they are visible already, then the config's
// binds (a missing required one is an error, a missing optional
// one is skipped).
func siteBinds(st *settings, h host, base []specs.Mount, log *logger) ([]runtime.Bind, error) {
	var out []runtime.Bind
	for _, d := range st.conf.ScratchDirs.Value {
		if !h.exists(d) {
			log.debugf("scratch dir %s (%s) is not on this node: not bound", d, st.conf.ScratchDirs.From)
			continue
		}
		out = append(out, runtime.Bind{Source: d, Dest: d})
	}
	if t := st.job.TmpDir; filepath.IsAbs(t) && h.exists(t) && !runtime.HostPathVisible(filepath.Clean(t), base) {
		out = append(out, runtime.Bind{Source: filepath.Clean(t), Dest: filepath.Clean(t)})
	}
	for _, f := range st.job.Files { // PBS_NODEFILE, read-only
		if f = filepath.Clean(f); filepath.IsAbs(f) && h.exists(f) && !runtime.HostPathVisible(f, base) {
			out = append(out, runtime.Bind{Source: f, Dest: f, ReadOnly: true})
		}
	}
	for _, d := range st.job.Dirs { // PMIx's and munge's sockets
		if d = filepath.Clean(d); filepath.IsAbs(d) && h.exists(d) && !runtime.HostPathVisible(d, base) {
			out = append(out, runtime.Bind{Source: d, Dest: d})
		}
	}
	for _, b := range st.conf.Binds.Value {
		if b.User {
			if err := st.conf.CheckUserBind(b.Source); err != nil {
				return nil, fmt.Errorf("%s: %w", b.From, err)
			}
		}
		if !h.exists(b.Source) {
			if b.Required {
				return nil, fmt.Errorf("the bind %s required by %s does not exist on this node; ask your admins, or create it", b.Source, b.From)
			}
			log.debugf("bind %s (%s) is not on this node: skipped", b.Source, b.From)
			continue
		}
		out = append(out, b.Bind)
	}
	return out, nil
}

// gpuDriver finds the driver that --gpu or --rocm asks for; nil for none.
func gpuDriver(o *runOptions, h host, log *logger) (*gpu.Driver, error) {
	v, flag := gpu.NVIDIA, "--gpu"
	switch {
	case o.gpu && o.rocm:
		return nil, usageError{errors.New("--gpu and --rocm cannot be used together")}
	case o.rocm:
		v, flag = gpu.ROCm, "--rocm"
	case !o.gpu:
		return nil, nil
	}
	d, err := gpu.Find(v, gpu.Host{Env: h.env})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	log.debugf("%s: %s driver %s: %d libraries, %d programs, devices %s", flag, d.Vendor, d.Version,
		len(d.Libs), len(d.Bins), strings.Join(d.Devices, " "))
	for _, f := range append(append([]gpu.File(nil), d.Libs...), d.Bins...) {
		log.debugf("  %s <- %s", f.Name, f.Source)
	}
	return &d, nil
}

// envSettings gathers --env-file and --env entries, in that order.
func envSettings(o *runOptions) ([]string, error) {
	var set []string
	for _, f := range o.envFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		kvs, err := jobs.ParseEnvFile(f, b)
		if err != nil {
			return nil, fmt.Errorf("--env-file %w", err)
		}
		set = append(set, kvs...)
	}
	for _, kv := range o.env {
		if err := jobs.CheckEnvEntry(kv); err != nil {
			return nil, usageError{err}
		}
		set = append(set, kv)
	}
	return set, nil
}

// identityFiles are the image's /etc/passwd and /etc/group with the
// caller's user and group added, so whoami, id -gn and getpass work.
func identityFiles(im *unpack.Image, h host, fakeroot bool) ([]runtime.File, error) {
	passwd, err := im.ReadFile("/etc/passwd")
	if err != nil {
		return nil, fmt.Errorf("read the image's /etc/passwd: %w", err)
	}
	group, err := im.ReadFile("/etc/group")
	if err != nil {
		return nil, fmt.Errorf("read the image's /etc/group: %w", err)
	}
	var id runtime.Identity
	if fakeroot {
		if runtime.HasID(passwd, 0) && runtime.HasID(group, 0) {
			return nil, nil
		}
		id = runtime.Identity{User: "root", Group: "root", Home: "/root", Shell: "/bin/sh"}
	} else {
		id = runtime.LookupIdentity(h.uid, h.gid, h.env)
		if !im.Exists(id.Shell) {
			id.Shell = "/bin/sh"
		}
	}
	return []runtime.File{
		{Path: "/etc/passwd", Data: runtime.PasswdWith(passwd, id), Mode: 0o644},
		{Path: "/etc/group", Data: runtime.GroupWith(group, id), Mode: 0o644},
	}, nil
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// mountLine renders a spec mount for -v.
func mountLine(m specs.Mount) string {
	src := m.Source
	if m.Type != "bind" {
		src = m.Type
	}
	return fmt.Sprintf("%s <- %s (%s)", m.Destination, src, strings.Join(m.Options, ","))
}
