package e2e

// Bundles that ask for what the runtime-spec lets them ask for get it, or
// a one-line refusal at create, or a warning on hpcrun's stderr: process
// capabilities (with the init out of reach), linux.sysctl,
// linux.rootfsPropagation, process.user, a missing command, and cgroup
// resources.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ociBundle makes a bundle whose process runs script, as `hpcrun spec`
// writes it, changed by edit; and a state root.
func ociBundle(t *testing.T, script string, edit func(spec map[string]any)) (bundle, root string) {
	t.Helper()
	bundle, root = makeBundle(t)
	r := mustRun(t, opts{}, "spec", "--rootfs", filepath.Join(bundle, "rootfs"), "--", "sh", "-c", script)
	var spec map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil {
		t.Fatal(err)
	}
	edit(spec)
	b, _ := json.Marshal(spec)
	writeConfig(t, bundle, b)
	return bundle, root
}

func process(spec map[string]any) map[string]any { return spec["process"].(map[string]any) }
func linux(spec map[string]any) map[string]any   { return spec["linux"].(map[string]any) }

// allCaps is every capability name the project knows, some of which an
// older kernel lacks.
var allCaps = strings.Fields(`CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL
CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE CAP_NET_BROADCAST CAP_NET_ADMIN
CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT
CAP_SYS_ADMIN CAP_SYS_BOOT CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE
CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG CAP_WAKE_ALARM
CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE`)

func setCaps(spec map[string]any, names []string) {
	c := map[string]any{}
	for _, set := range []string{"bounding", "effective", "inheritable", "permitted", "ambient"} {
		c[set] = names
	}
	process(spec)["capabilities"] = c
}

// ptraceProbeSource reports whether it holds CAP_SYS_PTRACE, whether it
// can ptrace a child of its own, and whether it reaches pid 1, the
// container's init: by ptrace, and through /proc/1/mem, environ and fd.
const ptraceProbeSource = `package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

func res(err error) string {
	var e syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e):
		return e.Error()
	}
	return err.Error()
}

func main() {
	status, _ := os.ReadFile("/proc/self/status")
	capable := false
	for _, l := range strings.Split(string(status), "\n") {
		var eff uint64
		if _, err := fmt.Sscanf(l, "CapEff:\t%x", &eff); err == nil {
			capable = eff&(1<<19) != 0
		}
	}
	child := exec.Command("/bin/sleep", "10")
	child.Start()
	errChild := syscall.PtraceAttach(child.Process.Pid)
	child.Process.Kill()
	errInit := syscall.PtraceAttach(1)
	_, errMem := os.Open("/proc/1/mem")
	_, errEnv := os.ReadFile("/proc/1/environ")
	_, errFD := os.Readlink("/proc/1/fd/0")
	fmt.Printf("ptrace-cap=%v child=%s init=%s mem=%s environ=%s fd=%s\n", capable, res(errChild), res(errInit), res(errMem), res(errEnv), res(errFD))
}
`

