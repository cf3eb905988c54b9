package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ociSpec is the part of an OCI runtime-spec config.json the test looks at.
type ociSpec struct {
	OCIVersion string `json:"ociVersion"`
	Process    *struct {
		Terminal bool                   `json:"terminal"`
		User     struct{ UID, GID int } `json:"user"`
		Args     []string               `json:"args"`
		Cwd      string                 `json:"cwd"`
	} `json:"process"`
	Root *struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly"`
	} `json:"root"`
	Mounts []struct {
		Destination string `json:"destination"`
		Type        string `json:"type"`
		Source      string `json:"source"`
	} `json:"mounts"`
	Linux *struct {
		UIDMappings []idMap `json:"uidMappings"`
		GIDMappings []idMap `json:"gidMappings"`
		Namespaces  []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"namespaces"`
	} `json:"linux"`
}

type idMap struct {
	ContainerID int `json:"containerID"`
	HostID      int `json:"hostID"`
	Size        int `json:"size"`
}

// makeBundle makes a runc bundle owned by the test user with a copy of the
// busybox rootfs, and a runc state root.
func makeBundle(t *testing.T) (bundle, state string) {
	t.Helper()
	bundle = tempDirOwned(t)
	if err := buildRootfs(filepath.Join(bundle, "rootfs"), testUID, testGID); err != nil {
		t.Fatal(err)
	}
	state = filepath.Join(tempDirOwned(t), "runc")
	if err := mkdirOwned(state); err != nil {
		t.Fatal(err)
	}
	os.Chmod(state, 0o700)
	return bundle, state
}

func writeConfig(t *testing.T, bundle string, config []byte) {
	t.Helper()
	p := filepath.Join(bundle, "config.json")
	if err := os.WriteFile(p, config, 0o644); err != nil {
		t.Fatal(err)
	}
	if asOther {
		os.Chown(p, testUID, testGID)
	}
}

// runcRun runs the bundle with rootless runc as the test user.
func runcRun(t *testing.T, runc, bundle, state, id string) result {
	t.Helper()
	t.Cleanup(func() { runRaw(opts{}, runc, "--root", state, "delete", "--force", id) })
	return runRaw(opts{env: []string{"XDG_RUNTIME_DIR=" + state}}, runc, "--root", state, "run", "--bundle", bundle, id)
}

// TestSpecRunsUnderRunc checks that `hpcrun spec` produces a config.json that
// rootless runc accepts and runs. A control bundle from `runc spec --rootless`
// first proves that rootless runc works here at all.
func TestSpecRunsUnderRunc(t *testing.T) {
	t.Parallel()
	needUserns(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	jobArgs := []string{"sh", "-c", "id -u; echo ok"}

	// Control: runc's own rootless spec, with our command and no terminal.
	ctlBundle, ctlState := makeBundle(t)
	if r := runRaw(opts{dir: ctlBundle}, runc, "spec", "--rootless"); r.code != 0 {
		t.Fatalf("runc spec --rootless: %s", r)
	}
	var ctl map[string]any
	b, err := os.ReadFile(filepath.Join(ctlBundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &ctl); err != nil {
		t.Fatal(err)
	}
	proc := ctl["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = jobArgs
	b, _ = json.MarshalIndent(ctl, "", "\t")
	writeConfig(t, ctlBundle, b)
	if r := runcRun(t, runc, ctlBundle, ctlState, fmt.Sprintf("e2e-ctl-%d", os.Getpid())); r.code != 0 || !strings.Contains(r.stdout, "ok") {
		if requireUserns {
			t.Fatalf("HPCRUN_TEST_REQUIRE_USERNS=1 but rootless runc fails with its own spec: %s", r)
		}
		t.Skipf("rootless runc does not work here even with its own spec, so hpcrun's cannot be judged: %s", r)
	}

	bundle, state := makeBundle(t)
	r := run(t, opts{}, append([]string{"spec", "--rootfs", filepath.Join(bundle, "rootfs"), "--"}, jobArgs...)...)
	if r.code != 0 {
		t.Fatalf("hpcrun spec: %s", r)
	}
	writeConfig(t, bundle, []byte(r.stdout))
	t.Logf("hpcrun spec output:\n%s", r.stdout)

	var spec ociSpec
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil {
		t.Fatalf("hpcrun spec output is not JSON: %v", err)
	}
	checkSpec(t, spec, filepath.Join(bundle, "rootfs"), jobArgs)

	rr := runcRun(t, runc, bundle, state, fmt.Sprintf("e2e-%d", os.Getpid()))
	out := lines(rr.stdout)
	if rr.code != 0 || len(out) != 2 || out[1] != "ok" {
		t.Fatalf("rootless runc rejected or failed hpcrun's spec: %s", rr)
	}
	// runc 1.1 refuses a user namespace without a mapping for uid 0 ("User
	// namespaces enabled, but no user mapping found."), so hpcrun's spec
	// maps the caller to root, as its help says; the job sees that uid.
	if spec.Process != nil && out[0] != strconv.Itoa(spec.Process.User.UID) {
		t.Errorf("id -u under runc = %s, want process.user.uid %d", out[0], spec.Process.User.UID)
	}
}

func checkSpec(t *testing.T, spec ociSpec, rootfs string, args []string) {
	t.Helper()
	if spec.OCIVersion == "" {
		t.Errorf("spec has no ociVersion")
	}
	if spec.Root == nil || spec.Root.Path != rootfs {
		t.Errorf("root.path: want absolute %q, got %+v", rootfs, spec.Root)
	}
	if spec.Process == nil || strings.Join(spec.Process.Args, "\x00") != strings.Join(args, "\x00") {
		t.Errorf("process.args: want %q, got %+v", args, spec.Process)
	}
	if spec.Linux == nil {
		t.Fatalf("spec has no linux section")
	}
	ns := map[string]bool{}
	for _, n := range spec.Linux.Namespaces {
		ns[n.Type] = true
	}
	for _, want := range []string{"user", "mount", "pid"} {
		if !ns[want] {
			t.Errorf("linux.namespaces lacks %q: %+v", want, spec.Linux.Namespaces)
		}
	}
	hasHost := func(m []idMap, id int) bool {
		for _, e := range m {
			if id >= e.HostID && id < e.HostID+e.Size {
				return true
			}
		}
		return false
	}
	if spec.Process != nil {
		mapped := false
		for _, e := range spec.Linux.UIDMappings {
			if spec.Process.User.UID >= e.ContainerID && spec.Process.User.UID < e.ContainerID+e.Size {
				mapped = true
			}
		}
		if !mapped {
			t.Errorf("process.user.uid %d is not mapped by uidMappings %+v", spec.Process.User.UID, spec.Linux.UIDMappings)
		}
	}
	if len(spec.Linux.UIDMappings) == 0 || !hasHost(spec.Linux.UIDMappings, testUID) {
		t.Errorf("uidMappings %+v do not map the caller's uid %d", spec.Linux.UIDMappings, testUID)
	}
	if len(spec.Linux.GIDMappings) == 0 || !hasHost(spec.Linux.GIDMappings, testGID) {
		t.Errorf("gidMappings %+v do not map the caller's gid %d", spec.Linux.GIDMappings, testGID)
	}
	if len(spec.Mounts) == 0 {
		t.Errorf("spec has no mounts")
	}
}
