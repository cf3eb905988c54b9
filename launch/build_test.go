package launch

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// testUID is no one's on any host, so that the caller's names come from
// $USER and $HOME alone, the same everywhere.
const testUID = 3999999

// job is one Build's inputs, faked: a host with the paths in paths, the
// default config, and an image over a temporary rootfs.
type job struct {
	r     Request
	h     Host
	st    *Settings
	im    *Image
	paths map[string]bool
	log   bytes.Buffer
}

// baseImage is what an image has unless a test says otherwise.
var baseImage = map[string]string{
	"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
	"etc/group":  "root:x:0:\n",
	"bin/sh":     "",
}

// newJob is alice in /home/alice/proj, with no scheduler, running true.
func newJob(t *testing.T) *job {
	j := &job{paths: map[string]bool{"/home/alice": true, "/home/alice/proj": true}}
	j.r = Request{Args: []string{"true"}}
	j.h = Host{
		Env: []string{"HOME=/home/alice", "USER=alice"},
		Cwd: "/home/alice/proj", PhysCwd: "/home/alice/proj",
		UID: testUID, GID: testUID,
		Exists: func(p string) bool { return j.paths[filepath.Clean(p)] },
	}
	j.st = &Settings{Conf: jobs.Defaults()}
	j.im = newImage(t, baseImage, nil, store.ImageConfig{})
	return j
}

// exist adds host paths.
func (j *job) exist(paths ...string) {
	for _, p := range paths {
		j.paths[p] = true
	}
}

// build runs Build, with the job's facts read from the host's environment
// as LoadSettings reads them.
func (j *job) build() (*runtime.Config, error) {
	j.st.Job = jobs.FromEnv(j.h.Env)
	return Build(&j.r, j.im, j.h, j.st, &Log{W: &j.log})
}

// newImage makes a rootfs with files (a name ending in / is a directory).
func newImage(t *testing.T, files map[string]string, env []string, cfg store.ImageConfig) *Image {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &Image{Image: &unpack.Image{Rootfs: dir, Env: env}, Config: cfg}
}

// with is baseImage and more.
func with(files map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range baseImage {
		out[k] = v
	}
	for k, v := range files {
		out[k] = v
	}
	return out
}

// baseMounts are the mounts every container starts with.
var baseMounts = []string{
	"/proc <- proc (nosuid,noexec,nodev)",
	"/sys <- /sys (rbind,nosuid,noexec,nodev,ro)",
	"/dev <- /dev (rbind)",
	"/tmp <- /tmp (rbind)",
	"/var/tmp <- /var/tmp (rbind)",
}

// mountsAfterBase are a config's mounts after baseMounts, as -v shows them.
func mountsAfterBase(t *testing.T, cfg *runtime.Config) []string {
	t.Helper()
	var got []string
	for _, m := range cfg.Spec.Mounts {
		got = append(got, mountLine(m))
	}
	if len(got) < len(baseMounts) || !slices.Equal(got[:len(baseMounts)], baseMounts) {
		t.Fatalf("mounts do not start with the base ones:\n%s", strings.Join(got, "\n"))
	}
	return got[len(baseMounts):]
}

// checkErr checks err against want ("" for none) and whether it is a
// UsageError; it reports whether the test goes on.
func checkErr(t *testing.T, err error, want string, usage bool) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return true
	}
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	if isUsage := errors.As(err, new(UsageError)); isUsage != usage {
		t.Errorf("UsageError: %v, want %v", isUsage, usage)
	}
	return false
}

const homeBind = "/home/alice <- /home/alice (rbind)"

