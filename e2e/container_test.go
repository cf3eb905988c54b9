package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestIdentity(t *testing.T) {
	t.Parallel()
	needUserns(t)
	const script = `id -u; id -g; whoami; id -gn`
	cases := []struct {
		name  string
		flags []string
		want  []string
	}{
		{"caller", nil, []string{strconv.Itoa(testUID), strconv.Itoa(testGID), testUser, testGrp}},
		{"fakeroot", []string{"--fakeroot"}, []string{"0", "0", "root", "root"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--rootfs", rootfsDir}, tc.flags...)
			r := mustRun(t, opts{}, append(args, "sh", "-c", script)...)
			if got := lines(r.stdout); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("id -u; id -g; whoami; id -gn: got %q, want %q\n%s", got, tc.want, r)
			}
		})
	}
}

// TestPasswdMerged: /etc/passwd and /etc/group inside are the image's plus
// the caller's entries.
func TestPasswdMerged(t *testing.T) {
	t.Parallel()
	needUserns(t)
	r := mustRun(t, opts{}, "--rootfs", rootfsDir, "sh", "-c", `cat /etc/passwd; echo ---; cat /etc/group`)
	passwd, group, _ := strings.Cut(r.stdout, "---\n")
	if !strings.Contains(passwd, "root:x:0:0:root:/root:/bin/sh\n") {
		t.Errorf("/etc/passwd inside lacks the image's root entry:\n%s", passwd)
	}
	if !strings.Contains(group, "root:x:0:\n") {
		t.Errorf("/etc/group inside lacks the image's root entry:\n%s", group)
	}
	if !strings.Contains(passwd, testUser+":x:"+strconv.Itoa(testUID)+":"+strconv.Itoa(testGID)+":") {
		t.Errorf("/etc/passwd inside lacks an entry for %s (%d:%d):\n%s", testUser, testUID, testGID, passwd)
	}
	if !strings.Contains(group, testGrp+":x:"+strconv.Itoa(testGID)+":") {
		t.Errorf("/etc/group inside lacks an entry for %s (%d):\n%s", testGrp, testGID, group)
	}
}

// TestDefaultMounts checks the host paths every job sees and that the rootfs
// is mounted read-only.
func TestDefaultMounts(t *testing.T) {
	t.Parallel()
	needUserns(t)
	hostHosts, err := os.ReadFile("/etc/hosts")
	if err != nil || len(hostHosts) == 0 {
		t.Skipf("host /etc/hosts unreadable or empty (%v); nothing to compare", err)
	}
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	name := "e2e-mounts-" + strconv.Itoa(os.Getpid())
	for _, d := range []string{"/tmp", "/var/tmp"} {
		t.Cleanup(func() { os.Remove(filepath.Join(d, name)) })
	}
	r := mustRun(t, opts{}, "--rootfs", rootfsDir, "sh", "-c",
		`cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; `+
			`echo t > /tmp/`+name+` && echo v > /var/tmp/`+name+` && echo wrote; echo ---; `+
			`test -c /dev/null && echo devnull; echo ---; cat /proc/mounts`)
	parts := strings.Split(r.stdout, "---\n")
	if len(parts) != 5 {
		t.Fatalf("unexpected output\n%s", r)
	}
	if parts[0] != string(hostHosts) {
		t.Errorf("/etc/hosts inside = %q, want the host's %q", parts[0], hostHosts)
	}
	if parts[1] != string(hostResolv) {
		t.Errorf("/etc/resolv.conf inside = %q, want the host's %q", parts[1], hostResolv)
	}
	if strings.TrimSpace(parts[2]) != "wrote" {
		t.Errorf("writing /tmp and /var/tmp inside failed\n%s", r)
	}
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if _, err := os.Stat(filepath.Join(d, name)); err != nil {
			t.Errorf("file written to %s inside is not in the host's %s: %v", d, d, err)
		}
	}
	if strings.TrimSpace(parts[3]) != "devnull" {
		t.Errorf("/dev/null is not a character device inside\n%s", r)
	}
	opts := map[string]string{}
	for _, l := range lines(parts[4]) {
		if f := strings.Fields(l); len(f) >= 4 {
			opts[f[1]] = f[3] // the last mount on a path wins
		}
	}
	for _, mp := range []string{"/", "/sys"} {
		o, ok := opts[mp]
		if !ok || !strings.HasPrefix(o, "ro,") && o != "ro" {
			t.Errorf("%s inside: mount options %q (mounted: %v), want read-only", mp, o, ok)
		}
	}
	if o := opts["/proc"]; o == "" {
		t.Errorf("no /proc mount inside:\n%s", parts[4])
	}
}

