package launch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hpcrun/hpcrun/gpu"
	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/netns"
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/unpack"
)

// Build turns a request, the host, the settings and the image into the
// init's config, checking every input on the way. Warnings go to log.
//
// The order is the rules': the mounts every container gets, the site's
// and the job's binds, --bind, the GPU driver's; then the working
// directory, which depends on what ended up visible; then the
// environment, the spec, the network and the identity files.
func Build(r *Request, im *Image, h Host, st *Settings, log *Log) (*runtime.Config, error) {
	if h.Cwd == "" {
		return nil, errors.New("the current directory no longer exists; cd somewhere that does and try again")
	}
	args, err := Command(r.Args, im.Config)
	if err != nil {
		return nil, err
	}
	args = withImageEnv(args, im.Image)
	mode, err := netns.ParseMode(st.Conf.Network.Value)
	if err != nil {
		return nil, usage("%s: %w", st.Conf.Network.From, err)
	}
	// The working directory is bound by its physical path: a logical one
	// ($PWD through ~/scratch -> /lustre/...) would show only the link.
	phys := h.PhysCwd
	if phys == "" {
		phys = h.Cwd
	}
	home, err := homeDir(h, r.NoHome, log)
	if err != nil {
		return nil, err
	}
	realHome := home
	if home != "" && h.Real != nil {
		realHome = h.Real(home)
	}
	inHome := home != "" && (within(phys, home) || within(phys, realHome))
	mo := runtime.MountOptions{Cwd: phys, Home: home, NoHome: r.NoHome, Exists: h.Exists}
	if r.NoHome && inHome {
		// The empty home stays empty: the real one must not come back
		// through the working directory's bind.
		mo.Cwd = ""
	}
	binds, err := siteBinds(st, h, runtime.Mounts(mo), log)
	if err != nil {
		return nil, err
	}
	user, err := userBinds(r.Binds, h, st)
	if err != nil {
		return nil, err
	}
	binds = append(binds, user...)
	drv, err := gpuDriver(r, h, log)
	if err != nil {
		return nil, err
	}
	if drv != nil {
		binds = append(drv.Binds(), binds...) // --bind still wins
	}
	mo.Binds = binds
	mounts := runtime.Mounts(mo)
	cwd, warning, err := workdir(workdirFacts{
		pwd: r.Pwd, cwd: h.Cwd, phys: phys, mounts: mounts, noHome: r.NoHome, home: home, inHome: inHome,
		atHome:   phys == home || phys == realHome,
		imageDir: im.Config.WorkingDir, imageHas: im.Exists,
	})
	if err != nil {
		return nil, err
	}
	if warning != "" {
		log.Warnf("%s", warning)
	}
	env, err := containerEnv(r, h, im, st, drv)
	if err != nil {
		return nil, err
	}
	spec, err := runtime.Generate(runtime.Options{
		Rootfs: im.Rootfs, Args: args, Env: env, Cwd: cwd, UID: h.UID, GID: h.GID,
		Fakeroot: r.Fakeroot, Mounts: mounts, Terminal: h.TTY,
	})
	if err != nil {
		return nil, err
	}
	netns.Apply(spec, mode)
	files, err := identityFiles(im.Image, h, r.Fakeroot)
	if err != nil {
		return nil, err
	}
	keyring := st.Conf.NewKeyring
	if r.NewKeyring != nil {
		keyring = jobs.Setting[bool]{Value: *r.NewKeyring, From: "--new-keyring"}
	}
	cfg := &runtime.Config{Spec: spec, Files: files, WritableTmpfs: r.WritableTmpfs, NewKeyring: keyring.Value}
	log.settings(cfg, mode)
	log.Debugf("session keyring: %s (%s)", map[bool]string{false: "the caller's", true: "a fresh one"}[keyring.Value], keyring.From)
	return cfg, nil
}

// homeDir is the $HOME that the job sees at the same path: the real one
// bound, or with --no-home an empty one; "" for none.
func homeDir(h Host, noHome bool, log *Log) (string, error) {
	switch home := envValue(h.Env, "HOME"); {
	case home != "" && home != "/" && filepath.IsAbs(home):
		if !noHome && !h.Exists(home) {
			return "", fmt.Errorf("your $HOME (%s) does not exist on this node; create it, or run with --no-home", home)
		}
		return filepath.Clean(home), nil
	case !noHome:
		log.Warnf("$HOME is %q, not an absolute path: no home directory is bound", home)
	}
	return "", nil
}