// A bundle's process gets every capability it asks for, as rootless runc
// grants them, ambient ones included, and so does a process exec'd into
// its container; a capability this kernel lacks is skipped with a warning
// and an unknown name refused at create. A process that holds
// CAP_SYS_PTRACE still cannot reach the container's init.
func TestOCICapabilities(t *testing.T) {
	t.Parallel()
	needUserns(t)
	probe := buildProbe(t, "ptraceprobe", ptraceProbeSource)
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	last, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	mask := uint64(1)<<(last+1) - 1
	// Without Landlock ABI 6 (before Linux 6.12, or under kernsim 4.18 or
	// 5.4) hpcrun cannot fence a process off the init, and withholds
	// CAP_SYS_PTRACE instead.
	abi, _, errno := syscall.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	fence := errno == 0 && abi >= 6
	fenced := "ptrace-cap=true child=ok init=operation not permitted mem=permission denied environ=permission denied fd=permission denied"
	if !fence {
		mask &^= 1 << unix.CAP_SYS_PTRACE
		fenced = "ptrace-cap=false child=ok init=operation not permitted mem=permission denied environ=permission denied fd=permission denied"
	}
	want := fmt.Sprintf("%016x", mask)

	bundle, root := ociBundle(t, `{ grep Cap /proc/self/status; /bin/ptraceprobe; } >/out.tmp 2>&1; mv /out.tmp /out; sleep 30`, func(spec map[string]any) {
		setCaps(spec, allCaps)
		process(spec)["noNewPrivileges"] = false
		spec["root"].(map[string]any)["readonly"] = false
	})
	if err := os.WriteFile(filepath.Join(bundle, "rootfs/bin/ptraceprobe"), mustRead(t, probe), 0o755); err != nil {
		t.Fatal(err)
	}
	id := "caps-1"
	t.Cleanup(func() { lc(t, root, "delete", "--force", id) })
	r := lc(t, root, "run", "-d", "--bundle", bundle, id)
	if r.code != 0 {
		t.Fatalf("run -d: %s", r)
	}
	if last < 40 && !strings.Contains(r.stderr, "CAP_CHECKPOINT_RESTORE (not in this kernel)") {
		t.Errorf("no warning for the capabilities this kernel lacks: %s", r)
	}
	if !fence && !strings.Contains(r.stderr, "CAP_SYS_PTRACE (this kernel cannot fence") {
		t.Errorf("no warning for CAP_SYS_PTRACE withheld: %s", r)
	}
	log := waitFile(t, filepath.Join(bundle, "rootfs/out"))
	out := strings.Fields(log)
	for _, set := range []string{"CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"} {
		if i := indexOf(out, set); i < 0 || i+1 >= len(out) || out[i+1] != want {
			t.Errorf("%s not %s: %q", set, want, out)
		}
	}
	if got := lines(log)[len(lines(log))-1]; got != fenced {
		t.Errorf("the process reaches the init:\n got %s\nwant %s", got, fenced)
	}
	// exec'd: the same sets, and fenced too.
	r = mustLC(t, root, "exec", id, "sh", "-c", "grep CapAmb /proc/self/status; /bin/ptraceprobe")
	if !strings.Contains(r.stdout, "CapAmb:\t"+want) || !strings.Contains(r.stdout, fenced) {
		t.Errorf("exec'd process:\n%s\nwant CapAmb %s and %s", r.stdout, want, fenced)
	}

	// An unknown name: one line at create.
	bundle, root = ociBundle(t, "true", func(spec map[string]any) { setCaps(spec, []string{"CAP_CHOWN", "CAP_TEST"}) })
	failsLC(t, root, `unknown capability "CAP_TEST"`, "create", "--bundle", bundle, "caps-bad")
}

// waitFile waits for file p to appear and returns it.
func waitFile(t *testing.T, p string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(p); err == nil {
			return string(b)
		}
	}
	t.Fatalf("no %s after 10s", p)
	return ""
}

