package launch

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hpcrun/hpcrun/internal/envlist"
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// TestContain: --contain, --containall and --home, the mounts after /dev,
// the working directory and what is printed.
func TestContain(t *testing.T) {
	const (
		tmp      = "/tmp <- tmpfs (nosuid,nodev,mode=1777)"
		varTmp   = "/var/tmp <- tmpfs (nosuid,nodev,mode=1777)"
		tmpBind  = "/tmp <- /tmp (rbind)"
		vtmpBind = "/var/tmp <- /var/tmp (rbind)"
		shm      = "/dev/shm <- tmpfs (nosuid,nodev,noexec,mode=1777)"
		empty    = "/home/alice <- tmpfs (nosuid,nodev,mode=700)"
		warnProj = "hpcrun: warning: the current directory /home/alice/proj is in $HOME, which --contain leaves out: the job starts in /home/alice (give --pwd, or --bind the directory)\n"
	)
	tests := []struct {
		name    string
		r       Request
		cwd     string // logical and physical; /home/alice/proj unless given
		exist   []string
		env     []string // the host's, beyond HOME and USER
		want    []string // mounts after /dev
		cwdIn   string
		home    string // $HOME inside; /home/alice unless given
		warn    string
		err     string
		usage   bool
		ipc     bool
		cleaned bool // the host's FOO did not pass
	}{
		{name: "--contain at $HOME: no home comes back", r: Request{Contain: true}, cwd: "/home/alice",
			want: []string{tmp, varTmp, empty}, cwdIn: "/home/alice"},
		{name: "--contain below $HOME: the empty home, a warning", r: Request{Contain: true},
			want: []string{tmp, varTmp, empty}, cwdIn: "/home/alice", warn: warnProj},
		{name: "--contain below $HOME, --pwd", r: Request{Contain: true, Pwd: "/work"},
			want: []string{tmp, varTmp, empty}, cwdIn: "/work"},
		{name: "--contain below $HOME, the cwd bound", r: Request{Contain: true, Binds: []string{"/home/alice/proj"}},
			want: []string{tmp, varTmp, empty, "/home/alice/proj <- /home/alice/proj (rbind)"}, cwdIn: "/home/alice/proj"},
		{name: "--contain outside $HOME: the cwd bound", r: Request{Contain: true}, cwd: "/lustre/a", exist: []string{"/lustre/a"},
			want: []string{tmp, varTmp, empty, "/lustre/a <- /lustre/a (rbind)"}, cwdIn: "/lustre/a"},
		{name: "--contain in /tmp: the cwd bound into the private one", r: Request{Contain: true}, cwd: "/tmp/run", exist: []string{"/tmp/run"},
			want: []string{tmp, varTmp, empty, "/tmp/run <- /tmp/run (rbind)"}, cwdIn: "/tmp/run"},
		{name: "--contain, the job's tmp dir still bound", r: Request{Contain: true}, cwd: "/home/alice",
			env: []string{"SLURM_JOB_ID=7", "TMPDIR=/tmp/job.7"}, exist: []string{"/tmp/job.7"},
			want: []string{tmp, varTmp, empty, "/tmp/job.7 <- /tmp/job.7 (rbind)"}, cwdIn: "/home/alice"},
		{name: "--containall: private IPC and /dev/shm, a clean env", r: Request{ContainAll: true}, cwd: "/home/alice",
			want: []string{shm, tmp, varTmp, empty}, cwdIn: "/home/alice", ipc: true, cleaned: true},
		{name: "--containall below $HOME names itself", r: Request{ContainAll: true},
			want: []string{shm, tmp, varTmp, empty}, cwdIn: "/home/alice", ipc: true, cleaned: true,
			warn: strings.Replace(warnProj, "--contain", "--containall", 1)},
		{name: "--home SRC: at the caller's $HOME", r: Request{Home: "/lustre/h"}, cwd: "/lustre/a", exist: []string{"/lustre/a", "/lustre/h"},
			want: []string{tmpBind, vtmpBind, "/home/alice <- /lustre/h (rbind)", "/lustre/a <- /lustre/a (rbind)"}, cwdIn: "/lustre/a"},
		{name: "--home SRC:DST, relative SRC", r: Request{Home: "h:/home/me"}, cwd: "/lustre/a", exist: []string{"/lustre/a", "/lustre/a/h"},
			want: []string{tmpBind, vtmpBind, "/home/me <- /lustre/a/h (rbind)", "/lustre/a <- /lustre/a (rbind)"}, cwdIn: "/lustre/a", home: "/home/me"},
		{name: "--home, the cwd at $HOME: the new home", r: Request{Home: "/lustre/h:/home/me"}, cwd: "/home/alice", exist: []string{"/lustre/h"},
			want: []string{tmpBind, vtmpBind, "/home/me <- /lustre/h (rbind)"}, cwdIn: "/home/me", home: "/home/me"},
		{name: "--home, the cwd below $HOME", r: Request{Home: "/lustre/h"}, exist: []string{"/lustre/h"},
			err: "--home gives the job another $HOME, and the current directory /home/alice/proj is in the real one; cd elsewhere or give --pwd"},
		{name: "--home $HOME itself", r: Request{Home: "/home/alice"},
			want: []string{tmpBind, vtmpBind, homeBind}, cwdIn: "/home/alice/proj"},
		{name: "--home with --contain, below $HOME", r: Request{Home: "/lustre/h", Contain: true}, exist: []string{"/lustre/h"},
			want: []string{tmp, varTmp, "/home/alice <- /lustre/h (rbind)"}, cwdIn: "/home/alice",
			warn: strings.Replace(warnProj, "--contain", "--home", 1)},
		{name: "--home missing", r: Request{Home: "/lustre/none"},
			err: "--home: /lustre/none does not exist; create it first"},
		{name: "--home relative DST", r: Request{Home: "/lustre/h:home"}, exist: []string{"/lustre/h"},
			err: `--home "/lustre/h:home": DST must be an absolute path other than /`, usage: true},
		{name: "--home empty SRC", r: Request{Home: ":/home/me"},
			err: `--home ":/home/me": give SRC[:DST], the host directory to use as $HOME and where it goes`, usage: true},
		{name: "--home and --no-home", r: Request{Home: "/lustre/h", NoHome: true},
			err: "--no-home and --home cannot be used together", usage: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			args := j.r.Args
			j.r = tc.r
			j.r.Args = args
			if tc.cwd != "" {
				j.h.Cwd, j.h.PhysCwd = tc.cwd, tc.cwd
			}
			j.h.Env = append(j.h.Env, "FOO=host")
			j.h.Env = append(j.h.Env, tc.env...)
			j.exist(tc.exist...)
			cfg, err := j.build()
			if !checkErr(t, err, tc.err, tc.usage) {
				return
			}
			var got []string
			for _, m := range cfg.Spec.Mounts[3:] { // after /proc, /sys, /dev
				got = append(got, mountLine(m))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("mounts after /dev:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if cwd := cfg.Spec.Process.Cwd; cwd != tc.cwdIn {
				t.Errorf("cwd = %s, want %s", cwd, tc.cwdIn)
			}
			home := tc.home
			if home == "" {
				home = "/home/alice"
			}
			env := cfg.Spec.Process.Env
			if v := envlist.Value(env, "HOME"); v != home {
				t.Errorf("HOME = %s, want %s", v, home)
			}
			if tc.r.Home != "" && !strings.Contains(string(cfg.Files[0].Data), ":"+home+":") {
				t.Errorf("/etc/passwd %q lacks the home %s", cfg.Files[0].Data, home)
			}
			if passed := slices.Contains(env, "FOO=host"); passed == tc.cleaned {
				t.Errorf("the host's FOO passed: %v, want %v", passed, !tc.cleaned)
			}
			if ipc := slices.Contains(cfg.Spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace}); ipc != tc.ipc {
				t.Errorf("ipc namespace %v, want %v", ipc, tc.ipc)
			}
			if got := j.log.String(); got != tc.warn {
				t.Errorf("output = %q, want %q", got, tc.warn)
			}
		})
	}
}