// TestPIDNamespace checks that /proc is the container's own: few, small pids,
// PID 1 is hpcrun's init and the job is its child.
func TestPIDNamespace(t *testing.T) {
	t.Parallel()
	needUserns(t)
	r := mustRun(t, opts{}, "--rootfs", rootfsDir, "sh", "-c",
		`echo "self=$$ ppid=$PPID"; echo "comm1=$(cat /proc/1/comm)"; echo "cmdline1=$(tr '\0' ' ' </proc/1/cmdline)"; ls /proc`)
	var self, ppid, comm1 string
	var pids []int
	for _, l := range lines(r.stdout) {
		switch {
		case strings.HasPrefix(l, "self="):
			f := strings.Fields(l)
			self = strings.TrimPrefix(f[0], "self=")
			ppid = strings.TrimPrefix(f[1], "ppid=")
		case strings.HasPrefix(l, "comm1="):
			comm1 = strings.TrimPrefix(l, "comm1=")
		case strings.HasPrefix(l, "cmdline1="):
			t.Logf("PID 1 in the container: %s", l)
		default:
			for _, f := range strings.Fields(l) {
				if n, err := strconv.Atoi(f); err == nil {
					pids = append(pids, n)
				}
			}
		}
	}
	t.Logf("pids in /proc: %v", pids)
	if self == "" || self == "1" {
		t.Errorf("job pid = %q, want a pid other than 1 (init must stay PID 1)\n%s", self, r)
	}
	if ppid != "1" {
		t.Errorf("job's parent pid = %q, want 1 (the init)\n%s", ppid, r)
	}
	switch comm1 {
	case "", "sh", "busybox", "cat", "ls", "tr":
		t.Errorf("/proc/1/comm = %q, want hpcrun's init, not the job\n%s", comm1, r)
	}
	if len(pids) == 0 || len(pids) > 6 {
		t.Errorf("/proc lists %d pids %v, want the few of the container\n%s", len(pids), pids, r)
	}
	// The job's pids start at the pid floor (runtime.PidFloor), for a
	// checkpoint's restore.
	sort.Ints(pids)
	if len(pids) > 1 && (pids[0] != 1 || pids[1] < 1000 || pids[len(pids)-1] > 1020) {
		t.Errorf("/proc pids %v: want 1 and a few from 1000 (a fresh pid namespace, the job at the pid floor)", pids)
	}
}

func TestNetNamespace(t *testing.T) {
	t.Parallel()
	needUserns(t)
	t.Run("host", func(t *testing.T) {
		t.Parallel()
		r := mustRun(t, opts{}, "--rootfs", rootfsDir, "readlink", "/proc/self/ns/net")
		if got := strings.TrimSpace(r.stdout); got != hostNetNS {
			t.Errorf("net ns inside = %q, want the host's %q", got, hostNetNS)
		}
	})
	t.Run("none", func(t *testing.T) {
		t.Parallel()
		r := mustRun(t, opts{}, "--rootfs", rootfsDir, "--net=none", "sh", "-c",
			`readlink /proc/self/ns/net; echo ---; cat /proc/net/dev; echo ---; ip link`)
		parts := strings.Split(r.stdout, "---\n")
		if len(parts) != 3 {
			t.Fatalf("unexpected output\n%s", r)
		}
		if ns := strings.TrimSpace(parts[0]); ns == hostNetNS || !strings.HasPrefix(ns, "net:[") {
			t.Errorf("--net=none: net ns = %q, want a new one (host is %q)", ns, hostNetNS)
		}
		var ifaces []string
		for _, l := range lines(parts[1]) {
			if name, _, ok := strings.Cut(l, ":"); ok && !strings.Contains(l, "|") {
				ifaces = append(ifaces, strings.TrimSpace(name))
			}
		}
		if strings.Join(ifaces, ",") != "lo" {
			t.Errorf("--net=none: /proc/net/dev lists %q, want only lo\n%s", ifaces, r)
		}
		link := lines(parts[2])
		if len(link) == 0 || !strings.Contains(link[0], "lo:") || !strings.Contains(link[0], ",UP") {
			t.Errorf("--net=none: want lo UP, ip link says:\n%s", parts[2])
		}
	})
}