func TestBinds(t *testing.T) {
	forbid := func(j *job) {
		j.st.Conf.AllowSystemBinds = jobs.Setting[bool]{Value: false, From: "/etc/hpcrun/config.yaml:2"}
	}
	confBinds := func(bs ...jobs.Bind) func(*job) {
		return func(j *job) { j.st.Conf.Binds = jobs.Setting[[]jobs.Bind]{Value: bs, From: "test"} }
	}
	tests := []struct {
		name  string
		binds []string
		exist []string
		env   []string // the host's, beyond HOME and USER
		tweak func(*job)
		want  []string // mounts after the base ones
		err   string
		usage bool
	}{
		{name: "none", want: []string{homeBind}},
		{name: "SRC", binds: []string{"/data"}, exist: []string{"/data"},
			want: []string{homeBind, "/data <- /data (rbind)"}},
		{name: "SRC:DST", binds: []string{"/data:/mnt/d"}, exist: []string{"/data"},
			want: []string{homeBind, "/mnt/d <- /data (rbind)"}},
		{name: "SRC:DST:ro", binds: []string{"/data:/mnt/d:ro"}, exist: []string{"/data"},
			want: []string{homeBind, "/mnt/d <- /data (rbind,ro)"}},
		{name: "SRC:DST:rw", binds: []string{"/data/:/mnt/d/:rw"}, exist: []string{"/data"},
			want: []string{homeBind, "/mnt/d <- /data (rbind)"}},
		{name: "relative SRC", binds: []string{"data:/data", "./x/../in"}, exist: []string{"/home/alice/proj/data", "/home/alice/proj/in"},
			want: []string{homeBind, "/data <- /home/alice/proj/data (rbind)", "/home/alice/proj/in <- /home/alice/proj/in (rbind)"}},
		{name: "relative SRC from the logical cwd", binds: []string{"in:/in"}, exist: []string{"/home/alice/s/in", "/lustre/alice"},
			tweak: func(j *job) { j.h.Cwd, j.h.PhysCwd = "/home/alice/s", "/lustre/alice" },
			want:  []string{homeBind, "/lustre/alice <- /lustre/alice (rbind)", "/in <- /home/alice/s/in (rbind)"}},
		{name: "missing source", binds: []string{"/nope"},
			err: "bind source /nope does not exist; create it or drop --bind /nope"},
		{name: "missing relative source", binds: []string{"nope:/x"},
			err: "bind source /home/alice/proj/nope does not exist; create it or drop --bind nope:/x"},
		{name: "too many colons", binds: []string{"/a:/b:ro:x"}, exist: []string{"/a"},
			err: `--bind: bad bind "/a:/b:ro:x": too many ':'; the form is SRC[:DST[:ro]]`, usage: true},
		{name: "relative DST", binds: []string{"/a:b"}, exist: []string{"/a"},
			err: `--bind: bad bind "/a:b": the destination must be an absolute path; the form is SRC[:DST[:ro]]`, usage: true},
		{name: "empty source", binds: []string{":/b"},
			err: `--bind: bad bind ":/b": empty source; the form is SRC[:DST[:ro]]`, usage: true},
		{name: "empty destination", binds: []string{"/a:"}, exist: []string{"/a"},
			err: `--bind: bad bind "/a:": empty destination; the form is SRC[:DST[:ro]]`, usage: true},
		{name: "unknown option", binds: []string{"/a:/b:rx"}, exist: []string{"/a"},
			err: `--bind: bad bind "/a:/b:rx": unknown option "rx" (ro or rw); the form is SRC[:DST[:ro]]`, usage: true},
		{name: "over /", binds: []string{"/a:/"}, exist: []string{"/a"},
			err: `--bind: bad bind "/a:/": cannot bind over the container's /; the form is SRC[:DST[:ro]]`, usage: true},
		{name: "system dir allowed", binds: []string{"/usr/lib/x"}, exist: []string{"/usr/lib/x"},
			want: []string{homeBind, "/usr/lib/x <- /usr/lib/x (rbind)"}},
		{name: "system dir forbidden", binds: []string{"/usr/lib/x"}, exist: []string{"/usr/lib/x"}, tweak: forbid,
			err: "bind of /usr/lib/x refused: the site config (/etc/hpcrun/config.yaml:2) forbids binding the host's system dirs (/usr); bind from elsewhere, or ask your admins"},
		{name: "/ forbidden", binds: []string{"/:/host"}, exist: []string{"/"}, tweak: forbid,
			err: "bind of / refused: the site config (/etc/hpcrun/config.yaml:2) forbids binding the host's system dirs (/); bind from elsewhere, or ask your admins"},
		{name: "/var/tmp is no system dir", binds: []string{"/var/tmp/x:/x"}, exist: []string{"/var/tmp/x"}, tweak: forbid,
			want: []string{homeBind, "/x <- /var/tmp/x (rbind)"}},
		{name: "forbidden, checked before existence", binds: []string{"/etc/nope"}, tweak: forbid,
			err: "bind of /etc/nope refused: the site config (/etc/hpcrun/config.yaml:2) forbids binding the host's system dirs (/etc); bind from elsewhere, or ask your admins"},
		{name: "config bind, required, missing",
			tweak: confBinds(jobs.Bind{Bind: runtime.Bind{Source: "/apps", Dest: "/apps"}, Required: true, From: "/etc/hpcrun/config.yaml:5"}),
			err:   "the bind /apps required by /etc/hpcrun/config.yaml:5 does not exist on this node; ask your admins, or create it"},
		{name: "config bind, optional, missing",
			tweak: confBinds(jobs.Bind{Bind: runtime.Bind{Source: "/apps", Dest: "/apps"}, From: "/etc/hpcrun/config.yaml:5"}),
			want:  []string{homeBind}},
		{name: "config binds before --bind", binds: []string{"/data"}, exist: []string{"/apps", "/data", "/etc/ssl"},
			tweak: confBinds(
				jobs.Bind{Bind: runtime.Bind{Source: "/apps", Dest: "/opt/apps", ReadOnly: true}, Required: true, From: "/etc/hpcrun/config.yaml:5"},
				jobs.Bind{Bind: runtime.Bind{Source: "/etc/ssl", Dest: "/etc/ssl"}, From: "/etc/hpcrun/config.yaml:6"}),
			want: []string{homeBind, "/opt/apps <- /apps (rbind,ro)", "/etc/ssl <- /etc/ssl (rbind)", "/data <- /data (rbind)"}},
		{name: "the site's bind of a system dir, forbidden to users", exist: []string{"/etc/ssl"},
			tweak: func(j *job) {
				forbid(j)
				confBinds(jobs.Bind{Bind: runtime.Bind{Source: "/etc/ssl", Dest: "/etc/ssl"}, From: "/etc/hpcrun/config.yaml:6"})(j)
			},
			want: []string{homeBind, "/etc/ssl <- /etc/ssl (rbind)"}},
		{name: "the user's config bind of a system dir, forbidden", exist: []string{"/etc/ssl"},
			tweak: func(j *job) {
				forbid(j)
				confBinds(jobs.Bind{Bind: runtime.Bind{Source: "/etc/ssl", Dest: "/etc/ssl"}, User: true, From: "HPCRUN_BINDS"})(j)
			},
			err: "HPCRUN_BINDS: bind of /etc/ssl refused: the site config (/etc/hpcrun/config.yaml:2) forbids binding the host's system dirs (/etc); bind from elsewhere, or ask your admins"},
		{name: "scratch dirs, where present", exist: []string{"/scratch"},
			tweak: func(j *job) {
				j.st.Conf.ScratchDirs = jobs.Setting[[]string]{Value: []string{"/gpfs/scratch", "/scratch"}, From: "test"}
			},
			want: []string{homeBind, "/scratch <- /scratch (rbind)"}},
		{name: "the job's tmp dir", env: []string{"SLURM_JOB_ID=7", "SLURM_TMPDIR=/local/slurm/7/"}, exist: []string{"/local/slurm/7"},
			want: []string{homeBind, "/local/slurm/7 <- /local/slurm/7 (rbind)"}},
		{name: "the job's tmp dir, visible already", env: []string{"SLURM_JOB_ID=7", "TMPDIR=/tmp/job.7"}, exist: []string{"/tmp/job.7"},
			want: []string{homeBind}},
		{name: "the job's tmp dir, not on this node", env: []string{"TMPDIR=/local/tmp"},
			want: []string{homeBind}},
		{name: "PBS files", exist: []string{"/var/spool/pbs/aux/12.srv", "/home/alice/gpus", "/var/tmp/pbs.12.srv"},
			env:  []string{"PBS_JOBID=12.srv", "PBS_NODEFILE=/var/spool/pbs/aux/12.srv", "PBS_GPUFILE=/home/alice/gpus", "TMPDIR=/var/tmp/pbs.12.srv"},
			want: []string{homeBind, "/var/spool/pbs/aux/12.srv <- /var/spool/pbs/aux/12.srv (rbind,ro)"}},
		{name: "PMIx and munge dirs", exist: []string{"/var/spool/slurmd/pmix.7.0", "/run/munge", "/tmp/pmix"},
			env:  []string{"SLURM_JOB_ID=7", "PMIX_SERVER_TMPDIR=/var/spool/slurmd/pmix.7.0", "PMIX_SYSTEM_TMPDIR=/tmp/pmix"},
			want: []string{homeBind, "/var/spool/slurmd/pmix.7.0 <- /var/spool/slurmd/pmix.7.0 (rbind)", "/run/munge <- /run/munge (rbind)"}},
		{name: "munge's dir, not on this node", env: []string{"SLURM_JOB_ID=7"},
			want: []string{homeBind}},
		{name: "the order: scratch, job, config, --bind", binds: []string{"/data"},
			exist: []string{"/scratch", "/local/7", "/var/spool/pbs/nodes", "/var/spool/pmix", "/apps", "/data"},
			env:   []string{"PBS_JOBID=7.srv", "TMPDIR=/local/7", "PBS_NODEFILE=/var/spool/pbs/nodes", "PMIX_SERVER_TMPDIR=/var/spool/pmix"},
			tweak: func(j *job) {
				j.st.Conf.ScratchDirs = jobs.Setting[[]string]{Value: []string{"/scratch"}, From: "test"}
				confBinds(jobs.Bind{Bind: runtime.Bind{Source: "/apps", Dest: "/apps"}, From: "test"})(j)
			},
			want: []string{homeBind, "/scratch <- /scratch (rbind)", "/local/7 <- /local/7 (rbind)",
				"/var/spool/pbs/nodes <- /var/spool/pbs/nodes (rbind,ro)", "/var/spool/pmix <- /var/spool/pmix (rbind)",
				"/apps <- /apps (rbind)", "/data <- /data (rbind)"}},
		{name: "the host's name files, before the binds", binds: []string{"/data"}, exist: []string{"/etc/hosts", "/data"},
			want: []string{homeBind, "/etc/hosts <- /etc/hosts (bind,ro,nosuid,nodev,noexec)", "/data <- /data (rbind)"}},
		{name: "nested, the parent first", binds: []string{"/a:/data", "/b:/data/sub"}, exist: []string{"/a", "/b"},
			want: []string{homeBind, "/data <- /a (rbind)", "/data/sub <- /b (rbind)"}},
		{name: "nested, in command-line order", binds: []string{"/b:/data/sub", "/a:/data"}, exist: []string{"/a", "/b"},
			want: []string{homeBind, "/data/sub <- /b (rbind)", "/data <- /a (rbind)"}},
		{name: "under $HOME, after $HOME", binds: []string{"/data:/home/alice/data"}, exist: []string{"/data"},
			want: []string{homeBind, "/home/alice/data <- /data (rbind)"}},
		{name: "a comma list, as Apptainer's -B", binds: []string{"/a,/b:/mnt/b:ro", " /c ,"}, exist: []string{"/a", "/b", "/c"},
			want: []string{homeBind, "/a <- /a (rbind)", "/mnt/b <- /b (rbind,ro)", "/c <- /c (rbind)"}},
		{name: "a comma list, one entry bad", binds: []string{"/a,/b:c"}, exist: []string{"/a", "/b"},
			err: `--bind: bad bind "/b:c": the destination must be an absolute path; the form is SRC[:DST[:ro]]`, usage: true},
		{name: "the same path twice", binds: []string{"/data", "/data:/data:ro"}, exist: []string{"/data"},
			want: []string{homeBind, "/data <- /data (rbind)", "/data <- /data (rbind,ro)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			j.r.Binds = tc.binds
			j.exist(tc.exist...)
			j.h.Env = append(j.h.Env, tc.env...)
			if tc.tweak != nil {
				tc.tweak(j)
			}
			cfg, err := j.build()
			if !checkErr(t, err, tc.err, tc.usage) {
				return
			}
			if got := mountsAfterBase(t, cfg); !slices.Equal(got, tc.want) {
				t.Errorf("mounts after the base ones:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if j.log.Len() != 0 {
				t.Errorf("unexpected output: %s", j.log.String())
			}
		})
	}
}

func TestWorkdir(t *testing.T) {
	const procErr = "working directory %s is in a process's /proc directory, which can lead out of the container; pick another with --pwd"
	sysDir := func(cwd string) func(*job) {
		return func(j *job) { j.h.Cwd, j.h.PhysCwd = cwd, cwd }
	}
	tests := []struct {
		name  string
		pwd   string
		exist []string
		tweak func(*job)
		image map[string]string // beyond baseImage
		dir   string            // the image's WorkingDir
		want  string
		warn  string
		err   string
		usage bool
	}{
		{name: "under $HOME", want: "/home/alice/proj"},
		{name: "$HOME itself", tweak: sysDir("/home/alice"), want: "/home/alice"},
		{name: "the physical path, when not given", tweak: func(j *job) { j.h.PhysCwd = "" }, want: "/home/alice/proj"},
		{name: "the logical path, its link visible", exist: []string{"/lustre/alice"},
			tweak: func(j *job) { j.h.Cwd, j.h.PhysCwd = "/home/alice/scratch", "/lustre/alice" },
			want:  "/home/alice/scratch"},
		{name: "the physical path, the link not visible", exist: []string{"/lustre/alice"},
			tweak: func(j *job) { j.h.Cwd, j.h.PhysCwd = "/data/link", "/lustre/alice" },
			want:  "/lustre/alice"},
		{name: "a dir of its own", exist: []string{"/lustre/alice"}, tweak: sysDir("/lustre/alice"), want: "/lustre/alice"},
		{name: "the visible cwd over the image's WorkingDir", dir: "/app", want: "/home/alice/proj"},
		{name: "--pwd", pwd: "/work", want: "/work"},
		{name: "--pwd, cleaned", pwd: "/work/../srv/", want: "/srv"},
		{name: "--pwd over a system dir", pwd: "/work", tweak: sysDir("/usr/share"), want: "/work"},
		{name: "--pwd relative", pwd: "work",
			err: `bad --pwd "work": give an absolute path inside the container`, usage: true},
		{name: "a system dir the image has", tweak: sysDir("/usr/share"), image: map[string]string{"usr/share/": ""},
			want: "/usr/share",
			warn: "hpcrun: warning: the current directory /usr/share is a system directory, not bound: the job starts in the image's /usr/share\n"},
		{name: "a system dir the image lacks", tweak: sysDir("/usr/share"),
			err: "the current directory /usr/share is not bound into the container (it is a system directory) and the image has no such directory; cd elsewhere or give --pwd"},
		{name: "a system dir, the image's WorkingDir", tweak: sysDir("/usr/share"), dir: "/app", want: "/app"},
		{name: "/var itself, the image's", tweak: sysDir("/var"), image: map[string]string{"var/": ""},
			want: "/var",
			warn: "hpcrun: warning: the current directory /var is a system directory, not bound: the job starts in the image's /var\n"},
		{name: "/proc/sys", pwd: "/proc/sys", want: "/proc/sys"},
		{name: "--pwd /proc/self/fd/7", pwd: "/proc/self/fd/7", err: fmt.Sprintf(procErr, "/proc/self/fd/7")},
		{name: "--pwd /proc/1/cwd", pwd: "/proc/1/cwd", err: fmt.Sprintf(procErr, "/proc/1/cwd")},
		{name: "--pwd /proc/thread-self/fd/8", pwd: "/proc/thread-self/fd/8", err: fmt.Sprintf(procErr, "/proc/thread-self/fd/8")},
		{name: "--pwd /proc/self, uncleaned", pwd: "/proc//self/../self/root", err: fmt.Sprintf(procErr, "/proc//self/../self/root")},
		{name: "a cwd under /proc/*/fd, the image's", tweak: sysDir("/proc/1234/fd"), image: map[string]string{"proc/1234/fd/": ""},
			err: fmt.Sprintf(procErr, "/proc/1234/fd")},
		{name: "a cwd under /proc/*/fd, not in the image", tweak: sysDir("/proc/1234/fd"),
			err: "the current directory /proc/1234/fd is not bound into the container (it is a system directory) and the image has no such directory; cd elsewhere or give --pwd"},
		{name: "a cwd under /proc/self, --pwd elsewhere", pwd: "/", tweak: sysDir("/proc/self/cwd"), want: "/"},
		{name: "the image's WorkingDir in /proc/self/fd", tweak: sysDir("/usr"), dir: "/proc/self/fd/7",
			err: fmt.Sprintf(procErr, "/proc/self/fd/7")},
		{name: "the current directory deleted", tweak: func(j *job) { j.h.Cwd, j.h.PhysCwd = "", "" },
			err: "the current directory no longer exists; cd somewhere that does and try again"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			j.r.Pwd = tc.pwd
			j.exist(tc.exist...)
			j.im = newImage(t, with(tc.image), nil, store.ImageConfig{WorkingDir: tc.dir})
			if tc.tweak != nil {
				tc.tweak(j)
			}
			cfg, err := j.build()
			if !checkErr(t, err, tc.err, tc.usage) {
				return
			}
			if got := cfg.Spec.Process.Cwd; got != tc.want {
				t.Errorf("cwd = %s, want %s", got, tc.want)
			}
			if got := j.log.String(); got != tc.warn {
				t.Errorf("output = %q, want %q", got, tc.warn)
			}
		})
	}
}

