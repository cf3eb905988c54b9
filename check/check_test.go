package check

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hpcrun/hpcrun/gpu"
	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/runtime"
)

// fakeProc writes a /proc tree with the given files (paths below /proc,
// such as "sys/user/max_user_namespaces"); "" as a value leaves a file
// out, as on a kernel without that sysctl.
func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	all := map[string]string{
		"sys/kernel/osrelease":         "6.8.0-45-generic",
		"sys/user/max_user_namespaces": "15000",
		"sys/user/max_mnt_namespaces":  "15000",
		"sys/user/max_pid_namespaces":  "15000",
	}
	for k, v := range files {
		all[k] = v
	}
	for name, v := range all {
		if v == "" {
			continue
		}
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fineDir is a node-local filesystem with room to spare.
var fineDir = jobs.Dir{Exists: true, Writable: true, Free: 100 << 30, FS: "ext4", Local: true}

// fakeDirs answers Env.Dir from a table, and with fineDir for the rest.
func fakeDirs(table map[string]jobs.Dir) func(string) jobs.Dir {
	return func(p string) jobs.Dir {
		if d, ok := table[p]; ok {
			return d
		}
		return fineDir
	}
}

// goodEnv is a node where everything works: the tests change one thing.
func goodEnv(t *testing.T) Env {
	t.Helper()
	base := t.TempDir()
	xdg := filepath.Join(base, "run-user")
	if err := os.Mkdir(xdg, 0o700); err != nil {
		t.Fatal(err)
	}
	return Env{
		Proc:    fakeProc(t, nil),
		Environ: []string{"HOME=/home/u", "XDG_RUNTIME_DIR=" + xdg},
		UID:     os.Getuid(),
		Cache:   filepath.Join(base, "cache"),
		Dir:     fakeDirs(nil),
		UserNS:  func() error { return nil },
		Overlay: func() error { return nil },
		GPU:     gpu.Host{Root: t.TempDir(), Arch: "amd64"},
	}
}

func find(t *testing.T, rs []Result, name string) Result {
	t.Helper()
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no %q result in %+v", name, rs)
	return Result{}
}

// want checks a result's status and that its detail and fix hold the
// given strings.
func want(t *testing.T, r Result, status Status, detail, fix []string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %s, want %s: %+v", r.Name, r.Status, status, r)
	}
	for _, s := range detail {
		if !strings.Contains(r.Detail, s) {
			t.Errorf("%s: detail %q lacks %q", r.Name, r.Detail, s)
		}
	}
	for _, s := range fix {
		if !strings.Contains(r.Fix, s) {
			t.Errorf("%s: fix %q lacks %q", r.Name, r.Fix, s)
		}
	}
	if (r.Status == OK || r.Status == Info) && r.Fix != "" {
		t.Errorf("%s: an %s result with a fix: %q", r.Name, r.Status, r.Fix)
	}
	if (r.Status == Warn || r.Status == Fail) && r.Fix == "" {
		t.Errorf("%s: a %s result without a fix: %+v", r.Name, r.Status, r)
	}
	if strings.Contains(r.Detail, "\n") || strings.Contains(r.Fix, "\n") {
		t.Errorf("%s: more than one line: %+v", r.Name, r)
	}
}

func probeErr(step string, errno syscall.Errno) func() error {
	return func() error { return &runtime.ProbeError{Step: step, Errno: errno} }
}

const cloneStep = "clone(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID) with your uid mapped"

