package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// noControls fails t when out holds a terminal control character: ESC,
// BEL or any other C0 control but newline and tab, DEL, or a C1 control.
func noControls(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f || r >= 0x80 && r <= 0x9f {
			t.Errorf("%s printed the control character %U raw: %q", what, r, out)
			return
		}
	}
}

// An image index whose platform and annotation hold ESC [2J (clear the
// screen) and an OSC title sequence: the error that names them prints
// them escaped.
func TestImageTextEscaped(t *testing.T) {
	needUserns(t)
	dir := tempDirOwned(t)
	f := genImage{env: []string{"PATH=/bin"}, layers: [][]byte{busyboxLayer(t)}}.oci(t, "v1")
	var idx map[string]any
	if err := json.Unmarshal(f["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	m := idx["manifests"].([]any)[0].(map[string]any)
	m["platform"] = map[string]any{"os": "linux\x1b[2J", "architecture": "evil\x1b]0;pwned\a"}
	m["annotations"] = map[string]any{"org.opencontainers.image.ref.name": "v1\x1b[2J"}
	f["index.json"] = mustJSON(t, idx)
	image := f.writeTar(t, filepath.Join(dir, "escapes.tar"))
	r := run(t, opts{}, "--image", image, "true")
	if r.code != 125 {
		t.Fatalf("want the image refused (125): %s", r)
	}
	noControls(t, "the refusal", r.stderr)
	if !strings.Contains(r.stderr, `\x1b[2J`) {
		t.Errorf("the refusal does not show the platform, escaped: %s", r)
	}
}

// A state.json whose fields hold ESC sequences, planted by the state
// root's owner: `hpcrun list`, as the owner and as root, prints them
// escaped.
func TestStateTextEscaped(t *testing.T) {
	needUserns(t)
	root := filepath.Join(tempDirOwned(t), "state")
	mustRun(t, opts{}, "--root", root, "--rootfs", rootfsDir, "--name", "svc", "--detach", "sleep", "60")
	t.Cleanup(func() { runRaw(opts{}, binPath, "--root", root, "delete", "--force", "svc") })
	p := filepath.Join(root, "svc", "state.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	st["annotations"] = map[string]string{"org.hpcrun.image": "/b\x1b[2J\x1b]0;pwned\a"}
	st["owner"] = "x\u009b6n"
	if err := os.WriteFile(p, mustJSON(t, st), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range []opts{{}, {asRoot: true}} {
		r := run(t, o, "--root", root, "list")
		if r.code != 0 || !strings.Contains(r.stdout, "svc") {
			t.Fatalf("list: %s", r)
		}
		noControls(t, "list", r.stdout)
		if !strings.Contains(r.stdout, `/b\x1b[2J`) {
			t.Errorf("list does not show the image, escaped: %s", r)
		}
	}
}

// A registry whose error text holds ESC [2J (clear the screen) and an OSC
// title sequence, as a JSON error's message and as a plain-text body:
// `hpcrun pull` and a cold `--image docker://` run print its one-line
// error with them escaped.
func TestRegistryTextEscaped(t *testing.T) {
	t.Parallel()
	needUserns(t)
	lr := startRegistry(t)
	const evil = "\x1b[2Jpwned\x1b]0;title\a\u009b6n"
	for _, c := range []struct {
		name, ctype, body string
		status            int
	}{
		{"json error", "application/json", `{"errors":[{"code":"DENIED","message":` + string(mustJSON(t, evil)) + `}]}`, http.StatusInternalServerError},
		{"text body", "text/plain", evil + "\n", http.StatusBadGateway},
	} {
		t.Run(c.name, func(t *testing.T) {
			lr.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				if r.URL.Path == "/v2/" {
					next.ServeHTTP(w, r)
					return
				}
				w.Header().Set("Content-Type", c.ctype)
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			})
			ref := lr.host + "/test/evil:v1"
			for _, args := range [][]string{
				{"pull", "--cache", filepath.Join(tempDirOwned(t), "cache"), ref},
				{"--cache", filepath.Join(tempDirOwned(t), "cache"), "--image", "docker://" + ref, "true"},
			} {
				r := run(t, opts{}, args...)
				if r.code != 125 || len(lines(r.stderr)) != 1 {
					t.Fatalf("%v: want exit 125 and one line: %s", args, r)
				}
				noControls(t, args[0]+" from a hostile registry", r.stderr+r.stdout)
				if !strings.Contains(r.stderr, `\x1b[2Jpwned`) {
					t.Errorf("%v: the error does not show the registry's text, escaped: %s", args, r)
				}
			}
		})
	}
}