// TestMarks: what tells a job that it runs in hpcrun, and hpcrun shell's
// command and prompt.
func TestMarks(t *testing.T) {
	s := func(s string) *string { return &s }
	tests := []struct {
		name  string
		r     Request
		image map[string]string // beyond baseImage
		env   []string          // the host's, beyond HOME and USER
		args  []string
		marks []string // HPCRUN_CONTAINER, HPCRUN_IMAGE, PS1
		file  string
		err   string
		usage bool
	}{
		{name: "a plain run", r: Request{Image: "py3.tar", Args: []string{"true"}}, args: []string{"true"},
			marks: []string{"1", "py3.tar", ""},
			file:  "engine=\"hpcrun\"\nname=\"1\"\nimage=\"py3.tar\"\nimageid=\"sha256:ab\"\nrootless=1\n"},
		{name: "named, a rootfs", r: Request{Rootfs: "/r/x", Name: "db", Args: []string{"true"}}, args: []string{"true"},
			marks: []string{"db", "/r/x", ""},
			file:  "engine=\"hpcrun\"\nname=\"db\"\nimage=\"/r/x\"\nimageid=\"sha256:ab\"\nrootless=1\n"},
		{name: "the host's marks give way", r: Request{Image: "i.tar", Args: []string{"true"}}, env: []string{"HPCRUN_CONTAINER=outer", "HPCRUN_IMAGE=o"},
			args: []string{"true"}, marks: []string{"1", "i.tar", ""}},
		{name: "shell: bash without rc files, when the image lacks the login shell", r: Request{Image: "/images/py3.tar", Shell: true},
			image: map[string]string{"bin/bash": "", "bin/sh": "-"}, env: []string{"PS1=host> "},
			args: []string{"/bin/bash", "--norc"}, marks: []string{"1", "/images/py3.tar", `(hpcrun py3.tar) \u@\h:\w\$ `}},
		{name: "shell: else sh", r: Request{Image: "py3.tar", Shell: true},
			args: []string{"/bin/sh"}, marks: []string{"1", "py3.tar", "(hpcrun py3.tar) $ "}},
		{name: "shell takes no --run", r: Request{Image: "py3.tar", Shell: true, Run: true},
			err: "hpcrun shell runs your shell: drop --run and --entrypoint", usage: true},
		{name: "an empty --entrypoint", r: Request{Image: "py3.tar", Entrypoint: s("")},
			err: "--entrypoint needs a command; to run without the image's Entrypoint, give CMD after the flags", usage: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			j.r = tc.r
			j.h.Env = append(j.h.Env, tc.env...)
			files := with(tc.image)
			for k, v := range files {
				if v == "-" {
					delete(files, k)
				}
			}
			j.im = newImage(t, files, nil, store.ImageConfig{})
			j.im.Digest = "sha256:ab"
			cfg, err := j.build()
			if !checkErr(t, err, tc.err, tc.usage) {
				return
			}
			if got := cfg.Spec.Process.Args; !slices.Equal(got, tc.args) {
				t.Errorf("args %q, want %q", got, tc.args)
			}
			env := cfg.Spec.Process.Env
			got := []string{envlist.Value(env, "HPCRUN_CONTAINER"), envlist.Value(env, "HPCRUN_IMAGE"), envlist.Value(env, "PS1")}
			if !slices.Equal(got, tc.marks) {
				t.Errorf("HPCRUN_CONTAINER, HPCRUN_IMAGE, PS1 = %q, want %q", got, tc.marks)
			}
			i := slices.IndexFunc(cfg.Files, func(f runtime.File) bool { return f.Path == ContainerEnvFile })
			if i < 0 || cfg.Files[i].Mode != 0o444 {
				t.Fatalf("no read-only %s in %s", ContainerEnvFile, filesText(cfg.Files))
			}
			if tc.file != "" && string(cfg.Files[i].Data) != tc.file {
				t.Errorf("%s = %q, want %q", ContainerEnvFile, cfg.Files[i].Data, tc.file)
			}
		})
	}
}