func TestUserNamespaces(t *testing.T) {
	for _, tc := range []struct {
		name   string
		proc   map[string]string
		uid    int // -1: the test's own
		probe  func() error
		status Status
		detail []string
		fix    []string
	}{
		{name: "all fine", uid: 1000, probe: func() error { return nil }, status: OK,
			detail: []string{"work", "user.max_user_namespaces=15000"}},
		{name: "max_user_namespaces=0", uid: 1000, proc: map[string]string{"sys/user/max_user_namespaces": "0"},
			probe: probeErr(cloneStep, syscall.ENOSPC), status: Fail,
			detail: []string{"user.max_user_namespaces is 0", "ENOSPC"},
			fix:    []string{"sysctl -w user.max_user_namespaces=15000", "ask your admins"}},
		{name: "unprivileged_userns_clone=0", uid: 1000, proc: map[string]string{"sys/kernel/unprivileged_userns_clone": "0"},
			probe: probeErr(cloneStep, syscall.EPERM), status: Fail,
			detail: []string{"kernel.unprivileged_userns_clone is 0", "EPERM (operation not permitted)"},
			fix:    []string{"sysctl -w kernel.unprivileged_userns_clone=1"}},
		{name: "unprivileged_userns_clone=1", uid: 1000, proc: map[string]string{"sys/kernel/unprivileged_userns_clone": "1"},
			probe: func() error { return nil }, status: OK, detail: []string{"work"}},
		{name: "unprivileged_userns_clone=0, checked by root", uid: 0,
			proc:  map[string]string{"sys/kernel/unprivileged_userns_clone": "0"},
			probe: func() error { return nil }, status: Warn,
			detail: []string{"work for root, but not for other users", "unprivileged_userns_clone is 0"},
			fix:    []string{"sysctl -w kernel.unprivileged_userns_clone=1"}},
		{name: "AppArmor restricts", uid: 1000, proc: map[string]string{"sys/kernel/apparmor_restrict_unprivileged_userns": "1"},
			probe: probeErr("make / a slave mount", syscall.EACCES), status: Fail,
			detail: []string{"apparmor_restrict_unprivileged_userns is 1", "make / a slave mount: EACCES"},
			fix:    []string{"AppArmor profile", "userns,", "apparmor_restrict_unprivileged_userns=0"}},
		{name: "AppArmor restricts, but a profile lets hpcrun through", uid: 1000,
			proc:  map[string]string{"sys/kernel/apparmor_restrict_unprivileged_userns": "1"},
			probe: func() error { return nil }, status: OK, detail: []string{"work", "let through"}},
		{name: "max_mnt_namespaces=0", uid: 1000, proc: map[string]string{"sys/user/max_mnt_namespaces": "0"},
			probe: probeErr(cloneStep, syscall.ENOSPC), status: Fail,
			detail: []string{"user.max_mnt_namespaces is 0"}, fix: []string{"sysctl -w user.max_mnt_namespaces=15000"}},
		{name: "max_pid_namespaces=0", uid: 1000, proc: map[string]string{"sys/user/max_pid_namespaces": "0"},
			probe: probeErr(cloneStep, syscall.ENOSPC), status: Fail,
			detail: []string{"user.max_pid_namespaces is 0"}, fix: []string{"sysctl -w user.max_pid_namespaces=15000"}},
		{name: "old kernel", uid: 1000, proc: map[string]string{"sys/kernel/osrelease": "3.10.0-1160.el7.x86_64"},
			probe: probeErr(cloneStep, syscall.EINVAL), status: Fail,
			detail: []string{"Linux 3.10.0-1160.el7.x86_64 is older than 3.19", "EINVAL"}, fix: []string{"newer kernel"}},
		{name: "limit used up", uid: 1000, proc: map[string]string{"sys/user/max_user_namespaces": "3"},
			probe: probeErr(cloneStep, syscall.ENOSPC), status: Fail,
			detail: []string{"used up", "user.max_user_namespaces=3", "ENOSPC"}, fix: []string{"end other containers"}},
		{name: "proc hidden in an outer container", uid: 1000,
			probe: probeErr(runtime.ProbeMountProc, syscall.EPERM), status: Fail,
			detail: []string{"a fresh /proc cannot be mounted", "mount a fresh proc: EPERM"}, fix: []string{"systempaths=unconfined"}},
		{name: "refused, no sysctl says why", uid: 1000, probe: probeErr(cloneStep, syscall.EPERM), status: Fail,
			detail: []string{"seccomp", cloneStep + ": EPERM (operation not permitted)"}, fix: []string{"unshare --user"}},
		{name: "knobs without the sysctls of other kernels", uid: 1000,
			proc:  map[string]string{"sys/user/max_mnt_namespaces": "", "sys/user/max_pid_namespaces": ""},
			probe: func() error { return nil }, status: OK},
		{name: "not tried, a sysctl blocks", uid: 1000, proc: map[string]string{"sys/user/max_user_namespaces": "0"},
			status: Fail, detail: []string{"user.max_user_namespaces is 0"}, fix: []string{"sysctl -w"}},
		{name: "not tried, nothing blocks", uid: 1000, status: Info, detail: []string{"not tried"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := goodEnv(t)
			e.Proc = fakeProc(t, tc.proc)
			e.UID = tc.uid
			e.UserNS = tc.probe
			rs := Run(e)
			r := find(t, rs, "user namespaces")
			want(t, r, tc.status, tc.detail, tc.fix)
			if got := Failed(rs); got != (tc.status == Fail) {
				t.Errorf("Failed = %v with user namespaces %s", got, tc.status)
			}
		})
	}
}

