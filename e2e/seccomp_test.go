package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seccompBundle makes a bundle whose process runs script under the
// linux.seccomp given as JSON ("" for none), with noNewPrivileges as nnp.
func seccompBundle(t *testing.T, script, seccomp string, nnp bool) (bundle, root string) {
	t.Helper()
	bundle, root = lifecycleBundle(t, script)
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	spec["process"].(map[string]any)["noNewPrivileges"] = nnp
	// The test's own rootfs takes the directories it makes (its /tmp is
	// the host's).
	spec["root"].(map[string]any)["readonly"] = false
	if seccomp != "" {
		var sc any
		if err := json.Unmarshal([]byte(seccomp), &sc); err != nil {
			t.Fatal(err)
		}
		spec["linux"].(map[string]any)["seccomp"] = sc
	}
	b, _ = json.Marshal(spec)
	writeConfig(t, bundle, b)
	return bundle, root
}

// mkdirErrno makes mkdir fail with EOPNOTSUPP, which nothing else in
// this test could give it, and lets everything else through.
const mkdirErrno = `{"defaultAction": "SCMP_ACT_ALLOW",
	"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
	"syscalls": [
		{"names": ["mkdir", "mkdirat", "no_such_call"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95},
		{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]}`

// A bundle's linux.seccomp filters its process, and each process exec'd
// into the container; a call the filter kills kills the process. Without
// the filter, the same scripts succeed.
func TestSeccompBundle(t *testing.T) {
	t.Parallel()
	needUserns(t)
	const mk = `mkdir /made; echo rc=$?; test -d /made && echo made; true`
	t.Run("errno", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			seccomp, want string
		}{{mkdirErrno, "rc=1\n"}, {"", "rc=0\nmade\n"}} {
			bundle, root := seccompBundle(t, mk, tc.seccomp, true)
			r := lc(t, root, "run", "--bundle", bundle, "errno")
			if r.code != 0 || r.stdout != tc.want {
				t.Errorf("seccomp %v: want %q: %s", tc.seccomp != "", tc.want, r)
			}
			if tc.seccomp != "" && !strings.Contains(r.stderr, "Operation not supported") {
				t.Errorf("want mkdir's EOPNOTSUPP: %s", r)
			}
			if strings.Contains(r.stderr, "seccomp") {
				t.Errorf("a seccomp warning: %s", r)
			}
		}
	})
	t.Run("kill", func(t *testing.T) {
		t.Parallel()
		// Without no_new_privs the kernel takes a filter only from a
		// process with CAP_SYS_ADMIN, which the bundle's does not keep:
		// it must still end up with no_new_privs unset and the spec's
		// capabilities, as without a filter. With process.rlimits too:
		// one shim sets them, installs the filter and drops the rest.
		const kill = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
			{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]}`
		const script = `grep -E '^(NoNewPrivs|Cap(Inh|Prm|Eff|Bnd|Amb)):' /proc/self/status; ulimit -n
(exec mkdir /killed); echo rc=$?; test -d /killed || echo absent`
		// no_new_privs unset, unless this test runs with it set already
		// (kernsim, which fakes an older kernel with a seccomp filter of
		// its own, sets it for everything below it).
		nnp := "NoNewPrivs:\t0"
		if b, _ := os.ReadFile("/proc/self/status"); strings.Contains(string(b), "NoNewPrivs:\t1") {
			nnp = "NoNewPrivs:\t1"
		}
		var privs [2]string
		for i, tc := range []struct{ seccomp, want string }{{kill, "100\nrc=159\nabsent\n"}, {"", "100\nrc=0\n"}} {
			bundle, root := seccompBundle(t, script, tc.seccomp, false)
			var spec map[string]any
			b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
			json.Unmarshal(b, &spec)
			spec["process"].(map[string]any)["rlimits"] = []map[string]any{{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}}
			b, _ = json.Marshal(spec)
			writeConfig(t, bundle, b)
			r := lc(t, root, "run", "--bundle", bundle, "kill")
			status, rest, _ := strings.Cut(r.stdout, "\n1")
			privs[i] = status
			if r.code != 0 || "1"+rest != tc.want || !strings.Contains(status, nnp) {
				t.Errorf("seccomp %v: want %q and %q: %s", tc.seccomp != "", nnp, tc.want, r)
			}
		}
		if privs[0] != privs[1] {
			t.Errorf("privileges with the filter:\n%s\nwithout:\n%s", privs[0], privs[1])
		}
	})
	t.Run("exec", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			seccomp, want string
		}{{mkdirErrno, "rc=1\n"}, {"", "rc=0\nmade\n"}} {
			bundle, root := seccompBundle(t, "sleep 600", tc.seccomp, true)
			mustLC(t, root, "create", "--bundle", bundle, "c")
			mustLC(t, root, "start", "c")
			if r := lc(t, root, "exec", "c", "sh", "-c", mk); r.code != 0 || r.stdout != tc.want {
				t.Errorf("exec, seccomp %v: want %q: %s", tc.seccomp != "", tc.want, r)
			}
			mustLC(t, root, "delete", "--force", "c")
		}
	})
}

// A linux.seccomp that hpcrun cannot apply as written fails create in
// one line, and leaves no container behind.
func TestSeccompBundleRefused(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, tc := range []struct {
		seccomp, want string
	}{
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_MAYBE"}]}`,
			`linux.seccomp: syscalls[0]: unknown action "SCMP_ACT_MAYBE"`},
		{`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
			"args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`, "linux.seccomp: syscalls[0]: argument index 7 is above 5"},
		{`{"defaultAction": "SCMP_ACT_NOTIFY"}`, "SCMP_ACT_NOTIFY needs a seccomp agent"},
	} {
		bundle, root := seccompBundle(t, "true", tc.seccomp, true)
		failsLC(t, root, tc.want, "create", "--bundle", bundle, "bad")
		if r := lc(t, root, "state", "bad"); r.code == 0 {
			t.Errorf("a refused create left a container: %s", r)
		}
	}
}