// TestShellCommand: the login shell where the image has it, else bash,
// else sh.
func TestShellCommand(t *testing.T) {
	for _, tc := range []struct {
		name  string
		login string
		files map[string]string
		want  []string
	}{
		{"the login shell", "/usr/bin/zsh", map[string]string{"usr/bin/zsh": "", "bin/bash": "", "bin/sh": ""}, []string{"/usr/bin/zsh"}},
		{"the login shell, bash", "/usr/bin/bash", map[string]string{"usr/bin/bash": "", "bin/sh": ""}, []string{"/usr/bin/bash", "--norc"}},
		{"bash, the login shell missing", "/usr/bin/zsh", map[string]string{"bin/bash": "", "bin/sh": ""}, []string{"/bin/bash", "--norc"}},
		{"sh", "/usr/bin/zsh", map[string]string{"bin/sh": ""}, []string{"/bin/sh"}},
		{"not nologin", "/usr/sbin/nologin", map[string]string{"usr/sbin/nologin": "", "bin/bash": ""}, []string{"/bin/bash", "--norc"}},
		{"not false", "/bin/false", map[string]string{"bin/false": "", "bin/sh": ""}, []string{"/bin/sh"}},
		{"sh, when there is none either: the job says what is missing", "", map[string]string{"etc/": ""}, []string{"/bin/sh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := newImage(t, tc.files, nil, store.ImageConfig{})
			if got := shellCommand(tc.login, im.Image); !slices.Equal(got, tc.want) {
				t.Errorf("shell %q, want %q", got, tc.want)
			}
		})
	}
}