// TestHome: the home directory's bind, an empty one with --no-home, and
// the working directory it leaves.
func TestHome(t *testing.T) {
	const tmpfsHome = "/home/alice <- tmpfs (nosuid,nodev,mode=700)"
	tests := []struct {
		name   string
		noHome bool
		pwd    string
		home   string // $HOME; /home/alice unless given
		cwd    string // logical and physical
		exist  []string
		absent bool   // /home/alice is not on this node
		real   string // where the link /home/alice leads; "" for no link
		want   []string
		cwdIn  string
		warn   string
		err    string
	}{
		{name: "bound", cwd: "/home/alice/proj", want: []string{homeBind}, cwdIn: "/home/alice/proj"},
		{name: "missing on this node", cwd: "/lustre/a", absent: true,
			err: "your $HOME (/home/alice) does not exist on this node; create it, or run with --no-home"},
		{name: "cleaned", home: "/home/alice/", cwd: "/home/alice/proj", want: []string{homeBind}, cwdIn: "/home/alice/proj"},
		{name: "under /tmp, visible already", home: "/tmp/alice", cwd: "/tmp/alice", exist: []string{"/tmp/alice"},
			want: nil, cwdIn: "/tmp/alice"},
		{name: "relative", home: "alice", cwd: "/home/alice/proj",
			want:  []string{"/home/alice/proj <- /home/alice/proj (rbind)"},
			cwdIn: "/home/alice/proj",
			warn:  "hpcrun: warning: $HOME is \"alice\", not an absolute path: no home directory is bound\n"},
		{name: "/", home: "/", cwd: "/home/alice/proj",
			want:  []string{"/home/alice/proj <- /home/alice/proj (rbind)"},
			cwdIn: "/home/alice/proj",
			warn:  "hpcrun: warning: $HOME is \"/\", not an absolute path: no home directory is bound\n"},
		{name: "--no-home, the cwd at $HOME", noHome: true, cwd: "/home/alice",
			want: []string{tmpfsHome}, cwdIn: "/home/alice"},
		{name: "--no-home, the cwd below $HOME: only it over the empty home", noHome: true, cwd: "/home/alice/proj",
			want: []string{tmpfsHome, "/home/alice/proj <- /home/alice/proj (rbind)"}, cwdIn: "/home/alice/proj"},
		{name: "--no-home, the cwd below $HOME, --pwd", noHome: true, cwd: "/home/alice/proj", pwd: "/work",
			want: []string{tmpfsHome, "/home/alice/proj <- /home/alice/proj (rbind)"}, cwdIn: "/work"},
		{name: "--no-home, the cwd elsewhere", noHome: true, cwd: "/lustre/a", exist: []string{"/lustre/a"},
			want: []string{tmpfsHome, "/lustre/a <- /lustre/a (rbind)"}, cwdIn: "/lustre/a"},
		{name: "--no-home, $HOME not on this node", noHome: true, cwd: "/lustre/a", exist: []string{"/lustre/a"}, absent: true,
			want: []string{tmpfsHome, "/lustre/a <- /lustre/a (rbind)"}, cwdIn: "/lustre/a"},
		{name: "--no-home, no $HOME", noHome: true, home: "-", cwd: "/home/alice/proj",
			want: []string{"/home/alice/proj <- /home/alice/proj (rbind)"}, cwdIn: "/home/alice/proj"},
		{name: "--no-home, a cwd that starts like $HOME", noHome: true, cwd: "/home/alice2", exist: []string{"/home/alice2"},
			want: []string{tmpfsHome, "/home/alice2 <- /home/alice2 (rbind)"}, cwdIn: "/home/alice2"},
		{name: "--no-home, $HOME a link, the cwd at its real path", noHome: true, real: "/gpfs/home/alice",
			cwd: "/gpfs/home/alice", exist: []string{"/gpfs/home/alice"}, want: []string{tmpfsHome}, cwdIn: "/home/alice"},
		{name: "--no-home, $HOME a link, the cwd below its real path", noHome: true, real: "/gpfs/home/alice",
			cwd: "/gpfs/home/alice/proj", exist: []string{"/gpfs/home/alice/proj"},
			want: []string{tmpfsHome, "/gpfs/home/alice/proj <- /gpfs/home/alice/proj (rbind)"}, cwdIn: "/gpfs/home/alice/proj"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			j.r.NoHome, j.r.Pwd = tc.noHome, tc.pwd
			switch tc.home {
			case "":
			case "-":
				j.h.Env = []string{"USER=alice"}
			default:
				j.h.Env = []string{"HOME=" + tc.home, "USER=alice"}
			}
			j.h.Cwd, j.h.PhysCwd = tc.cwd, tc.cwd
			if tc.real != "" {
				j.h.Real = func(p string) string {
					if p == "/home/alice" {
						return tc.real
					}
					return p
				}
			}
			j.exist(tc.exist...)
			if tc.absent {
				delete(j.paths, "/home/alice")
			}
			cfg, err := j.build()
			if !checkErr(t, err, tc.err, false) {
				return
			}
			if got := mountsAfterBase(t, cfg); !slices.Equal(got, tc.want) {
				t.Errorf("mounts after the base ones:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if tc.noHome {
				for _, m := range cfg.Spec.Mounts {
					if m.Type == "bind" && m.Source == "/home/alice" {
						t.Errorf("--no-home binds the real home: %s", mountLine(m))
					}
				}
			}
			if got := cfg.Spec.Process.Cwd; got != tc.cwdIn {
				t.Errorf("cwd = %s, want %s", got, tc.cwdIn)
			}
			if got := j.log.String(); got != tc.warn {
				t.Errorf("output = %q, want %q", got, tc.warn)
			}
		})
	}
}