// TestHomeFileOwner checks files written to $HOME belong to the caller on the
// host, also under --fakeroot.
func TestHomeFileOwner(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, fake := range []bool{false, true} {
		name := "caller"
		args := []string{"--rootfs", rootfsDir}
		if fake {
			name = "fakeroot"
			args = append(args, "--fakeroot")
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			file := filepath.Join(outerHome, "owner-"+name)
			t.Cleanup(func() { os.Remove(file) })
			mustRun(t, opts{env: []string{"HOME=" + outerHome}}, append(args, "sh", "-c", `echo hi > "$HOME/owner-`+name+`"`)...)
			fi, err := os.Stat(file)
			if err != nil {
				t.Fatalf("file written in $HOME inside is not on the host: %v", err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != testUID || int(st.Gid) != testGID {
				t.Errorf("%s owned by %d:%d on the host, want %d:%d", file, st.Uid, st.Gid, testUID, testGID)
			}
		})
	}
}

// TestNoHome: --no-home leaves $HOME unbound.
func TestNoHome(t *testing.T) {
	t.Parallel()
	needUserns(t)
	marker := filepath.Join(outerHome, "no-home-marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(marker) })
	const script = `if [ -e "$HOME/no-home-marker" ]; then echo visible; else echo absent; fi`
	for _, tc := range []struct{ flag, want string }{{"", "visible"}, {"--no-home", "absent"}} {
		args := []string{"--rootfs", rootfsDir}
		if tc.flag != "" {
			args = append(args, tc.flag)
		}
		r := mustRun(t, opts{env: []string{"HOME=" + outerHome}}, append(args, "sh", "-c", script)...)
		if got := strings.TrimSpace(r.stdout); got != tc.want {
			t.Errorf("with %q: $HOME contents are %s inside, want %s\n%s", tc.flag, got, tc.want, r)
		}
	}
}

// --no-home from $HOME, the usual place to start: the job starts in the
// empty home, and neither the real home nor the working directory (the
// same) is bound, so ~/.local does not leak in. From below $HOME, only
// that directory is bound over the empty home.
func TestNoHomeAtHome(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	home := tempDirOwnedIn(t, outerDir)
	sub := filepath.Join(home, "project")
	for _, d := range []string{filepath.Join(home, ".local"), sub} {
		if err := mkdirOwned(d); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, opts{}, "--image", img, "true") // unpacked: its lines are not the refusal's
	env := []string{"HOME=" + home}
	r := mustRun(t, opts{dir: home, env: append(env, "PWD="+home)}, "--no-home", "--image", img, "sh", "-c", `ls -A "$HOME"; echo "in $(pwd)"`)
	if r.stdout != "in "+home+"\n" {
		t.Errorf("--no-home at $HOME: want the job in an empty %s: %s", home, r)
	}
	r = mustRun(t, opts{dir: sub, env: append(env, "PWD="+sub)}, "--no-home", "--image", img, "sh", "-c", `ls -A "$HOME"; echo "in $(pwd)"`)
	if r.stdout != "project\nin "+sub+"\n" {
		t.Errorf("--no-home below $HOME: want only %s over the empty home, and the job in it: %s", sub, r)
	}
}

func TestWorkingDir(t *testing.T) {
	t.Parallel()
	needUserns(t)
	t.Run("cwd bound", func(t *testing.T) {
		t.Parallel()
		dir := tempDirOwnedIn(t, outerDir) // not under /tmp, which is bound anyway
		if err := os.WriteFile(filepath.Join(dir, "from-host"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r := mustRun(t, opts{dir: dir}, "--rootfs", rootfsDir, "sh", "-c", `pwd; ls; echo x > marker`)
		if got := lines(r.stdout); strings.Join(got, ",") != dir+",from-host" {
			t.Errorf("want pwd = the caller's cwd %q listing the host's from-host, got %q\n%s", dir, got, r)
		}
		if _, err := os.Stat(filepath.Join(dir, "marker")); err != nil {
			t.Errorf("file written in the cwd inside is not in the host dir: %v", err)
		}
	})
	t.Run("cwd in a system dir is never an empty stand-in", func(t *testing.T) {
		// hpcrun may decline to bind a cwd under /run, /var, /usr...; then
		// it must fail clearly, not run the job in an empty directory that
		// merely has the same name (as it would when $HOME lies below the
		// cwd and so makes the path exist inside).
		t.Parallel()
		if sysDir == "" {
			t.Skip("needs root to make a dir under /run")
		}
		dir := tempDirOwnedIn(t, sysDir)
		home := filepath.Join(dir, "home")
		if err := mkdirOwned(home); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "from-host"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		r := run(t, opts{dir: dir, env: []string{"HOME=" + home}}, "--rootfs", rootfsDir, "sh", "-c", `pwd; ls`)
		switch {
		case r.code == 125:
			assertOneErrorLine(t, r)
			t.Logf("hpcrun declines this cwd: %q", r.stderr)
		case r.code == 0 && strings.Contains(r.stdout, "from-host"):
			t.Logf("hpcrun binds this cwd")
		default:
			t.Errorf("cwd %s (under /run), $HOME below it: want the host dir (with from-host) or exit 125, got %s", dir, r)
		}
	})
	t.Run("relative CMD from the cwd", func(t *testing.T) {
		t.Parallel()
		dir := tempDirOwnedIn(t, outerDir)
		if err := os.WriteFile(filepath.Join(dir, "job.sh"), []byte("#!/bin/sh\necho job-ran \"$@\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		r := mustRun(t, opts{dir: dir}, "--rootfs", rootfsDir, "./job.sh", "a")
		if got := strings.TrimSpace(r.stdout); got != "job-ran a" {
			t.Errorf("./job.sh in the cwd: stdout %q, want %q", got, "job-ran a")
		}
	})
	t.Run("--pwd", func(t *testing.T) {
		t.Parallel()
		r := mustRun(t, opts{}, "--rootfs", rootfsDir, "--pwd", "/etc", "pwd")
		if got := strings.TrimSpace(r.stdout); got != "/etc" {
			t.Errorf("--pwd /etc: pwd = %q", got)
		}
	})
}

// TestBindMissingTarget binds onto paths the rootfs lacks, which hpcrun has to
// stage in a tmpfs, never in the (here writable by the caller) rootfs.
func TestBindMissingTarget(t *testing.T) {
	t.Parallel()
	needUserns(t)
	cases := []struct {
		name     string
		spec     string // --bind value, %s = source
		file     bool
		writable bool
	}{
		{"dir rw", "%s:/data/x", false, true},
		{"dir ro", "%s:/data/x:ro", false, false},
		{"file rw", "%s:/data/f/file.txt", true, true},
		{"same path", "%s", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := ownedRootfs(t)
			before := fingerprint(t, root)
			src := tempDirOwned(t)
			if !strings.Contains(tc.spec, ":") {
				src = tempDirOwnedIn(t, outerDir) // not under /tmp, which is bound anyway
			}
			if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hello-from-host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if asOther {
				os.Chown(filepath.Join(src, "hello"), testUID, testGID)
			}
			readPath, writePath, bindSrc := "/data/x/hello", "/data/x/new", src
			if tc.file {
				bindSrc = filepath.Join(src, "hello")
				readPath, writePath = "/data/f/file.txt", "/data/f/file.txt"
			}
			if !strings.Contains(tc.spec, ":") {
				readPath, writePath = filepath.Join(src, "hello"), filepath.Join(src, "new")
			}
			spec := strings.Replace(tc.spec, "%s", bindSrc, 1)
			r := run(t, opts{}, "--rootfs", root, "--bind", spec, "sh", "-c",
				`cat `+readPath+`; if echo written >> `+writePath+` 2>/dev/null; then echo write-ok; else echo write-failed; fi`)
			if r.code != 0 {
				t.Fatalf("--bind %s: %s", spec, r)
			}
			out := lines(r.stdout)
			if len(out) != 2 || out[0] != "hello-from-host" {
				t.Fatalf("--bind %s: source not visible at the target\n%s", spec, r)
			}
			want := "write-failed"
			if tc.writable {
				want = "write-ok"
			}
			if out[1] != want {
				t.Errorf("--bind %s: got %s, want %s\n%s", spec, out[1], want, r)
			}
			hostWritten := filepath.Join(src, "new")
			if tc.file {
				hostWritten = filepath.Join(src, "hello")
			}
			b, _ := os.ReadFile(hostWritten)
			if got := strings.Contains(string(b), "written"); got != tc.writable {
				t.Errorf("--bind %s: write reached the host source: %v, want %v", spec, got, tc.writable)
			}
			target := "/data"
			if !strings.Contains(tc.spec, ":") {
				target = src
			}
			if _, err := os.Lstat(filepath.Join(root, target)); !os.IsNotExist(err) {
				t.Errorf("rootfs has %s after the run (err=%v): mount target created in the image", target, err)
			}
			assertUnchanged(t, root, before)
		})
	}
}

// TestRootfsReadOnly: even a rootfs the caller owns is read-only inside.
func TestRootfsReadOnly(t *testing.T) {
	t.Parallel()
	needUserns(t)
	root := ownedRootfs(t)
	before := fingerprint(t, root)
	r := run(t, opts{}, "--rootfs", root, "sh", "-c", `touch /etc/newfile`)
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only file system") {
		t.Errorf("touch /etc/newfile: want failure with Read-only file system, got %s", r)
	}
	assertUnchanged(t, root, before)
}

// TestRootfsUnmodified fingerprints a caller-owned rootfs around a busy run.
func TestRootfsUnmodified(t *testing.T) {
	t.Parallel()
	needUserns(t)
	root := ownedRootfs(t)
	src := tempDirOwned(t)
	before := fingerprint(t, root)
	tmpName := "e2e-fp-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() {
		os.Remove(filepath.Join(homeDir, tmpName))
		os.Remove(filepath.Join("/tmp", tmpName))
	})
	r := mustRun(t, opts{}, "--rootfs", root,
		"--bind", src+":/data/a", "--bind", src+":/opt/deep/b:ro", "--bind", src+":/etc/extra",
		"sh", "-c", `echo a > "$HOME/`+tmpName+`" && echo b > /tmp/`+tmpName+` && ls /data/a /opt/deep/b /etc/extra >/dev/null && echo done`)
	if strings.TrimSpace(r.stdout) != "done" {
		t.Fatalf("job did not complete\n%s", r)
	}
	for _, p := range []string{filepath.Join(homeDir, tmpName), filepath.Join("/tmp", tmpName)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("write inside did not reach the host: %v", err)
		}
	}
	assertUnchanged(t, root, before)
}

// overlayInUserns reports whether the kernel lets the test user mount an
// overlay (what --writable-tmpfs needs) in a user namespace, with the reason.
func overlayInUserns(t *testing.T, lower string) (bool, string) {
	t.Helper()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return false, "no unshare(1) to probe with"
	}
	d := tempDirOwned(t)
	script := `mount -t tmpfs tmpfs "$1" && mkdir "$1/u" "$1/w" "$1/m" && ` +
		`mount -t overlay overlay -o "lowerdir=$2,upperdir=$1/u,workdir=$1/w" "$1/m"`
	r := runRaw(opts{}, unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", d, lower)
	return r.err == nil && r.code == 0, r.String()
}

func TestWritableTmpfs(t *testing.T) {
	t.Parallel()
	needUserns(t)
	root := ownedRootfs(t)
	kernelOK, probe := overlayInUserns(t, root)
	t.Logf("overlay in a user namespace allowed by the kernel: %v (%s)", kernelOK, probe)
	before := fingerprint(t, root)
	r := run(t, opts{}, "--rootfs", root, "--writable-tmpfs", "sh", "-c", `echo hi > /newfile && cat /newfile && echo x > /etc/more && echo ok`)
	switch {
	case r.code == 0:
		t.Logf("--writable-tmpfs: works")
		if got := lines(r.stdout); strings.Join(got, ",") != "hi,ok" {
			t.Errorf("--writable-tmpfs: want writes to succeed, got %s", r)
		}
	case r.code == 125 && !kernelOK:
		t.Logf("--writable-tmpfs: refused by hpcrun (the kernel refuses too): %q", r.stderr)
		l := lines(r.stderr)
		if len(l) != 1 || !strings.HasPrefix(l[0], "hpcrun: ") ||
			!(strings.Contains(l[0], "writable-tmpfs") || strings.Contains(l[0], "overlay")) {
			t.Errorf("--writable-tmpfs refused without one clear hpcrun: line naming writable-tmpfs or overlay: %s", r)
		}
	default:
		t.Errorf("--writable-tmpfs: want exit 0 (works; the kernel allows overlay in a user namespace: %v) "+
			"or, only where the kernel refuses, 125; got %s", kernelOK, r)
	}
	assertUnchanged(t, root, before)
	for _, p := range []string{"newfile", "etc/more"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("--writable-tmpfs wrote %s into the rootfs", p)
		}
	}
}