// buildProbe compiles source, static, to a program in a new directory.
func buildProbe(t *testing.T, name, source string) string {
	t.Helper()
	dir := t.TempDir()
	goBin, err := exec.LookPath("go") // go test puts its GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("no go command to build the probe: %v", err)
	}
	src := filepath.Join(dir, name+".go")
	if err := os.WriteFile(src, []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command(goBin, "build", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=on")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the probe: %v\n%s", err, b)
	}
	return out
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// linux.sysctl: a net.* key is set in the container's own network
// namespace; one that no namespace of the container's scopes, or a net.*
// key without a network namespace, is refused at create in one line.
func TestOCISysctl(t *testing.T) {
	t.Parallel()
	needUserns(t)
	withNetns := func(sysctl map[string]string) func(map[string]any) {
		return func(spec map[string]any) {
			l := linux(spec)
			l["namespaces"] = append(l["namespaces"].([]any), map[string]any{"type": "network"}, map[string]any{"type": "ipc"})
			l["sysctl"] = sysctl
		}
	}
	bundle, root := ociBundle(t, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni", withNetns(map[string]string{"net.ipv4.ip_forward": "1", "kernel/shmmni": "1234"}))
	if r := lc(t, root, "run", "--bundle", bundle, "sysctl-1"); r.code != 0 || strings.Fields(r.stdout)[0] != "1" || strings.Fields(r.stdout)[1] != "1234" {
		t.Errorf("net.ipv4.ip_forward=1, kernel.shmmni=1234: %s", r)
	}
	bundle, root = ociBundle(t, "true", withNetns(map[string]string{"kernel.pid_max": "4096"}))
	failsLC(t, root, "kernel.pid_max is not scoped by a namespace of the container's", "create", "--bundle", bundle, "sysctl-2")
	bundle, root = ociBundle(t, "true", withNetns(map[string]string{"net.ipv4/../../kernel/pid_max": "4096"}))
	failsLC(t, root, "is not a sysctl key", "create", "--bundle", bundle, "sysctl-3")
	bundle, root = ociBundle(t, "true", func(spec map[string]any) { linux(spec)["sysctl"] = map[string]string{"net.ipv4.ip_forward": "1"} })
	failsLC(t, root, "net.ipv4.ip_forward needs a network namespace", "create", "--bundle", bundle, "sysctl-4")
}

// linux.rootfsPropagation applies to the container's /: shared exposes a
// later mount in a bind of /, private does not, unbindable refuses the
// bind; an unknown mode is refused at create.
func TestOCIRootfsPropagation(t *testing.T) {
	t.Parallel()
	needUserns(t)
	script := `mkdir /t /m /x && touch /x/f && mount --rbind / /t || { echo bind-refused; exit; }
mount --bind /x /m && if test -e /t/m/f; then echo exposed; else echo hidden; fi`
	for mode, want := range map[string]string{"shared": "exposed", "private": "hidden", "slave": "hidden", "unbindable": "bind-refused"} {
		bundle, root := ociBundle(t, script, func(spec map[string]any) {
			setCaps(spec, []string{"CAP_SYS_ADMIN"})
			spec["root"].(map[string]any)["readonly"] = false
			linux(spec)["rootfsPropagation"] = mode
		})
		if r := lc(t, root, "run", "--bundle", bundle, "prop-"+mode); r.code != 0 || strings.TrimSpace(r.stdout) != want {
			t.Errorf("rootfsPropagation %s: want %s: %s", mode, want, r)
		}
	}
	bundle, root := ociBundle(t, "true", func(spec map[string]any) { linux(spec)["rootfsPropagation"] = "sideways" })
	failsLC(t, root, `linux.rootfsPropagation: unknown mode "sideways"`, "create", "--bundle", bundle, "prop-bad")
}

// process.user: a uid the maps leave out is refused at create, saying
// what can be mapped; supplementary groups, which cannot be set, are
// named in a warning.
func TestOCIProcessUser(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root := ociBundle(t, "true", func(spec map[string]any) {
		process(spec)["user"] = map[string]any{"uid": 10, "gid": 0}
		linux(spec)["uidMappings"] = []idMap{{ContainerID: 0, HostID: testUID, Size: 1}}
		linux(spec)["gidMappings"] = []idMap{{ContainerID: 0, HostID: testGID, Size: 1}}
	})
	failsLC(t, root, "process.user.uid 10 is not mapped by linux.uidMappings: rootless, only your own uid", "create", "--bundle", bundle, "user-1")
	bundle, root = ociBundle(t, "id -G", func(spec map[string]any) {
		process(spec)["user"] = map[string]any{"uid": 10, "gid": 10, "additionalGids": []int{5, 10, 6}}
		delete(linux(spec), "uidMappings")
		delete(linux(spec), "gidMappings")
	})
	r := lc(t, root, "run", "--bundle", bundle, "user-2")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "10" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "warning: config.json asks for process.user.additionalGids 5/6 (") {
		t.Errorf("additionalGids: want one warning naming 5/6: %s", r)
	}
}

