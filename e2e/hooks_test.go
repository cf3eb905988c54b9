package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// hookSet is a config's hooks, made for a log file on the host and the
// bundle's rootfs.
type hookSet func(log, rootfs string) map[string][]map[string]any

// hookBundle makes a bundle whose process runs script, with hooks added
// to its config.json, and the directory of the file log bound at
// /hooklog, where the hooks in the container and the process write; the
// host's hooks write to log itself.
func hookBundle(t *testing.T, script string, hooks hookSet, extraMounts ...map[string]any) (bundle, root, log string) {
	t.Helper()
	bundle, root = lifecycleBundle(t, script)
	logDir := tempDirOwned(t)
	log = filepath.Join(logDir, "log")
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs", "hooklog"), 0o755); err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	spec["hooks"] = hooks(log, filepath.Join(bundle, "rootfs"))
	mounts := append(spec["mounts"].([]any), map[string]any{"destination": "/hooklog", "type": "bind", "source": logDir, "options": []string{"rbind"}})
	for _, m := range extraMounts {
		mounts = append(mounts, m)
	}
	spec["mounts"] = mounts
	spec["annotations"] = map[string]string{"org.hpcrun.test": "hooks"}
	b, _ = json.Marshal(spec)
	writeConfig(t, bundle, b)
	return bundle, root, log
}

// logHook is a hook that appends "KIND STATUS PID" to log, from the state
// on its stdin; with say, it echoes "KIND-out" to its stdout too.
func logHook(kind, log string, say bool) map[string]any {
	script := fmt.Sprintf(`s=$(cat); st=$(echo "$s" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p'); pid=$(echo "$s" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
echo "%s $st $pid" >> %s`, kind, log)
	if say {
		script += "; echo " + kind + "-out"
	}
	return map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", script}}
}

// failHook exits with code.
func failHook(code int) map[string]any {
	return map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", "exit " + strconv.Itoa(code)}}
}

func readLog(t *testing.T, log string) []string {
	t.Helper()
	b, _ := os.ReadFile(log)
	return lines(string(b))
}

// Every kind of hook runs at its point of the life-cycle, in order, with
// the state right for it on its stdin: the container's pid as `state`
// shows it, and its status. The hooks write to hpcrun's stderr, not the
// container's: startContainer's and poststart's output is start's.
func TestHooksLifecycle(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root, log := hookBundle(t, "echo job >> /hooklog/log", func(log, _ string) map[string][]map[string]any {
		hooks := map[string][]map[string]any{}
		for _, kind := range []string{"prestart", "createRuntime", "createContainer", "poststart", "poststop"} {
			hooks[kind] = []map[string]any{logHook(kind, log, true)}
		}
		// Run in the container: its path and the log are the container's.
		hooks["startContainer"] = []map[string]any{logHook("startContainer", "/hooklog/log", true)}
		return hooks
	})
	create := mustLC(t, root, "create", "--bundle", bundle, "hk")
	st, pid := ociStatus(t, root, "hk")
	if st != "created" || pid == 0 {
		t.Fatalf("after create: %s, pid %d", st, pid)
	}
	want := []string{fmt.Sprintf("prestart created %d", pid), fmt.Sprintf("createRuntime created %d", pid), fmt.Sprintf("createContainer created %d", pid)}
	if got := readLog(t, log); !slices.Equal(got, want) {
		t.Fatalf("after create, the log is %q, want %q", got, want)
	}
	if !strings.Contains(create.stderr, "prestart-out") || strings.Contains(create.stderr, "warning") {
		t.Errorf("create: want the hooks' output on its stderr, and no warning: %s", create)
	}
	start := mustLC(t, root, "start", "hk")
	if !strings.Contains(start.stderr, "startContainer-out") || !strings.Contains(start.stderr, "poststart-out") ||
		strings.Contains(create.stderr, "startContainer-out") {
		t.Errorf("start: want the startContainer and poststart hooks' output on start's stderr, not create's: %s\ncreate: %s", start, create)
	}
	waitStatus(t, root, "hk", "stopped")
	mustLC(t, root, "delete", "hk")
	got := readLog(t, log)
	want = append(want, fmt.Sprintf("startContainer created %d", pid))
	// The process and poststart race: poststart runs once the process
	// has started, not once it has written.
	if len(got) != 7 || !slices.Equal(got[:4], want) || got[6] != "poststop stopped" ||
		!slices.Contains(got[4:6], "job") || !slices.Contains(got[4:6], fmt.Sprintf("poststart running %d", pid)) {
		t.Errorf("the log is %q, want %q, then job and poststart, then poststop", got, want)
	}
}