// userBinds are the --bind entries, each parsed, allowed by the site and
// present on the host.
func userBinds(specs []string, h Host, st *Settings) ([]runtime.Bind, error) {
	var out []runtime.Bind
	for _, s := range specs {
		b, err := runtime.ParseBind(s, h.Cwd)
		if err != nil {
			return nil, usage("--bind: %w", err)
		}
		if err := st.Conf.CheckUserBind(b.Source); err != nil {
			return nil, err
		}
		if !h.Exists(b.Source) {
			return nil, fmt.Errorf("bind source %s does not exist; create it or drop --bind %s", b.Source, s)
		}
		out = append(out, b)
	}
	return out, nil
}

// workdirFacts are what the working directory's rule looks at.
type workdirFacts struct {
	pwd       string // --pwd
	cwd, phys string // the caller's, logical and physical
	mounts    []specs.Mount
	noHome    bool
	home      string
	inHome    bool   // the physical cwd is $HOME, or below it, by its logical or its real path
	atHome    bool   // it is $HOME
	imageDir  string // the image's WorkingDir
	imageHas  func(string) bool
}

// workdir is where the job starts: --pwd; else the caller's directory
// when it is visible inside (the logical path if its links are visible
// too); else the image's WorkingDir; else the caller's path in the image,
// with a warning, when the image has it. With --no-home, the empty $HOME
// when the caller is at $HOME, and an error below it. A process's /proc
// directory is refused wherever it comes from: it leads out of the
// container.
func workdir(f workdirFacts) (cwd, warning string, err error) {
	switch {
	case f.pwd != "":
		if !strings.HasPrefix(f.pwd, "/") {
			return "", "", usage("bad --pwd %q: give an absolute path inside the container", f.pwd)
		}
		cwd = f.pwd
	case f.noHome && f.inHome:
		if !f.atHome {
			return "", "", fmt.Errorf("--no-home gives the job an empty $HOME, and the current directory %s is in the real one; cd elsewhere or give --pwd", f.phys)
		}
		cwd = f.home // the empty one
	case runtime.HostPathVisible(f.phys, f.mounts):
		cwd = f.cwd
		if !runtime.HostPathVisible(f.cwd, f.mounts) {
			cwd = f.phys
		}
	case f.imageDir != "":
		cwd = f.imageDir
	case !f.imageHas(f.phys):
		// A system directory of the host is not bound, and a stand-in made
		// for a mount below it would be empty: better to say so.
		return "", "", fmt.Errorf("the current directory %s is not bound into the container (it is a system directory) and the image has no such directory; cd elsewhere or give --pwd", f.phys)
	default:
		cwd = f.phys
		warning = fmt.Sprintf("the current directory %s is a system directory, not bound: the job starts in the image's %s", f.phys, f.phys)
	}
	if runtime.InProcessDir(cwd) {
		// Worded as the init words it (which checks again), wherever the
		// directory came from: --pwd, the caller's or the image's.
		return "", "", fmt.Errorf("working directory %s is in a process's /proc directory, which can lead out of the container; pick another with --pwd", cwd)
	}
	return cwd, warning, nil
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// siteBinds are the binds every container gets, before --bind: the
// site's scratch dirs that exist on this node, the job's own scratch dir
// ($SLURM_TMPDIR, $TMPDIR), PBS's node file, and the PMIx server's and
// munge's socket dirs, unless they are visible already, then the config's
// binds (a missing required one is an error, a missing optional
// one is skipped).
func siteBinds(st *Settings, h Host, base []specs.Mount, log *Log) ([]runtime.Bind, error) {
	var out []runtime.Bind
	for _, d := range st.Conf.ScratchDirs.Value {
		if !h.Exists(d) {
			log.Debugf("scratch dir %s (%s) is not on this node: not bound", d, st.Conf.ScratchDirs.From)
			continue
		}
		out = append(out, runtime.Bind{Source: d, Dest: d})
	}
	// The job's own paths, where the container would not see them.
	visible := func(p string) bool { return !filepath.IsAbs(p) || !h.Exists(p) || runtime.HostPathVisible(p, base) }
	if t := filepath.Clean(st.Job.TmpDir); !visible(t) {
		out = append(out, runtime.Bind{Source: t, Dest: t})
	}
	for _, f := range st.Job.Files { // PBS_NODEFILE, read-only
		if f = filepath.Clean(f); !visible(f) {
			out = append(out, runtime.Bind{Source: f, Dest: f, ReadOnly: true})
		}
	}
	for _, d := range st.Job.Dirs { // PMIx's and munge's sockets
		if d = filepath.Clean(d); !visible(d) {
			out = append(out, runtime.Bind{Source: d, Dest: d})
		}
	}
	for _, b := range st.Conf.Binds.Value {
		if b.User {
			if err := st.Conf.CheckUserBind(b.Source); err != nil {
				return nil, fmt.Errorf("%s: %w", b.From, err)
			}
		}
		if !h.Exists(b.Source) {
			if b.Required {
				return nil, fmt.Errorf("the bind %s required by %s does not exist on this node; ask your admins, or create it", b.Source, b.From)
			}
			log.Debugf("bind %s (%s) is not on this node: skipped", b.Source, b.From)
			continue
		}
		out = append(out, b.Bind)
	}
	return out, nil
}

// gpuDriver finds the driver that --gpu or --rocm asks for; nil for none.
func gpuDriver(r *Request, h Host, log *Log) (*gpu.Driver, error) {
	v, flag := gpu.NVIDIA, "--gpu"
	switch {
	case r.GPU && r.ROCm:
		return nil, usage("--gpu and --rocm cannot be used together")
	case r.ROCm:
		v, flag = gpu.ROCm, "--rocm"
	case !r.GPU:
		return nil, nil
	}
	d, err := gpu.Find(v, gpu.Host{Env: h.Env})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	log.Debugf("%s: %s driver %s: %d libraries, %d programs, devices %s", flag, d.Vendor, d.Version,
		len(d.Libs), len(d.Bins), strings.Join(d.Devices, " "))
	for _, f := range append(append([]gpu.File(nil), d.Libs...), d.Bins...) {
		log.Debugf("  %s <- %s", f.Name, f.Source)
	}
	return &d, nil
}

// containerEnv is the job's environment: jobs.ContainerEnv over the host's
// and the image's, with --env-file and --env, and the GPU driver's
// selection, which survives --cleanenv and wins over the image's (--env
// still wins over it).
func containerEnv(r *Request, h Host, im *Image, st *Settings, drv *gpu.Driver) ([]string, error) {
	set, err := envSettings(r)
	if err != nil {
		return nil, err
	}
	if drv != nil {
		set = append(slices.Clone(drv.Binding), set...)
	}
	env := jobs.ContainerEnv(jobs.EnvOptions{
		Host: h.Env, Image: im.Env, DefaultPath: runtime.DefaultPath, CleanEnv: r.CleanEnv, Set: set,
		Pass: st.Conf.EnvPass.Value, Deny: st.Conf.EnvDeny.Value,
	})
	if drv != nil {
		env = drv.Env(env)
	}
	return env, nil
}

// envSettings gathers --env-file and --env entries, in that order.
func envSettings(r *Request) ([]string, error) {
	var set []string
	for _, f := range r.EnvFiles {
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
	for _, kv := range r.Env {
		if err := jobs.CheckEnvEntry(kv); err != nil {
			return nil, usage("--env: %w", err)
		}
		set = append(set, kv)
	}
	return set, nil
}

// identityFiles are the image's /etc/passwd and /etc/group with the
// caller's user and group added, so whoami, id -gn and getpass work.
func identityFiles(im *unpack.Image, h Host, fakeroot bool) ([]runtime.File, error) {
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
		id = runtime.LookupIdentity(h.UID, h.GID, h.Env)
		if !im.Exists(id.Shell) {
			id.Shell = "/bin/sh"
		}
	}
	return []runtime.File{
		{Path: "/etc/passwd", Data: runtime.PasswdWith(passwd, id), Mode: 0o644},
		{Path: "/etc/group", Data: runtime.GroupWith(group, id), Mode: 0o644},
	}, nil
}