// parseEnv turns env(1) output into a map.
func parseEnv(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestEnv(t *testing.T) {
	t.Parallel()
	needUserns(t)
	envFile := filepath.Join(tempDirOwned(t), "env")
	if err := os.WriteFile(envFile, []byte("FROMFILE=yes\nFOO=file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostEnv := []string{"FOO=bar", "LD_PRELOAD=/nonexistent/preload.so", "LD_LIBRARY_PATH=/nonexistent/lib",
		"SLURM_JOB_ID=4242", "PMI_RANK=3", "PMIX_NAMESPACE=ns", "OMPI_COMM_WORLD_SIZE=2", "PBS_JOBID=7.pbs",
		"TERM=xterm-e2e", "OTHER=1"}
	cases := []struct {
		name   string
		flags  []string
		want   map[string]string // "" value = must be absent
		strict bool              // no other variable allowed than these and the --cleanenv set
	}{
		{"pass through", nil, map[string]string{
			"FOO": "bar", "OTHER": "1", "LD_PRELOAD": "", "LD_LIBRARY_PATH": "", "PATH": standardPath,
			"SLURM_JOB_ID": "4242", "HOME": homeDir, "USER": testUser}, false},
		{"--env wins", []string{"--env", "FOO=baz", "--env", "NEW=1"}, map[string]string{"FOO": "baz", "NEW": "1"}, false},
		{"--env PATH wins", []string{"--env", "PATH=/bin"}, map[string]string{"PATH": "/bin"}, false},
		{"--env LD_LIBRARY_PATH wins", []string{"--env", "LD_LIBRARY_PATH=/opt/lib"},
			map[string]string{"LD_LIBRARY_PATH": "/opt/lib", "LD_PRELOAD": ""}, false},
		{"--env-file", []string{"--env-file", envFile}, map[string]string{"FROMFILE": "yes", "FOO": "file"}, false},
		{"--cleanenv", []string{"--cleanenv"}, map[string]string{
			"FOO": "", "OTHER": "", "LD_PRELOAD": "", "LD_LIBRARY_PATH": "",
			"SLURM_JOB_ID": "4242", "PMI_RANK": "3", "PMIX_NAMESPACE": "ns", "OMPI_COMM_WORLD_SIZE": "2",
			"PBS_JOBID": "7.pbs", "TERM": "xterm-e2e", "HOME": homeDir, "USER": testUser, "PATH": standardPath,
			"HPCRUN_CONTAINER": "1", "HPCRUN_IMAGE": rootfsDir}, true},
		{"--cleanenv --env", []string{"--cleanenv", "--env", "FOO=baz"}, map[string]string{"FOO": "baz", "OTHER": ""}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--rootfs", rootfsDir}, tc.flags...)
			r := mustRun(t, opts{env: hostEnv}, append(args, "env")...)
			got := parseEnv(r.stdout)
			for k, v := range tc.want {
				gv, ok := got[k]
				switch {
				case v == "" && ok:
					t.Errorf("%s=%q is set inside, want it absent", k, gv)
				case v != "" && gv != v:
					t.Errorf("%s inside = %q (set: %v), want %q", k, gv, ok, v)
				}
			}
			if tc.strict {
				for k := range got {
					if _, listed := tc.want[k]; !listed {
						t.Errorf("--cleanenv kept %s=%q, want only HOME, USER, TERM, PATH, scheduler vars and hpcrun's marks", k, got[k])
					}
				}
			}
			if t.Failed() {
				t.Logf("%s", r)
			}
		})
	}
}