// A missing or non-executable command is reported by create, which fails
// in one line with 127 or 126, and leaves no container; the lookup
// resolves links inside the container's root.
func TestOCIMissingCommand(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"/bin/no-such"}, 127, "/bin/no-such: command not found"},
		{[]string{"no-such"}, 127, "no-such: command not found"},
		{[]string{"/etc/passwd"}, 126, "/etc/passwd: command not executable"},
		{[]string{"/bin"}, 126, "/bin: command not executable"},
		// Absolute inside the rootfs: /bin/sh of the container, not the host's.
		{[]string{"/bin/abs-link"}, 127, "/bin/abs-link: command not found"},
	} {
		bundle, root := ociBundle(t, "true", func(spec map[string]any) { process(spec)["args"] = c.args })
		// A link that leads out of the rootfs on the host's view, and to
		// nothing inside it.
		os.Symlink("/usr/bin/env", filepath.Join(bundle, "rootfs/bin/abs-link"))
		r := lc(t, root, "create", "--bundle", bundle, "cmd-1")
		if r.code != c.code || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("create %q: want %d and one line with %q: %s", c.args, c.code, c.want, r)
		}
		if r := lc(t, root, "list", "-q"); strings.TrimSpace(r.stdout) != "" {
			lc(t, root, "delete", "--force", "cmd-1")
			t.Errorf("create %q left a container: %s", c.args, r)
		}
	}
}

// Cgroup limits and the device cgroup list, which hpcrun cannot apply
// without a delegated cgroup (this host's v2 tree has no controllers),
// are named in one warning line; the process runs.
func TestOCICgroupResources(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root := ociBundle(t, "echo ran", func(spec map[string]any) {
		linux(spec)["resources"] = map[string]any{
			"memory":  map[string]any{"limit": 1 << 30},
			"pids":    map[string]any{"limit": 100},
			"devices": []any{map[string]any{"allow": false, "access": "rwm"}},
		}
	})
	r := lc(t, root, "run", "--bundle", bundle, "cg-1")
	if r.code != 0 || r.stdout != "ran\n" || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "linux.resources.memory (") || !strings.Contains(r.stderr, "linux.resources.pids (") ||
		!strings.Contains(r.stderr, "linux.resources.devices (") {
		t.Errorf("want one warning naming memory, pids and devices: %s", r)
	}
}

// start reports a job that cannot start, also when process.rlimits start
// it through hpcrun's shim (every bundle runc writes sets RLIMIT_NOFILE):
// a command gone between create and start fails start with 127 in one
// line, as it does without limits, instead of a start that succeeds and a
// job that ends at once; and start returns once the job runs.
func TestOCIStartReportsWhatTheShimCannotRun(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, limits := range []bool{false, true} {
		bundle, root := ociBundle(t, "", func(spec map[string]any) {
			process(spec)["args"] = []string{"/bin/gone", "30"}
			if limits {
				process(spec)["rlimits"] = []any{map[string]any{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}}
			}
		})
		// A script: busybox, linked, would take "gone" for its applet.
		gone := filepath.Join(bundle, "rootfs/bin/gone")
		script := []byte("#!/bin/sh\nexec sleep \"$@\"\n")
		if err := os.WriteFile(gone, script, 0o755); err != nil {
			t.Fatal(err)
		}
		mustLC(t, root, "create", "--bundle", bundle, "gone")
		os.Remove(gone)
		r := lc(t, root, "start", "gone")
		if r.code != 127 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "/bin/gone: command not found") {
			t.Errorf("rlimits %v: start of a command gone since create: want 127 and one line: %s", limits, r)
		}
		lc(t, root, "delete", "--force", "gone")
		// And one that runs: start returns with the job's own program
		// in place of the shim.
		os.WriteFile(gone, script, 0o755)
		mustLC(t, root, "create", "--bundle", bundle, "runs")
		mustLC(t, root, "start", "runs")
		_, init := ociStatus(t, root, "runs")
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", init, init))
		f := strings.Fields(string(kids))
		exe := ""
		if len(f) == 1 {
			exe, _ = os.Readlink("/proc/" + f[0] + "/exe")
		}
		lc(t, root, "delete", "--force", "runs")
		if filepath.Base(exe) != "busybox" {
			t.Errorf("rlimits %v: after start, the init's children %q, the job runs %q, not busybox", limits, kids, exe)
		}
	}
}