func TestOverlay(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kernel  string
		userns  func() error
		overlay func() error
		status  Status
		detail  []string
		fix     []string
	}{
		{name: "works", overlay: func() error { return nil }, status: OK, detail: []string{"--writable-tmpfs works"}},
		{name: "old kernel", kernel: "5.4.0-150-generic",
			overlay: probeErr("mount an overlay (upper layer in a tmpfs)", syscall.EPERM), status: Warn,
			detail: []string{"Linux 5.4.0-150-generic is older than 5.11", "EPERM"}, fix: []string{"without --writable-tmpfs", "newer kernel"}},
		{name: "no overlay module", overlay: probeErr("mount an overlay (upper layer in a tmpfs)", syscall.ENODEV), status: Warn,
			detail: []string{"no overlay filesystem", "ENODEV"}, fix: []string{"modprobe overlay"}},
		{name: "refused on a new kernel", overlay: probeErr("mount an overlay (upper layer in a tmpfs)", syscall.EACCES), status: Warn,
			detail: []string{"--writable-tmpfs will not work", "EACCES"}, fix: []string{"without --writable-tmpfs"}},
		{name: "no user namespaces", userns: probeErr(cloneStep, syscall.EPERM), overlay: func() error { panic("tried") },
			status: Warn, detail: []string{"not tried"}, fix: []string{"user namespaces"}},
		{name: "not tried, old kernel", kernel: "5.10.0-28-amd64", status: Warn, detail: []string{"older than 5.11"},
			fix: []string{"without --writable-tmpfs"}},
		{name: "not tried, new kernel", status: Info, detail: []string{"not tried"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := goodEnv(t)
			if tc.kernel != "" {
				e.Proc = fakeProc(t, map[string]string{"sys/kernel/osrelease": tc.kernel})
			}
			if tc.userns != nil {
				e.UserNS = tc.userns
			}
			e.Overlay = tc.overlay
			rs := Run(e)
			want(t, find(t, rs, "overlayfs"), tc.status, tc.detail, tc.fix)
			if tc.userns == nil && Failed(rs) {
				t.Errorf("an overlay problem fails the check: %+v", rs)
			}
		})
	}
}

func TestKernel(t *testing.T) {
	for _, tc := range []struct {
		release string
		detail  string
	}{
		{"6.8.0-45-generic", "Linux 6.8.0-45-generic"},
		{"3.10.0-1160.el7.x86_64", "user namespaces need 3.19"},
		{"5.4.0", "--writable-tmpfs needs 5.11"},
		{"5.11rc1", "Linux 5.11rc1"},
		{"", "unknown"},
		{"weird", "not a version"},
	} {
		e := goodEnv(t)
		e.Proc = fakeProc(t, map[string]string{"sys/kernel/osrelease": tc.release})
		r := find(t, Run(e), "kernel")
		want(t, r, Info, []string{tc.detail}, nil)
	}
}

