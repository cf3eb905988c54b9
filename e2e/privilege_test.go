package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// capLine reads one capability mask from /proc/self/status output.
func capLine(t *testing.T, status, name string) uint64 {
	t.Helper()
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in %q", name, status)
	return 0
}

// The job keeps no capability of the init's; with --fakeroot it has the
// default set of Docker and runc, usable (chroot), and nothing more.
func TestCapabilities(t *testing.T) {
	t.Parallel()
	needUserns(t)
	const fakerootSet = 0xa80425fb // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
	for _, tc := range []struct {
		name   string
		flags  []string
		script string
		want   uint64
	}{
		{"caller", nil, `cat /proc/self/status`, 0},
		{"fakeroot", []string{"--fakeroot"}, `cat /proc/self/status; chroot / true || echo chroot-failed`, fakerootSet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := mustRun(t, opts{}, append(append([]string{"--rootfs", rootfsDir}, tc.flags...), "sh", "-c", tc.script)...)
			for _, set := range []string{"CapPrm", "CapEff", "CapBnd"} {
				if tc.name == "caller" && set == "CapBnd" {
					continue // the bounding set is moot for a non-root job with no_new_privs
				}
				if got := capLine(t, r.stdout, set); got != tc.want {
					t.Errorf("%s = %#x, want %#x", set, got, tc.want)
				}
			}
			for _, set := range []string{"CapInh", "CapAmb"} {
				if got := capLine(t, r.stdout, set); got != 0 {
					t.Errorf("%s = %#x, want 0", set, got)
				}
			}
			if !strings.Contains(r.stdout, "NoNewPrivs:\t1") {
				t.Errorf("no_new_privs is not set:\n%s", r.stdout)
			}
			if strings.Contains(r.stdout, "chroot-failed") {
				t.Errorf("--fakeroot cannot use its capabilities:\n%s", r)
			}
		})
	}
}

// The job cannot reach the init's pipes through /proc/1/fd, so it cannot
// forge the status hpcrun reports, nor steal forwarded signals.
func TestInitPipesUnreachable(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, flags := range [][]string{nil, {"--fakeroot"}} {
		// A forged report: a 5-byte frame saying "status 42".
		args := append(append([]string{"--rootfs", rootfsDir}, flags...), "sh", "-c",
			`printf '\005\0\0\0\0\052\0\0\0' > /proc/1/fd/4 && echo forged; printf x > /proc/1/fd/3 && echo wrote-control; exit 3`)
		r := run(t, opts{env: []string{"PMI_FD=4"}}, args...)
		if r.code != 3 || strings.Contains(r.stdout, "forged") || strings.Contains(r.stdout, "wrote-control") {
			t.Errorf("%v: the job reached the init's pipes: %s", flags, r)
		}
	}
}

// A filesystem mounted inside the rootfs (a user's squashfuse, say) is
// read-only in the container too.
func TestRootfsSubmountsReadOnly(t *testing.T) {
	t.Parallel()
	needUserns(t)
	if !asOther {
		t.Skip("needs root to mount a filesystem inside the rootfs")
	}
	rootfs := ownedRootfs(t)
	opt := filepath.Join(rootfs, "opt")
	if err := os.Mkdir(opt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", opt, "tmpfs", 0, "mode=777"); err != nil {
		t.Fatalf("mount a tmpfs in the rootfs: %v", err)
	}
	defer syscall.Unmount(opt, syscall.MNT_DETACH)
	r := run(t, opts{}, "--rootfs", rootfs, "sh", "-c", `touch /opt/w && echo wrote`)
	if strings.Contains(r.stdout, "wrote") || r.code == 0 {
		t.Errorf("the job wrote into a filesystem mounted inside the rootfs: %s", r)
	}
	if _, err := os.Stat(filepath.Join(opt, "w")); err == nil {
		t.Errorf("%s/w exists on the host", opt)
	}
}

// suidProbeSource is a static program that prints its uids and
// no_new_privs, then tries each OP:PATH argument (create, write or read)
// and prints "OP PATH: ok", or the errno's name.
const suidProbeSource = `package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	fmt.Printf("uid %d euid %d gid %d egid %d\n", syscall.Getuid(), syscall.Geteuid(), syscall.Getgid(), syscall.Getegid())
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "NoNewPrivs:") {
				fmt.Println(strings.Join(strings.Fields(l), " "))
			}
		}
	}
	for _, a := range os.Args[1:] {
		op, p, _ := strings.Cut(a, ":")
		var f *os.File
		var err error
		switch op {
		case "create":
			if f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
				f.Close()
			}
		case "write":
			if f, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0); err == nil {
				_, err = f.WriteString("written from the container\n")
				f.Close()
			}
		case "read":
			_, err = os.ReadFile(p)
		}
		fmt.Printf("%s %s: %s\n", op, p, errName(err))
	}
}

func errName(err error) string {
	var e syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e) && e == syscall.EACCES:
		return "EACCES"
	case errors.As(err, &e) && e == syscall.EROFS:
		return "EROFS"
	case errors.As(err, &e) && e == syscall.EPERM:
		return "EPERM"
	}
	return err.Error()
}
`