// A hook that fails where the runtime spec makes it an error ends the
// container, runs the poststop hooks, and says which hook failed, in one
// line, with 125; where it makes it a warning, the life-cycle goes on and
// the remaining hooks run.
func TestHooksFailures(t *testing.T) {
	t.Parallel()
	needUserns(t)
	for _, tc := range []struct {
		name   string
		kind   string
		hook   map[string]any
		failAt string // the verb that fails; "" for none
		want   string // in the error or warning
	}{
		{"prestart_fail", "prestart", failHook(1), "create", "prestart hook /bin/sh (hooks.prestart[0]) failed: exit status 1"},
		{"createRuntime_fail", "createRuntime", failHook(2), "create", "createRuntime hook /bin/sh (hooks.createRuntime[0]) failed: exit status 2"},
		{"createContainer_fail", "createContainer", failHook(3), "create", "createContainer hook /bin/sh (hooks.createContainer[0]) failed: exit status 3"},
		{"prestart_timeout", "prestart", map[string]any{"path": "/bin/sh", "args": []string{"sh", "-c", "sleep 60"}, "timeout": 1}, "create",
			"prestart hook /bin/sh (hooks.prestart[0]) timed out after 1s and was killed"},
		{"startContainer_fail", "startContainer", failHook(4), "start", "startContainer hook /bin/sh (hooks.startContainer[0]) failed: exit status 4"},
		{"poststart_fail", "poststart", failHook(5), "", "warning: poststart hook /bin/sh (hooks.poststart[0]) failed: exit status 5"},
		{"poststop_fail", "poststop", failHook(6), "", "warning: poststop hook /bin/sh (hooks.poststop[0]) failed: exit status 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The process and the hooks write to logs of their own.
			bundle, root, job := hookBundle(t, "echo job >> /hooklog/log", func(log, _ string) map[string][]map[string]any {
				hlog := log + ".hooks"
				hooks := map[string][]map[string]any{tc.kind: {tc.hook}}
				// The hooks after the failing one: the remaining poststart
				// and poststop hooks run; a failed create's poststop hooks
				// too.
				hooks["poststart"] = append(hooks["poststart"], logHook("poststart", hlog, false))
				hooks["poststop"] = append(hooks["poststop"], logHook("poststop", hlog, false))
				return hooks
			})
			log := job + ".hooks"

			r := lc(t, root, "create", "--bundle", bundle, "hf")
			if tc.failAt == "create" {
				if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
					t.Fatalf("create: want exit 125 and one line with %q: %s", tc.want, r)
				}
				failsLC(t, root, "no such container", "state", "hf")
				if got := readLog(t, log); !slices.Equal(got, []string{"poststop stopped"}) {
					t.Errorf("after a failed create, the log is %q, want the poststop hook alone", got)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("create: %s", r)
			}
			r = lc(t, root, "start", "hf")
			if tc.failAt == "start" {
				if r.code != 125 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
					t.Fatalf("start: want exit 125 and one line with %q: %s", tc.want, r)
				}
				waitStatus(t, root, "hf", "stopped")
				if b, err := os.ReadFile(job); err == nil {
					t.Errorf("the process ran after its startContainer hook failed: %q", b)
				}
				mustLC(t, root, "delete", "hf")
				if got := readLog(t, log); !slices.Equal(got, []string{"poststop stopped"}) {
					t.Errorf("the log is %q, want the poststop hook alone", got)
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("start: %s", r)
			}
			waitStatus(t, root, "hf", "stopped")
			d := mustLC(t, root, "delete", "hf")
			warned := r.stderr + d.stderr
			if strings.Count(warned, "hpcrun: warning:") != 1 || !strings.Contains(warned, tc.want) {
				t.Errorf("want one warning with %q: start: %s\ndelete: %s", tc.want, r, d)
			}
			got := readLog(t, log)
			if len(got) != 2 || !strings.HasPrefix(got[0], "poststart running ") || got[1] != "poststop stopped" {
				t.Errorf("the log is %q, want the other poststart and poststop hooks", got)
			}
			if b, _ := os.ReadFile(job); string(b) != "job\n" {
				t.Errorf("the process wrote %q, want job", b)
			}
		})
	}
}

