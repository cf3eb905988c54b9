package launch

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hpcrun/hpcrun/gpu"
	"github.com/hpcrun/hpcrun/internal/envlist"
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
	if err := r.conflicts(); err != nil {
		return nil, err
	}
	id := identity(h, r.Fakeroot)
	args, err := Command(r, im.Config)
	if r.Shell {
		args, err = shellCommand(runtime.LookupIdentity(h.UID, h.GID, h.Env).Shell, im.Image), nil
	}
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
	contain := r.Contain || r.ContainAll
	// The real home stays out with --no-home, with --contain unless
	// --home gives one, and with --home, which gives another.
	noHome := r.NoHome || contain && r.Home == ""
	keptOut := noHome || r.Home != ""
	home, err := homeDir(h, keptOut, log)
	if err != nil {
		return nil, err
	}
	// Where the cwd lies against $HOME matters only when the real home is
	// kept out: only then is a link in $HOME's path resolved.
	realHome := home
	if keptOut && home != "" && h.Real != nil {
		realHome = h.Real(home)
	}
	inHome := home != "" && (within(phys, home) || within(phys, realHome))
	atHome := home != "" && (phys == home || phys == realHome)
	mo := runtime.MountOptions{Cwd: phys, Home: home, NoHome: noHome, Exists: h.Exists, Contain: contain, PrivateIPC: r.ContainAll}
	if r.Home != "" {
		if mo.HomeSource, mo.Home, err = homeSpec(r.Home, home, h, st); err != nil {
			return nil, err
		}
		id.Home = mo.Home
	}
	if inHome && (contain || r.Home != "") || atHome && noHome {
		// The real home must not come back through the working
		// directory's bind: with --contain or --home not at all, with
		// --no-home not as the whole home (a directory below it is bound
		// over the empty one, and only it).
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
		pwd: r.Pwd, cwd: h.Cwd, phys: phys, mounts: mounts, home: mo.Home, inHome: inHome,
		homeFlag: homeFlag(r, contain), contain: contain, atHome: atHome,
		imageDir: im.Config.WorkingDir, imageHas: im.Exists,
	})
	if err != nil {
		return nil, err
	}
	if warning != "" {
		log.Warnf("%s", warning)
	}
	marks := []string{"HPCRUN_CONTAINER=" + cmp.Or(r.Name, "1"), "HPCRUN_IMAGE=" + cmp.Or(r.Image, r.Rootfs)}
	if r.Home != "" {
		marks = append(marks, "HOME="+mo.Home)
	}
	if r.Shell {
		marks = append(marks, "PS1="+shellPrompt(args[0], cmp.Or(r.Image, r.Rootfs)))
	}
	env, err := containerEnv(r, h, im, st, drv, marks)
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
	if r.ContainAll {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	// What the job runs in, for hpcrun list (kept in the container's state).
	if ref := cmp.Or(r.Image, r.Rootfs); ref != "" {
		if spec.Annotations == nil {
			spec.Annotations = map[string]string{}
		}
		spec.Annotations[runtime.ImageAnnotation] = ref
	}
	files, err := identityFiles(im.Image, id, r.Fakeroot)
	if err != nil {
		return nil, err
	}
	files = append(files, containerEnvFile(r, im))
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
	switch home := envlist.Value(h.Env, "HOME"); {
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

// homeFlag names the flag that keeps the real $HOME out; "" for none.
func homeFlag(r *Request, contain bool) string {
	switch {
	case r.NoHome:
		return "--no-home"
	case r.Home != "":
		return "--home"
	case r.ContainAll:
		return "--containall"
	case contain:
		return "--contain"
	}
	return ""
}

// homeSpec parses --home SRC[:DST]: the host directory SRC, relative to
// the current one, is the job's home at DST, by default at the caller's
// $HOME.
func homeSpec(spec, home string, h Host, st *Settings) (src, dst string, err error) {
	src, dst, _ = strings.Cut(spec, ":")
	if dst == "" {
		dst = home
	}
	switch {
	case src == "":
		return "", "", usage("--home %q: give SRC[:DST], the host directory to use as $HOME and where it goes", spec)
	case dst == "":
		return "", "", usage("--home %q: your $HOME is not an absolute path; give --home SRC:DST", spec)
	case !filepath.IsAbs(dst) || filepath.Clean(dst) == "/":
		return "", "", usage("--home %q: DST must be an absolute path other than /", spec)
	}
	if !filepath.IsAbs(src) {
		src = filepath.Join(h.Cwd, src)
	}
	src, dst = filepath.Clean(src), filepath.Clean(dst)
	if err := st.Conf.CheckUserBind(src); err != nil {
		return "", "", err
	}
	if !h.Exists(src) {
		return "", "", fmt.Errorf("--home: %s does not exist; create it first", src)
	}
	return src, dst, nil
}

// userBinds are the --bind entries, each a bind or a comma list of them
// (as Apptainer's -B a,b:c), parsed, allowed by the site and present on
// the host.
func userBinds(specs []string, h Host, st *Settings) ([]runtime.Bind, error) {
	var out []runtime.Bind
	var list []string
	for _, s := range specs {
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
	}
	for _, s := range list {
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
	homeFlag  string // the flag that keeps the real $HOME out, "" when it is bound
	contain   bool   // --contain or --containall
	home      string // the job's $HOME
	inHome    bool   // the physical cwd is the caller's $HOME, or below it, by its logical or its real path
	atHome    bool   // it is $HOME
	imageDir  string // the image's WorkingDir
	imageHas  func(string) bool
}

// workdir is where the job starts: --pwd; else the caller's directory
// when it is visible inside (the logical path if its links are visible
// too); else the image's WorkingDir; else the caller's path in the image,
// with a warning, when the image has it. When the real $HOME is kept out
// (--no-home, --home, --contain), the job's $HOME when the caller is at
// $HOME; below it (--no-home binds the directory itself), unless a --bind
// shows it, an error, or with --contain the job's $HOME and a warning. A
// process's /proc
// directory is refused wherever it comes from: it leads out of the
// container.
func workdir(f workdirFacts) (cwd, warning string, err error) {
	switch {
	case f.pwd != "":
		if !strings.HasPrefix(f.pwd, "/") {
			return "", "", usage("bad --pwd %q: give an absolute path inside the container", f.pwd)
		}
		cwd = f.pwd
	case f.homeFlag != "" && f.inHome && !runtime.HostPathVisible(f.phys, f.mounts):
		cwd = f.home // the empty or other one
		switch {
		case f.atHome:
		case f.contain:
			warning = fmt.Sprintf("the current directory %s is in $HOME, which %s leaves out: the job starts in %s (give --pwd, or --bind the directory)", f.phys, f.homeFlag, f.home)
		case f.homeFlag == "--no-home":
			return "", "", fmt.Errorf("--no-home gives the job an empty $HOME, and the current directory %s is in the real one; cd elsewhere or give --pwd", f.phys)
		default:
			return "", "", fmt.Errorf("%s gives the job another $HOME, and the current directory %s is in the real one; cd elsewhere or give --pwd", f.homeFlag, f.phys)
		}
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
func containerEnv(r *Request, h Host, im *Image, st *Settings, drv *gpu.Driver, marks []string) ([]string, error) {
	set, err := envSettings(r)
	if err != nil {
		return nil, err
	}
	if drv != nil {
		set = append(slices.Clone(drv.Binding), set...)
	}
	env := jobs.ContainerEnv(jobs.EnvOptions{
		Host: h.Env, Image: im.Env, DefaultPath: runtime.DefaultPath, CleanEnv: r.CleanEnv || r.ContainAll, Marks: marks, Set: set,
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

// identity is who the job runs as: the caller, or root with --fakeroot.
func identity(h Host, fakeroot bool) runtime.Identity {
	if fakeroot {
		return runtime.Identity{User: "root", Group: "root", Home: "/root", Shell: "/bin/sh"}
	}
	return runtime.LookupIdentity(h.UID, h.GID, h.Env)
}

// identityFiles are the image's /etc/passwd and /etc/group with id's
// user and group added, so whoami, id -gn and getpass work. Under
// --fakeroot an image's own root stays.
func identityFiles(im *unpack.Image, id runtime.Identity, fakeroot bool) ([]runtime.File, error) {
	passwd, err := im.ReadFile("/etc/passwd")
	if err != nil {
		return nil, fmt.Errorf("read the image's /etc/passwd: %w", err)
	}
	group, err := im.ReadFile("/etc/group")
	if err != nil {
		return nil, fmt.Errorf("read the image's /etc/group: %w", err)
	}
	if fakeroot && runtime.HasID(passwd, 0) && runtime.HasID(group, 0) {
		return nil, nil
	}
	if !im.Exists(id.Shell) {
		id.Shell = "/bin/sh"
	}
	return []runtime.File{
		{Path: "/etc/passwd", Data: runtime.PasswdWith(passwd, id), Mode: 0o644},
		{Path: "/etc/group", Data: runtime.GroupWith(group, id), Mode: 0o644},
	}, nil
}

// ContainerEnvFile is where a job reads that it runs in hpcrun, and in
// which image: podman's name and format, which tools already look for.
const ContainerEnvFile = "/run/.containerenv"

// containerEnvFile is the job's ContainerEnvFile.
func containerEnvFile(r *Request, im *Image) runtime.File {
	data := fmt.Sprintf("engine=\"hpcrun\"\nname=%s\nimage=%s\nimageid=%s\nrootless=1\n",
		strconv.Quote(cmp.Or(r.Name, "1")), strconv.Quote(cmp.Or(r.Image, r.Rootfs)), strconv.Quote(im.Digest))
	return runtime.File{Path: ContainerEnvFile, Data: []byte(data), Mode: 0o444}
}

// shellCommand is hpcrun shell's command: the caller's login shell if the
// image has it and it is one (not nologin or false, as service accounts
// have), else bash, else sh. bash reads no rc file, as
// Apptainer's shell does: a distribution's /etc/bash.bashrc would set
// its own prompt.
func shellCommand(login string, im *unpack.Image) []string {
	shell := "/bin/sh"
	if b := filepath.Base(login); b == "nologin" || b == "false" {
		login = ""
	}
	for _, s := range []string{login, "/bin/bash"} {
		if s != "" && im.Exists(s) {
			shell = s
			break
		}
	}
	if filepath.Base(shell) == "bash" {
		return []string{shell, "--norc"}
	}
	return []string{shell}
}

// shellPrompt is hpcrun shell's PS1: it says the shell is in a container
// and which image; bash gets the usual user, host and directory too.
func shellPrompt(shell, image string) string {
	tag := "(hpcrun " + filepath.Base(image) + ") "
	if filepath.Base(shell) == "bash" {
		return tag + `\u@\h:\w\$ `
	}
	return tag + "$ "
}
