package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func intp(n int) *int { return &n }

func TestHookState(t *testing.T) {
	s := &State{ID: "c1", Bundle: "/b", Annotations: map[string]string{"k": "v"}}
	for _, tc := range []struct {
		status string
		pid    int
		want   string
	}{
		{StatusCreated, 42, `{"ociVersion":"` + SpecVersion + `","id":"c1","status":"created","pid":42,"bundle":"/b","annotations":{"k":"v"}}`},
		{StatusRunning, 42, `{"ociVersion":"` + SpecVersion + `","id":"c1","status":"running","pid":42,"bundle":"/b","annotations":{"k":"v"}}`},
		// Stopped: there is no process to name.
		{StatusStopped, 42, `{"ociVersion":"` + SpecVersion + `","id":"c1","status":"stopped","bundle":"/b","annotations":{"k":"v"}}`},
	} {
		if got := string(hookState(s, tc.status, tc.pid)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.status, got, tc.want)
		}
	}
}

func TestCheckHooks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hooks *specs.Hooks
		want  string // "" for none
	}{
		{"none", nil, ""},
		{"fine", &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true", Timeout: intp(3)}}}, ""},
		{"relative", &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/true"}, {Path: "bin/true"}}}, `hooks.createRuntime[1].path "bin/true" is not an absolute path`},
		{"empty", &specs.Hooks{StartContainer: []specs.Hook{{}}}, `hooks.startContainer[0].path "" is not an absolute path`},
		{"zero timeout", &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true", Timeout: intp(0)}}}, "hooks.prestart[0].timeout is 0"},
		{"negative timeout", &specs.Hooks{Poststart: []specs.Hook{{Path: "/bin/true", Timeout: intp(-1)}}}, "hooks.poststart[0].timeout is -1"},
		{"a timeout past a day", &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true", Timeout: intp(1 << 40)}}}, "hooks.poststop[0].timeout is 1099511627776"},
	} {
		err := checkHooks(tc.hooks)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// Each hook gets its args (args[0] as argv[0]), its env alone, and the
// state on stdin; its output goes where it is told.
func TestRunHook(t *testing.T) {
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for _, tc := range []struct {
		name string
		hook specs.Hook
		want string // the output
		err  string // "" for success
	}{
		{"argv and env", specs.Hook{Path: "/bin/sh", Args: []string{"hook-name", "-c", `echo "$(head -c 9 /proc/$$/cmdline) $0 $K $(env | wc -l)"`, "arg1"}, Env: []string{"K=v"}},
			"hook-name arg1 v 2\n", ""}, // K and the PWD that sh sets: nothing else
		{"stdin is the state", specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "cat"}}, "{\"id\":\"x\"}\n", ""},
		// Its output cannot drive the caller's terminal; it has a session
		// of its own (no terminal to type into), in /.
		{"escaped", specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `printf 'a\033]0;x\007b\n'`}}, "a\\x1b]0;x\\x07b\n", ""},
		{"a session of its own, in /", specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `set -- $(cat /proc/$$/stat); [ "${6}" = $$ ] && pwd`}}, "/\n", ""},
		{"no args: argv[0] is the path", specs.Hook{Path: "/bin/true"}, "", ""},
		{"fails", specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "echo on-stderr >&2; exit 3"}},
			"on-stderr\n", "poststop hook /bin/sh (hooks.poststop[0]) failed: exit status 3"},
		{"missing", specs.Hook{Path: dir + "/nope"}, "", "poststop hook " + dir + "/nope (hooks.poststop[0]) failed: fork/exec"},
		// The hook's child holds no pipe of ours: the kill of its group
		// ends the wait at once.
		{"timeout", specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "sleep 60 & sleep 60"}, Timeout: intp(1)},
			"", "poststop hook /bin/sh (hooks.poststop[0]) timed out after 1s and was killed"},
		{"within its timeout", specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "echo quick"}, Timeout: intp(30)}, "quick\n", ""},
	} {
		out.Truncate(0)
		out.Seek(0, 0)
		err := runHook(hookPoststop, 0, tc.hook, []byte(`{"id":"x"}`), out)

		if (err == nil) != (tc.err == "") || err != nil && !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("%s: got error %v, want %q", tc.name, err, tc.err)
		}
		if b, _ := os.ReadFile(out.Name()); string(b) != tc.want {
			t.Errorf("%s: output %q, want %q", tc.name, b, tc.want)
		}
	}
}