// TestApptainerEnv: an image with Apptainer's environment scripts runs
// its command through /bin/sh, which sources them first; others run it
// as it is.
func TestApptainerEnv(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		args  []string
		cfg   store.ImageConfig
		want  []string
	}{
		{"no env scripts", baseImage, []string{"python3", "-V"}, store.ImageConfig{}, []string{"python3", "-V"}},
		{"env scripts", with(map[string]string{".singularity.d/env/90-environment.sh": "export PATH=/opt/py/bin:$PATH\n"}),
			[]string{"python3", "-V"}, store.ImageConfig{}, []string{"/bin/sh", "-c", sourceEnv, "/bin/sh", "python3", "-V"}},
		{"the runscript, when no command is given", with(map[string]string{".singularity.d/env/": "", ".singularity.d/runscript": "#!/bin/sh\n"}),
			nil, store.ImageConfig{Entrypoint: []string{"/.singularity.d/runscript"}}, []string{"/bin/sh", "-c", sourceEnv, "/bin/sh", "/.singularity.d/runscript"}},
		{"env scripts but no /bin/sh", map[string]string{"etc/passwd": baseImage["etc/passwd"], ".singularity.d/env/": ""},
			[]string{"/app"}, store.ImageConfig{}, []string{"/app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			j.im = newImage(t, tc.files, nil, tc.cfg)
			j.r.Args = tc.args
			cfg, err := j.build()
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Spec.Process.Args; !slices.Equal(got, tc.want) {
				t.Errorf("args %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSourceEnv runs the wrapper with the host's sh: the scripts run in
// order, in the shell that then execs the command with its arguments
// intact, and the loop's variable does not leak.
func TestSourceEnv(t *testing.T) {
	dir := t.TempDir()
	env := filepath.Join(dir, ".singularity.d/env")
	os.MkdirAll(env, 0o755)
	os.WriteFile(filepath.Join(env, "01-base.sh"), []byte("export ORDER=base\n"), 0o644)
	os.WriteFile(filepath.Join(env, "90-environment.sh"), []byte("export ORDER=\"$ORDER,env\"\n"), 0o644)
	os.WriteFile(filepath.Join(env, "README"), []byte("exit 1\n"), 0o644)
	script := strings.ReplaceAll(sourceEnv, "/.singularity.d/env", env)
	out, err := exec.Command("/bin/sh", "-c", script, "/bin/sh", "sh", "-c", `echo "$ORDER|$1|$2|${__hpcrun_env-unset}"`, "x", "a b", "*").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(out)), "base,env|a b|*|unset"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