// Hooks that do real work in the container's mount namespace, rootless:
// prestart hooks on the host write through /proc/PID/root and, as a GPU
// vendor's hook would, through nsenter into the container's user and
// mount namespaces; a createContainer hook writes from inside. Each writes
// into a tmpfs that exists only in the container, under the rootfs path
// (root.path, as a hook reads it from the bundle), and the process reads
// the files; the host's rootfs gets none of them.
func TestHooksWriteIntoContainer(t *testing.T) {
	t.Parallel()
	needUserns(t)
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("this test needs nsenter (util-linux): %v", err)
	}
	pidOf := `pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p')`
	bundle, root, _ := hookBundle(t, "cat /hookdata/a /hookdata/b /hookdata/c", func(_, rootfs string) map[string][]map[string]any {
		return map[string][]map[string]any{
			"prestart": {
				{"path": "/bin/sh", "args": []string{"sh", "-c", pidOf + `; echo by-proc-root > /proc/$pid/root` + rootfs + `/hookdata/a`}},
				{"path": "/bin/sh", "args": []string{"sh", "-c", pidOf + `; echo by-nsenter | ` + nsenter +
					` --user --mount --preserve-credentials -t $pid sh -c 'cat > ` + rootfs + `/hookdata/b'`}},
			},
			"createContainer": {{"path": "/bin/sh", "args": []string{"sh", "-c", "echo by-createContainer > " + rootfs + "/hookdata/c"}}},
		}
	}, map[string]any{"destination": "/hookdata", "type": "tmpfs", "source": "tmpfs", "options": []string{"mode=777"}})
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "hookdata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if asOther {
		os.Chown(filepath.Join(rootfs, "hookdata"), testUID, testGID)
	}
	r := lc(t, root, "run", "--bundle", bundle, "hw")
	if r.code != 0 || r.stdout != "by-proc-root\nby-nsenter\nby-createContainer\n" {
		t.Errorf("want the process to read what the hooks wrote: %s", r)
	}
	if ents, _ := os.ReadDir(filepath.Join(rootfs, "hookdata")); len(ents) != 0 {
		t.Errorf("the hooks wrote into the host's rootfs, not the container's tmpfs: %v", ents)
	}
}

// A hook's path must be absolute and its timeout above zero: create
// refuses the bundle in one line, and makes nothing.
func TestHooksRefused(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root, _ := hookBundle(t, "true", func(_, _ string) map[string][]map[string]any {
		return map[string][]map[string]any{"poststop": {{"path": "bin/true"}}}
	})
	failsLC(t, root, `hooks.poststop[0].path "bin/true" is not an absolute path`, "create", "--bundle", bundle, "hr")
	failsLC(t, root, "no such container", "state", "hr")
	bundle, root, _ = hookBundle(t, "true", func(_, _ string) map[string][]map[string]any {
		return map[string][]map[string]any{"prestart": {{"path": "/bin/true", "timeout": 0}}}
	})
	failsLC(t, root, "hooks.prestart[0].timeout is 0", "create", "--bundle", bundle, "hr")
	// Hooks too large to keep in the container's state: create refuses
	// them, rather than leave a container no verb can read.
	bundle, root, _ = hookBundle(t, "true", func(_, _ string) map[string][]map[string]any {
		env := make([]string, 70)
		for i := range env {
			env[i] = fmt.Sprintf("V%d=%s", i, strings.Repeat("x", 1000))
		}
		return map[string][]map[string]any{"poststop": {{"path": "/bin/true", "env": env}}}
	})
	failsLC(t, root, "config.json's hooks or annotations are too large", "create", "--bundle", bundle, "hr")
	failsLC(t, root, "no such container", "state", "hr")
}

// A startContainer hook gets what the process gets, and no more: its
// capabilities, where the init keeps more; and its status is its own
// even while the init has other children to reap: a process that a
// createContainer hook left behind.
func TestHooksStartContainerIsTheProcesss(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root, _ := hookBundle(t, "grep CapEff /proc/self/status", func(_, _ string) map[string][]map[string]any {
		return map[string][]map[string]any{
			"createContainer": {{"path": "/bin/sh", "args": []string{"sh", "-c", "sleep 100 </dev/null >/dev/null 2>&1 &"}}},
			"startContainer":  {{"path": "/bin/sh", "args": []string{"sh", "-c", "grep CapEff /proc/self/status"}}},
		}
	})
	for i := range 12 {
		id := fmt.Sprintf("sc-%d", i)
		r := lc(t, root, "run", "--bundle", bundle, id)
		if r.code != 0 || r.stderr == "" || r.stderr != r.stdout || !strings.HasPrefix(r.stdout, "CapEff:\t") {
			t.Fatalf("round %d: a startContainer hook: want exit 0 and the process's capabilities (stdout) in the hook's output (stderr): %s", i, r)
		}
	}
	// A seccomp filter without noNewPrivileges: the init keeps its
	// capabilities until the process starts; the hook gets none of them.
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(b, &spec)
	proc := spec["process"].(map[string]any)
	proc["noNewPrivileges"] = false
	proc["capabilities"] = map[string]any{}
	spec["linux"].(map[string]any)["seccomp"] = map[string]any{"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": []any{map[string]any{"names": []string{"mkdirat"}, "action": "SCMP_ACT_ERRNO"}}}
	b, _ = json.Marshal(spec)
	writeConfig(t, bundle, b)
	r := lc(t, root, "run", "--bundle", bundle, "sc-filter")
	if r.code != 0 || r.stdout != "CapEff:\t0000000000000000\n" || r.stderr != r.stdout {
		t.Errorf("with a filter: want the hook with the process's capabilities, none: %s", r)
	}
}