// Failure per kind: the creation hooks stop at the first failure; poststart
// and poststop run every hook and report each failure.
func TestRunHooksFailures(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	hook := func(name string, code int) specs.Hook {
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "echo " + name + " >> " + log + "; exit " + string(rune('0'+code))}}
	}
	hooks := []specs.Hook{hook("a", 0), hook("b", 1), hook("c", 0), hook("d", 2)}
	for _, tc := range []struct {
		kind      string
		keepGoing bool
		ran       string
		failed    int
	}{
		{hookPrestart, false, "a b", 1},
		{hookCreateRuntime, false, "a b", 1},
		{hookCreateContainer, false, "a b", 1},
		{hookStartContainer, false, "a b", 1},
		{hookPoststart, true, "a b c d", 2},
		{hookPoststop, true, "a b c d", 2},
	} {
		os.Remove(log)
		err := runHooks(tc.kind, hooks, nil, os.Stderr, tc.keepGoing)
		b, _ := os.ReadFile(log)
		if got := strings.Join(strings.Fields(string(b)), " "); got != tc.ran {
			t.Errorf("%s: ran %q, want %q", tc.kind, got, tc.ran)
		}
		errs := unwrapAll(err)
		if err == nil || len(errs) != tc.failed {
			t.Errorf("%s: got %v, want %d failures", tc.kind, err, tc.failed)
			continue
		}
		var he *hookError
		if !errors.As(errs[0], &he) || he.kind != tc.kind || he.index != 1 {
			t.Errorf("%s: first failure %v, want hooks.%s[1]", tc.kind, errs[0], tc.kind)
		}
	}
}

// What crosses to the init: the in-container hooks and the state they
// read, and whether it stops for the caller's hooks.
func TestHookRunForInit(t *testing.T) {
	s := &State{ID: "c1", Bundle: "/b", Pid: 7}
	cc := []specs.Hook{{Path: "/cc"}}
	sc := []specs.Hook{{Path: "/sc"}}
	for _, tc := range []struct {
		name  string
		hooks *specs.Hooks
		none  bool
		sync  bool
		files int
	}{
		{"none", nil, true, false, 0},
		{"poststart and poststop only", &specs.Hooks{Poststart: sc, Poststop: sc}, true, false, 0},
		{"prestart", &specs.Hooks{Prestart: sc}, false, true, 1},
		{"createRuntime", &specs.Hooks{CreateRuntime: sc}, false, true, 1},
		{"createContainer", &specs.Hooks{CreateContainer: cc}, false, true, 1},
		{"startContainer only", &specs.Hooks{StartContainer: sc}, false, false, 0},
	} {
		r := newHookRun(&Config{Spec: &specs.Spec{Hooks: tc.hooks}}, s)
		if (r == nil) != tc.none {
			t.Errorf("%s: hookRun %v", tc.name, r)
			continue
		}
		if got := len(r.files()); got != tc.files {
			t.Errorf("%s: %d files, want %d", tc.name, got, tc.files)
		}
		if r == nil {
			continue
		}
		ic := &initConfig{Hooks: r.forInit(9)}
		h, err := ic.decodeHooks()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var st specs.State
		json.Unmarshal(h.State, &st)
		for _, hk := range append(h.CreateContainer, h.StartContainer...) {
			if len(hk.Env) == 0 || len(hk.Env) != len(os.Environ()) {
				t.Errorf("%s: an in-container hook without env gets %d variables, want the caller's %d", tc.name, len(hk.Env), len(os.Environ()))
			}
		}
		if h.Sync != tc.sync || (h.Out == 9) != tc.sync || st.Pid != 7 || st.Status != StatusCreated ||
			len(h.CreateContainer) != len(tc.hooks.CreateContainer) || len(h.StartContainer) != len(tc.hooks.StartContainer) {
			t.Errorf("%s: init's hooks %+v, state %+v", tc.name, h, st)
		}
	}
}

// Root acting for a container's owner (Slurm's delete) runs the owner's
// hooks with PATH alone of its environment, and for ownerHookTimeout at
// most, whatever the hook asks.
func TestRunHookForOwner(t *testing.T) {
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	actingForOwner, ownerHookTimeout = true, 1
	defer func() { actingForOwner, ownerHookTimeout = false, 30 }()
	t.Setenv("SECRET_OF_ROOT", "x")
	err = runHook(hookPoststop, 0, specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `echo "$PATH" $(env | grep -c SECRET); sleep 60`}, Timeout: intp(600)}, nil, out)
	if err == nil || !strings.Contains(err.Error(), "timed out after 1s") {
		t.Errorf("got %v, want a timeout after 1s", err)
	}
	if b, _ := os.ReadFile(out.Name()); string(b) != DefaultPath+" 0\n" {
		t.Errorf("output %q, want PATH alone", b)
	}
}