func TestCache(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup returns the cache dir, and may change e.
		setup  func(t *testing.T, e *Env) string
		status Status
		detail []string
		fix    []string
	}{
		{name: "missing, made on first use", setup: func(t *testing.T, e *Env) string { return e.Cache },
			status: OK, detail: []string{"ext4, node-local, 100.0 GiB free", "made on first use in"}},
		{name: "there, writable", setup: func(t *testing.T, e *Env) string { return mkdir(t, e.Cache, 0o700) },
			status: OK, detail: []string{"ext4, node-local", "writable"}},
		{name: "where it came from", setup: func(t *testing.T, e *Env) string {
			e.CacheFrom = "HPCRUN_CACHE"
			return e.Cache
		}, status: OK, detail: []string{"(HPCRUN_CACHE)"}},
		{name: "on a network filesystem", setup: func(t *testing.T, e *Env) string {
			d := mkdir(t, e.Cache, 0o700)
			e.Dir = fakeDirs(map[string]jobs.Dir{d: {Exists: true, Writable: true, Free: 1 << 40, FS: "nfs"}})
			return d
		}, status: Warn, detail: []string{"nfs", "not node-local", "1.0 TiB free"}, fix: []string{"node-local directory", "HPCRUN_CACHE"}},
		{name: "noexec", setup: func(t *testing.T, e *Env) string {
			d := mkdir(t, e.Cache, 0o700)
			e.Dir = fakeDirs(map[string]jobs.Dir{d: {Exists: true, Writable: true, Free: 1 << 30, FS: "tmpfs", Local: true, NoExec: true}})
			return d
		}, status: Fail, detail: []string{"tmpfs, mounted noexec"}, fix: []string{"allows exec", "HPCRUN_CACHE", "scratch: in the site's"}},
		{name: "no usable candidate", setup: func(t *testing.T, e *Env) string {
			e.CacheErr = errors.New("no node-local dir for the image cache: /var/tmp is mounted noexec, /tmp is mounted noexec; set cache: or scratch: in the site config")
			return ""
		}, status: Fail, detail: []string{"/var/tmp is mounted noexec, /tmp is mounted noexec"}, fix: []string{"allows exec"}},
		{name: "full", setup: func(t *testing.T, e *Env) string {
			d := mkdir(t, e.Cache, 0o700)
			e.Dir = fakeDirs(map[string]jobs.Dir{d: {Exists: true, Writable: true, Free: 0, FS: "xfs", Local: true}})
			return d
		}, status: Fail, detail: []string{"xfs, full"}, fix: []string{"hpcrun prune", "HPCRUN_CACHE"}},
		{name: "parent full", setup: func(t *testing.T, e *Env) string {
			e.Dir = fakeDirs(map[string]jobs.Dir{filepath.Dir(e.Cache): {Exists: true, Writable: true, FS: "tmpfs", Local: true}})
			return e.Cache
		}, status: Fail, detail: []string{"tmpfs, full"}, fix: []string{"free some space"}},
		{name: "low on space", setup: func(t *testing.T, e *Env) string {
			d := mkdir(t, e.Cache, 0o700)
			e.Dir = fakeDirs(map[string]jobs.Dir{d: {Exists: true, Writable: true, Free: 300 << 20, FS: "ext4", Local: true}})
			return d
		}, status: Warn, detail: []string{"only 300.0 MiB free"}, fix: []string{"hpcrun prune"}},
		{name: "missing, parent not writable", setup: func(t *testing.T, e *Env) string {
			p := mkdir(t, filepath.Join(filepath.Dir(e.Cache), "ro"), 0o755)
			e.Dir = fakeDirs(map[string]jobs.Dir{p: {Exists: true, Free: 1 << 30, FS: "ext4", Local: true}})
			return filepath.Join(p, "a", "cache")
		}, status: Fail, detail: []string{"missing, and you", "cannot create it in"}, fix: []string{"HPCRUN_CACHE"}},
		{name: "not writable", setup: func(t *testing.T, e *Env) string {
			d := mkdir(t, e.Cache, 0o700)
			e.Dir = fakeDirs(map[string]jobs.Dir{d: {Exists: true, Free: 1 << 30, FS: "ext4", Local: true}})
			return d
		}, status: Fail, detail: []string{"not writable by you"}, fix: []string{"chmod u+rwx"}},
		{name: "a file", setup: func(t *testing.T, e *Env) string {
			if err := os.WriteFile(e.Cache, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return e.Cache
		}, status: Fail, detail: []string{"cache: not a directory"}, fix: []string{"node-local directory of yours"}},
		{name: "below a file", setup: func(t *testing.T, e *Env) string {
			if err := os.WriteFile(e.Cache, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(e.Cache, "sub")
		}, status: Fail, detail: []string{"not a directory"}, fix: []string{"HPCRUN_CACHE"}},
		{name: "a symlink", setup: func(t *testing.T, e *Env) string {
			real := mkdir(t, e.Cache+".real", 0o700)
			if err := os.Symlink(real, e.Cache); err != nil {
				t.Fatal(err)
			}
			return e.Cache
		}, status: Fail, detail: []string{"cache: a symlink"}, fix: []string{"the directory it leads to"}},
		{name: "someone else's", setup: func(t *testing.T, e *Env) string {
			e.UID++
			return mkdir(t, e.Cache, 0o700)
		}, status: Fail, detail: []string{"cache: owned by uid"}, fix: []string{"HPCRUN_CACHE"}},
		{name: "writable by others", setup: func(t *testing.T, e *Env) string {
			return mkdir(t, e.Cache, 0o777)
		}, status: Fail, detail: []string{"cache: writable by others (mode 0777)"}, fix: []string{"chmod go-w"}},
		{name: "below a dir others can write", setup: func(t *testing.T, e *Env) string {
			p := mkdir(t, filepath.Join(filepath.Dir(e.Cache), "open"), 0o777)
			return filepath.Join(p, "cache")
		}, status: Fail, detail: []string{"cache: its parent", "can be written by others", "who could swap it"}, fix: []string{"HPCRUN_CACHE"}},
		{name: "not resolved", setup: func(t *testing.T, e *Env) string {
			e.CacheErr = errors.New("the scratch dir /local (set in /etc/hpcrun/config.yaml:2) does not exist on this node")
			return ""
		}, status: Fail, detail: []string{"/local", "does not exist"}, fix: []string{"HPCRUN_CACHE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := goodEnv(t)
			e.Cache = tc.setup(t, &e)
			rs := Run(e)
			r := find(t, rs, "image cache")
			want(t, r, tc.status, tc.detail, tc.fix)
			if got := Failed(rs); got != (tc.status == Fail) {
				t.Errorf("Failed = %v with the cache %s", got, tc.status)
			}
		})
	}
}

// mkdir makes dir with exactly mode perm.
func mkdir(t *testing.T, dir string, perm os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(dir, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, perm); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestConfig(t *testing.T) {
	e := goodEnv(t)
	want(t, find(t, Run(e), "config"), OK, []string{"no config files"}, nil)
	e.ConfigRead = []string{"/etc/hpcrun/config.yaml"}
	want(t, find(t, Run(e), "config"), OK, []string{"read /etc/hpcrun/config.yaml"}, nil)
	e.ConfigErr = errors.New("/etc/hpcrun/config.yaml:3: unknown key \"cahce\"")
	rs := Run(e)
	want(t, find(t, rs, "config"), Fail, []string{"config.yaml:3"}, []string{"hpcrun config"})
	if !Failed(rs) {
		t.Error("a config that does not load does not fail the check")
	}
}

func TestState(t *testing.T) {
	const fakeUID = 4000000 // no such user: /tmp/hpcrun-4000000 does not exist
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, e *Env)
		status Status
		detail []string
		fix    []string
	}{
		{name: "XDG_RUNTIME_DIR fine", setup: func(t *testing.T, e *Env) {},
			status: OK, detail: []string{"run-user/hpcrun ($XDG_RUNTIME_DIR)", "made on first use"}},
		{name: "state dir there", setup: func(t *testing.T, e *Env) {
			mkdir(t, filepath.Join(xdgOf(e), "hpcrun"), 0o700)
		}, status: OK, detail: []string{"yours, writable"}},
		{name: "XDG_RUNTIME_DIR missing", setup: func(t *testing.T, e *Env) {
			e.UID = fakeUID
			e.Environ = []string{"XDG_RUNTIME_DIR=/run/user/4000000"}
		}, status: OK, detail: []string{"/tmp/hpcrun-4000000/run", "XDG_RUNTIME_DIR=/run/user/4000000 does not exist"}},
		{name: "XDG_RUNTIME_DIR not set", setup: func(t *testing.T, e *Env) {
			e.UID = fakeUID
			e.Environ = nil
		}, status: OK, detail: []string{"/tmp/hpcrun-4000000/run", "XDG_RUNTIME_DIR is not set"}},
		{name: "XDG_RUNTIME_DIR someone else's", setup: func(t *testing.T, e *Env) {
			e.UID++
		}, status: Warn, detail: []string{"belongs to uid", "--name, --detach"}, fix: []string{"unset XDG_RUNTIME_DIR", "--root"}},
		{name: "XDG_RUNTIME_DIR not writable", setup: func(t *testing.T, e *Env) {
			e.Dir = fakeDirs(map[string]jobs.Dir{xdgOf(e): {Exists: true, FS: "tmpfs", Local: true}})
		}, status: Warn, detail: []string{"cannot create it in"}, fix: []string{"unset XDG_RUNTIME_DIR"}},
		{name: "state dir writable by others", setup: func(t *testing.T, e *Env) {
			mkdir(t, filepath.Join(xdgOf(e), "hpcrun"), 0o777)
		}, status: Warn, detail: []string{"writable by others"}, fix: []string{"chmod go-w"}},
		{name: "--root", setup: func(t *testing.T, e *Env) {
			e.StateRoot = mkdir(t, filepath.Join(t.TempDir(), "state"), 0o700)
		}, status: OK, detail: []string{"state (--root), yours, writable"}},
		{name: "--root a file", setup: func(t *testing.T, e *Env) {
			e.StateRoot = filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(e.StateRoot, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, status: Warn, detail: []string{"file (--root): not a directory"}, fix: []string{"give --root a directory of yours"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := goodEnv(t)
			tc.setup(t, &e)
			rs := Run(e)
			want(t, find(t, rs, "container state"), tc.status, tc.detail, tc.fix)
			if Failed(rs) && e.UID == os.Getuid() {
				t.Errorf("a state dir problem fails the check: %+v", rs)
			}
		})
	}
}

func xdgOf(e *Env) string {
	for _, kv := range e.Environ {
		if v, ok := strings.CutPrefix(kv, "XDG_RUNTIME_DIR="); ok {
			return v
		}
	}
	return ""
}

// ldCache writes entries as glibc 2.32 and later's ldconfig does (the new
// format alone, little-endian), which gpu.ParseLdCache reads.
func ldCache(t *testing.T, entries []gpu.Entry) []byte {
	t.Helper()
	const header, entry = 48, 24
	le := binary.LittleEndian
	var strs []byte
	str := func(s string) uint32 {
		off := uint32(header + len(entries)*entry + len(strs))
		strs = append(append(strs, s...), 0)
		return off
	}
	var table []byte
	for _, e := range entries {
		table = le.AppendUint32(table, uint32(e.Flags))
		table = le.AppendUint32(table, str(e.Name))
		table = le.AppendUint32(table, str(e.Path))
		table = le.AppendUint32(table, 0)
		table = le.AppendUint64(table, e.Hwcap)
	}
	out := []byte("glibc-ld.so.cache1.1")
	out = le.AppendUint32(out, uint32(len(entries)))
	out = le.AppendUint32(out, uint32(len(strs)))
	out = append(out, 2, 0, 0, 0) // little-endian
	out = append(out, make([]byte, 16)...)
	out = append(append(out, table...), strs...)
	if got, err := gpu.ParseLdCache(out); err != nil || len(got) != len(entries) {
		t.Fatalf("the test's ld.so.cache does not parse: %v, %d entries", err, len(got))
	}
	return out
}

// gpuHost lays out a fake node: files (a trailing * makes one
// executable), symlinks ("path -> target") and an ld.so.cache.
func gpuHost(t *testing.T, lines []string, libs []gpu.Entry) string {
	t.Helper()
	root := t.TempDir()
	for _, l := range lines {
		p, target, link := strings.Cut(l, " -> ")
		p, text, _ := strings.Cut(p, " = ")
		full := filepath.Join(root, strings.TrimSuffix(p, "*"))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case link:
			err = os.Symlink(target, full)
		case strings.HasSuffix(p, "*"):
			err = os.WriteFile(full, []byte("#!/bin/sh\n"), 0o755)
		default:
			err = os.WriteFile(full, []byte(text), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/ld.so.cache"), ldCache(t, libs), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

const lib64 = "/usr/lib/x86_64-linux-gnu"
const x8664 gpu.Flags = 0x0303 // libc6,x86-64

var nvidiaFiles = []string{
	lib64 + "/libcuda.so.550.54.15",
	lib64 + "/libcuda.so.1 -> libcuda.so.550.54.15",
	lib64 + "/libnvidia-ml.so.550.54.15",
	lib64 + "/libnvidia-ml.so.1 -> libnvidia-ml.so.550.54.15",
	"/usr/bin/nvidia-smi*",
	"/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia-uvm",
	"/sys/module/nvidia/version = 550.54.15\n",
}

var nvidiaLibs = []gpu.Entry{
	{Name: "libcuda.so.1", Path: lib64 + "/libcuda.so.1", Flags: x8664},
	{Name: "libnvidia-ml.so.1", Path: lib64 + "/libnvidia-ml.so.1", Flags: x8664},
}

var rocmFiles = []string{
	"/opt/rocm/lib/libhsa-runtime64.so.1.14.0",
	"/opt/rocm/lib/libhsa-runtime64.so.1 -> libhsa-runtime64.so.1.14.0",
	"/opt/rocm/lib/libamdhip64.so.6",
	"/opt/rocm/bin/rocminfo*",
	"/dev/kfd", "/dev/dri/renderD128",
}

var rocmLibs = []gpu.Entry{
	{Name: "libhsa-runtime64.so.1", Path: "/opt/rocm/lib/libhsa-runtime64.so.1", Flags: x8664},
	{Name: "libamdhip64.so.6", Path: "/opt/rocm/lib/libamdhip64.so.6", Flags: x8664},
}

func TestGPU(t *testing.T) {
	type line struct {
		name   string
		status Status
		detail []string
		fix    []string
	}
	for _, tc := range []struct {
		name  string
		files []string
		libs  []gpu.Entry
		env   []string
		want  []line
	}{
		{name: "no GPU", want: []line{{"GPU", Info, []string{"no NVIDIA or ROCm driver", "--gpu and --rocm"}, nil}}},
		{name: "NVIDIA", files: nvidiaFiles, libs: nvidiaLibs, env: []string{"CUDA_VISIBLE_DEVICES=1", "PATH=/bin"},
			want: []line{{"NVIDIA GPU", OK, []string{"nvidia 550.54.15", "--gpu binds 2 libraries and nvidia-smi",
				"/dev/nvidia0 /dev/nvidia1", "CUDA_VISIBLE_DEVICES=1"}, nil}}},
		{name: "NVIDIA device, no library", files: []string{"/dev/nvidiactl", "/dev/nvidia0"},
			want: []line{{"NVIDIA GPU", Warn, []string{"/dev/nvidiactl is here, but --gpu will fail", "libcuda.so.1"}, []string{"admins"}}}},
		{name: "NVIDIA module of another version", libs: nvidiaLibs,
			files: append(append([]string(nil), nvidiaFiles[:len(nvidiaFiles)-1]...), "/sys/module/nvidia/version = 555.42.02\n"),
			want:  []line{{"NVIDIA GPU", Warn, []string{"kernel module is version 555.42.02"}, []string{"admins"}}}},
		{name: "ROCm", files: rocmFiles, libs: rocmLibs, env: []string{"ROCR_VISIBLE_DEVICES=0"},
			want: []line{{"AMD GPU", OK, []string{"rocm: --rocm binds 2 libraries and rocminfo", "/dev/kfd", "ROCR_VISIBLE_DEVICES=0"}, nil}}},
		{name: "both", files: append(append([]string(nil), nvidiaFiles...), rocmFiles...), libs: append(append([]gpu.Entry(nil), nvidiaLibs...), rocmLibs...),
			want: []line{{"NVIDIA GPU", OK, nil, nil}, {"AMD GPU", OK, nil, nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := goodEnv(t)
			e.Environ = append(e.Environ, tc.env...)
			e.GPU = gpu.Host{Root: gpuHost(t, tc.files, tc.libs), Arch: "amd64"}
			rs := Run(e)
			var got []Result
			for _, r := range rs {
				if strings.Contains(r.Name, "GPU") {
					got = append(got, r)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("GPU lines %+v, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if got[i].Name != w.name {
					t.Errorf("line %d is %q, want %q", i, got[i].Name, w.name)
				}
				want(t, got[i], w.status, w.detail, w.fix)
			}
			if Failed(rs) {
				t.Errorf("a GPU finding fails the check: %+v", got)
			}
		})
	}
}

func TestScheduler(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    []string
		detail []string
	}{
		{"none", []string{"HOME=/h"}, []string{"none: no SLURM_JOB_ID or PBS_JOBID"}},
		{"Slurm step", []string{"SLURM_JOB_ID=313", "SLURM_STEP_ID=0", "SLURM_PROCID=5", "SLURM_LOCALID=1",
			"SLURM_STEP_TASKS_PER_NODE=4(x2)", "SLURM_NODEID=1", "SLURM_TMPDIR=/local/313"},
			[]string{"slurm: job 313, step 0, rank 5, local rank 1 of 4, tmp dir /local/313, runs are named slurm-313.0.5"}},
		{"Slurm array batch script", []string{"SLURM_JOB_ID=320", "SLURM_ARRAY_JOB_ID=318", "SLURM_ARRAY_TASK_ID=2"},
			[]string{"job 320, array job 318, array task 2", "slurm-320.batch.0"}},
		{"PBS Pro", []string{"PBS_JOBID=1234.server", "PBS_O_WORKDIR=/home/u", "TMPDIR=/var/tmp/pbs.1234.server"},
			[]string{"pbs (pbspro): job 1234.server", "tmp dir /var/tmp/pbs.1234.server", "pbs-1234.server.0"}},
		{"Torque", []string{"PBS_JOBID=77.head", "PBS_VERSION=TORQUE-6.1.3", "PBS_NUM_PPN=8"},
			[]string{"pbs (torque): job 77.head", "tasks on this node 8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := goodEnv(t)
			e.Environ = tc.env
			want(t, find(t, Run(e), "scheduler"), Info, tc.detail, nil)
		})
	}
}

func TestWrite(t *testing.T) {
	rs := []Result{
		{Name: "kernel", Status: Info, Detail: "Linux 6.8.0"},
		{Name: "user namespaces", Status: Fail, Detail: "do not work", Fix: "sysctl -w user.max_user_namespaces=15000"},
		{Name: "overlayfs", Status: OK, Detail: "works"},
	}
	var b bytes.Buffer
	if err := Write(&b, rs); err != nil {
		t.Fatal(err)
	}
	wantOut := "" +
		"info  kernel           Linux 6.8.0\n" +
		"fail  user namespaces  do not work\n" +
		"      fix: sysctl -w user.max_user_namespaces=15000\n" +
		"ok    overlayfs        works\n"
	if b.String() != wantOut {
		t.Errorf("Write:\n%s\nwant:\n%s", b.String(), wantOut)
	}
}

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		rs   []Result
		want string
	}{
		{[]Result{{Name: "a", Status: OK}, {Name: "b", Status: Info}}, "hpcrun can run containers on this node"},
		{[]Result{{Name: "a", Status: Warn}}, "hpcrun can run containers on this node; 1 warning"},
		{[]Result{{Name: "a", Status: Warn}, {Name: "b", Status: Warn}}, "hpcrun can run containers on this node; 2 warnings"},
		{[]Result{{Name: "user namespaces", Status: Fail}, {Name: "c", Status: Warn}, {Name: "image cache", Status: Fail}},
			"hpcrun cannot run containers on this node: fix user namespaces and image cache"},
	} {
		if got := Summary(tc.rs); got != tc.want {
			t.Errorf("Summary = %q, want %q", got, tc.want)
		}
		if Failed(tc.rs) != strings.Contains(tc.want, "cannot") {
			t.Errorf("Failed(%+v) = %v", tc.rs, Failed(tc.rs))
		}
	}
}

// TestAllFine: a node where everything works passes, with every check in
// its place and no fix to give.
func TestAllFine(t *testing.T) {
	rs := Run(goodEnv(t))
	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
		if r.Status != OK && r.Status != Info {
			t.Errorf("%s: %s: %s (fix: %s)", r.Name, r.Status, r.Detail, r.Fix)
		}
	}
	if got, want := strings.Join(names, ", "), "config, kernel, user namespaces, overlayfs, image cache, container state, checkpoint, GPU, scheduler"; got != want {
		t.Errorf("checks %s, want %s", got, want)
	}
	if Failed(rs) {
		t.Error("Failed on a fine node")
	}
}

// The checkpoint line: what the kernel lacks, a site's criu that is not
// an executable, and fine.
func TestCheckpoint(t *testing.T) {
	e := goodEnv(t)
	if r := find(t, Run(e), "checkpoint"); r.Status != Info {
		t.Errorf("not tried: %+v", r)
	}
	e.Checkpoint = func() error {
		return errors.New("checkpoint needs Linux 5.9 or newer: this kernel (4.18.0) has no CAP_CHECKPOINT_RESTORE")
	}
	want(t, find(t, Run(e), "checkpoint"), Warn, []string{"will not work", "4.18.0"}, []string{"Linux 5.9"})
	e.Checkpoint = func() error { return nil }
	want(t, find(t, Run(e), "checkpoint"), OK, []string{"criu 4.1"}, nil)
	e.Criu, e.CriuFrom = "/nonexistent/criu", "HPCRUN_CRIU"
	want(t, find(t, Run(e), "checkpoint"), Warn, []string{"criu /nonexistent/criu (HPCRUN_CRIU)"}, []string{"static criu"})
}