// buildSuidProbe compiles suidProbeSource, static, to dir/suidprobe.
func buildSuidProbe(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go") // go test puts its GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("no go command to build the probe: %v", err)
	}
	src := filepath.Join(dir, "suidprobe.go")
	if err := os.WriteFile(src, []byte(suidProbeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "suidprobe")
	cmd := exec.Command(goBin, "build", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=on")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, b)
	}
	return out
}

// A setuid-root program gains nothing, whether the rootfs is used in
// place (a real setuid-root file on the host) or unpacked from an image:
// it runs with no_new_privs and the caller's uids (0 with --fakeroot, and
// the caller's outside still), and root's host files stay out of reach.
func TestSetuidGainsNothing(t *testing.T) {
	t.Parallel()
	needUserns(t)
	if !asOther {
		t.Skip("needs root to make a setuid-root program and root-owned host files")
	}
	work, err := os.MkdirTemp(baseDir, "suid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	probe := buildSuidProbe(t, work)

	// The rootfs: root's, with /bin/suidprobe setuid root (mode 04755).
	rootfs := filepath.Join(work, "rootfs")
	if err := buildRootfs(rootfs, 0, 0); err != nil {
		t.Fatal(err)
	}
	suid := filepath.Join(rootfs, "bin/suidprobe")
	if err := os.WriteFile(suid, mustRead(t, probe), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(suid); err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("%s is not setuid root: %v %v", suid, fi.Mode(), err)
	}
	// The same tree as an image (mkimage.sh keeps owners and modes).
	image := filepath.Join(work, "suid.tar")
	if b, err := exec.Command(repoPath("examples/mkimage.sh"), rootfs, image).CombinedOutput(); err != nil {
		t.Fatalf("mkimage.sh: %v\n%s", err, b)
	}
	os.Chmod(image, 0o644)

	// Host paths bound in: a dir of the caller's, and root's 0755 dir and
	// 0644 file, bound read-write, so that only permissions stop a write.
	out := tempDirOwned(t)
	rootDir := filepath.Join(work, "root-dir")
	rootFile := filepath.Join(work, "root-file")
	if err := os.Mkdir(rootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootFile, []byte("root's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(rootDir, 0o755)
	os.Chmod(rootFile, 0o644)
	cache := filepath.Join(tempDirOwned(t), "cache")

	for _, tc := range []struct {
		name  string
		flags []string
		euid  int // inside
	}{
		{"rootfs", []string{"--rootfs", rootfs}, testUID},
		{"rootfs fakeroot", []string{"--rootfs", rootfs, "--fakeroot"}, 0},
		{"image", []string{"-q", "--cache", cache, "--image", image}, testUID},
		{"image fakeroot", []string{"-q", "--cache", cache, "--image", image, "--fakeroot"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			made := "made-" + strings.ReplaceAll(tc.name, " ", "-")
			args := append(append([]string{}, tc.flags...),
				"--bind", out+":/out", "--bind", rootDir+":/root-dir", "--bind", rootFile+":/root-file",
				"/bin/suidprobe", "create:/out/"+made, "create:/root-dir/planted", "write:/root-file")
			r := mustRun(t, opts{}, args...)
			if want := fmt.Sprintf("uid %d euid %d ", tc.euid, tc.euid); !strings.Contains(r.stdout, want) {
				t.Errorf("want %q: the setuid bit changed the uids: %s", want, r)
			}
			if !strings.Contains(r.stdout, "NoNewPrivs: 1\n") {
				t.Errorf("no_new_privs is not set: %s", r)
			}
			if !strings.Contains(r.stdout, "create /out/"+made+": ok\n") {
				t.Fatalf("the probe could not write to the caller's dir: %s", r)
			}
			// Its euid is the caller's on the host.
			if fi, err := os.Stat(filepath.Join(out, made)); err != nil {
				t.Errorf("the probe's file is not on the host: %v", err)
			} else if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != testUID {
				t.Errorf("the probe's file belongs to uid %d on the host, want the caller's %d", st.Uid, testUID)
			}
			for _, l := range []string{"create /root-dir/planted: ", "write /root-file: "} {
				if !strings.Contains(r.stdout, l+"EACCES\n") && !strings.Contains(r.stdout, l+"EROFS\n") {
					t.Errorf("want %sEACCES or EROFS: %s", l, r)
				}
			}
		})
	}
	if ents, _ := os.ReadDir(rootDir); len(ents) != 0 {
		t.Errorf("the container wrote into root's %s: %v", rootDir, ents)
	}
	if b := mustRead(t, rootFile); string(b) != "root's\n" {
		t.Errorf("the container changed root's %s: %q", rootFile, b)
	}
}

// The container sees none of the host's processes, even the caller's own:
// its /proc lists only its init and job, and a host pid names nothing
// that it can signal.
func TestHostProcessesHidden(t *testing.T) {
	t.Parallel()
	needUserns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	host := command(ctx, opts{}, "sleep", "60")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer host.Wait()
	defer host.Process.Kill()
	pid := host.Process.Pid
	script := `pid=$1
[ -e /proc/$pid ] && echo "sees /proc/$pid"
for sig in 0 TERM KILL; do kill -$sig $pid && echo "signalled $sig"; done
for d in /proc/[0-9]*; do echo "proc ${d#/proc/} $(cat $d/comm)"; done`
	for _, flags := range [][]string{nil, {"--fakeroot"}} {
		args := append(append([]string{"--rootfs", rootfsDir}, flags...), "sh", "-c", script, "sh", strconv.Itoa(pid))
		r := mustRun(t, opts{}, args...)
		if strings.Contains(r.stdout, "sees") || strings.Contains(r.stdout, "signalled") {
			t.Errorf("%v: the container reached host pid %d: %s", flags, pid, r)
		}
		if n := strings.Count(r.stderr, fmt.Sprintf("can't kill pid %d: No such process", pid)); n != 3 {
			t.Errorf("%v: want 3 kills of pid %d to fail with ESRCH, got %d: %s", flags, pid, n, r)
		}
		var procs []string
		for _, l := range lines(r.stdout) {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "proc" {
				procs = append(procs, f[1]+":"+f[2])
				if f[2] != "hpcrun-init" && f[2] != "sh" && f[2] != "cat" {
					t.Errorf("%v: the container's /proc shows %s", flags, l)
				}
			}
		}
		if len(procs) == 0 || procs[0] != "1:hpcrun-init" {
			t.Errorf("%v: want the container's init as pid 1 in its /proc, got %v", flags, procs)
		}
	}
	// Still alive, not a zombie.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
		t.Errorf("host process %d is gone: %v", pid, err)
	} else if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) == 0 || f[0] == "Z" {
		t.Errorf("host process %d ended: %s", pid, b)
	}
}

// A --bind of root's 0700 dir or 0600 file mounts it, unreadable as on
// the host, even to --fakeroot's root (host root is nobody inside), and
// hpcrun changes neither its modes nor its owners.
func TestUnreadableBindStaysUnreadable(t *testing.T) {
	t.Parallel()
	needUserns(t)
	if !asOther {
		t.Skip("needs root to make files the test user cannot read")
	}
	top, err := os.MkdirTemp(baseDir, "secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	os.Chmod(top, 0o755)
	dir, file := filepath.Join(top, "dir"), filepath.Join(top, "file")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(dir, "f"), file} {
		if err := os.WriteFile(f, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := fingerprint(t, top)
	script := `echo started; id -u
ls /d; cat /d/f; cat /f; echo x >> /f; touch /d/new; chmod 777 /d /f; chown $(id -u) /d /f; cat /d/f /f
ls -ldn /d /f`
	for _, flags := range [][]string{nil, {"--fakeroot"}} {
		args := append(append([]string{"--rootfs", rootfsDir}, flags...),
			"--bind", dir+":/d", "--bind", file+":/f", "sh", "-c", script)
		r := run(t, opts{}, args...)
		if !strings.Contains(r.stdout, "started") {
			t.Fatalf("%v: the job did not start: %s", flags, r)
		}
		if strings.Contains(r.stdout, "secret") {
			t.Errorf("%v: the job read root's secret: %s", flags, r)
		}
		for _, want := range []string{"can't open '/d': Permission denied", "can't open '/d/f': Permission denied",
			"can't open '/f': Permission denied", "can't create /f: Permission denied"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%v: want %q: %s", flags, want, r)
			}
		}
		// Root's files are the overflow uid's inside, even to root there.
		listed := 0
		for _, l := range lines(r.stdout) {
			if f := strings.Fields(l); len(f) > 3 && (strings.HasSuffix(l, " /d") || strings.HasSuffix(l, " /f")) {
				listed++
				if f[2] != "65534" {
					t.Errorf("%v: want root's files owned by 65534 (nobody) inside: %s", flags, l)
				}
			}
		}
		if listed != 2 {
			t.Errorf("%v: ls -ldn /d /f listed %d of them: %s", flags, listed, r)
		}
	}
	assertUnchanged(t, top, before)
}
