package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hpcrun/hpcrun/internal/testregistry"
)

// localRegistry is an OCI registry the test process serves on 127.0.0.1.
type localRegistry struct {
	*testregistry.Registry
	host string
}

func startRegistry(t *testing.T) *localRegistry {
	t.Helper()
	r := testregistry.Start(t)
	return &localRegistry{Registry: r, host: r.Host}
}

func (lr *localRegistry) setHook(h testregistry.Hook) { lr.SetHook(h) }

// pushArchive pushes the one image of an OCI archive to repoTag.
func (lr *localRegistry) pushArchive(t *testing.T, archive, repoTag string) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		b, _ := io.ReadAll(tr)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(lr.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	var ropts []remote.Option
	if lr.Client != nil {
		ropts = append(ropts, remote.WithTransport(lr.Client.Transport))
	}
	if err := remote.Write(ref, img, ropts...); err != nil {
		t.Fatal(err)
	}
}

// hpcrun pull and --image docker:// against a local registry: pull then a
// run without the network, -o for an offline cluster, a 404, a registry
// that wants a login, and a pull killed halfway that the next one resumes.
func TestPull(t *testing.T) {
	t.Parallel()
	needUserns(t)
	lr := startRegistry(t)
	lr.pushArchive(t, busyboxImage(t), "test/busybox:v1")
	ref := lr.host + "/test/busybox:v1"

	cache := filepath.Join(tempDirOwned(t), "cache")
	r := mustRun(t, opts{}, "pull", "--cache", cache, ref)
	if !strings.Contains(r.stdout, "pulled "+ref) || !strings.Contains(r.stderr, "pulling blob") {
		t.Errorf("pull: %s", r)
	}
	// The registry is gone: a run finds the image in the cache.
	lr.setHook(func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	r = mustRun(t, opts{}, "--cache", cache, "--image", "docker://"+ref, "sh", "-c", "echo ran; echo $IMAGE_VAR")
	if r.stdout != "ran\nfrom-image\n" || strings.Contains(r.stderr, "unpacking") {
		t.Errorf("warm run of docker://%s: %s", ref, r)
	}
	// ... but a pull asks the registry, and says what failed, in one line.
	r = run(t, opts{}, "pull", "--cache", cache, ref)
	if r.code != 125 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 2 || !strings.Contains(r.stderr, "500") {
		t.Errorf("pull from a failing registry: %s", r)
	}
	lr.setHook(nil)

	t.Run("cold run", func(t *testing.T) {
		c := filepath.Join(tempDirOwned(t), "cache")
		r := mustRun(t, opts{}, "--cache", c, "--image", "docker://"+ref, "sh", "-c", "echo cold")
		if !strings.Contains(r.stderr, "unpacking") {
			t.Errorf("cold run: %s", r)
		}
	})
	t.Run("archive for an offline cluster", func(t *testing.T) {
		dir := tempDirOwned(t)
		mustRun(t, opts{dir: dir}, "pull", "--cache", filepath.Join(dir, "c1"), "-o", "bb.tar", "docker://"+ref)
		r := mustRun(t, opts{dir: dir}, "--cache", filepath.Join(dir, "c2"), "--image", "bb.tar", "sh", "-c", "echo offline")
		if r.stdout != "offline\n" {
			t.Errorf("run of the pulled archive: %s", r)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, ".bb.tar.tmp-*")); len(m) > 0 {
			t.Errorf("left behind: %v", m)
		}
	})
	t.Run("not found", func(t *testing.T) {
		r := run(t, opts{}, "pull", "--cache", filepath.Join(tempDirOwned(t), "c"), lr.host+"/test/nope:v1")
		if r.code != 125 || !strings.Contains(r.stderr, "404") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("pull of a missing image: %s", r)
		}
		r = run(t, opts{}, "pull", "Bad/Name")
		if r.code != 125 || !strings.Contains(r.stderr, "REPOSITORY") {
			t.Errorf("pull of a bad name: %s", r)
		}
	})
}

func TestPullLogin(t *testing.T) {
	t.Parallel()
	needUserns(t)
	lr := startRegistry(t)
	lr.pushArchive(t, busyboxImage(t), "private/bb:v1")
	lr.setHook(testregistry.BasicAuth("alice", "s3cret"))
	ref := lr.host + "/private/bb:v1"
	conf := tempDirOwned(t)
	env := []string{"DOCKER_CONFIG=" + conf}
	cache := filepath.Join(tempDirOwned(t), "cache")

	r := run(t, opts{env: env}, "pull", "--cache", cache, ref)
	if r.code != 125 || !strings.Contains(r.stderr, "hpcrun login "+lr.host) {
		t.Errorf("pull without a login: %s", r)
	}
	r = run(t, opts{env: env, stdin: "wrong\n"}, "login", "--cache", cache, "-u", "alice", "--password-stdin", lr.host)
	if r.code != 125 || !strings.Contains(r.stderr, "refused") {
		t.Errorf("login with a wrong password: %s", r)
	}
	if _, err := os.Stat(filepath.Join(conf, "config.json")); err == nil {
		t.Errorf("a failed login stored credentials")
	}
	mustRun(t, opts{env: env, stdin: "s3cret\n"}, "login", "--cache", cache, "-u", "alice", "--password-stdin", lr.host)
	fi, err := os.Stat(filepath.Join(conf, "config.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json after login: %v %v", fi, err)
	}
	r = mustRun(t, opts{env: env}, "--cache", cache, "--image", "docker://"+ref, "sh", "-c", "echo private")
	if r.stdout != "private\n" {
		t.Errorf("run after login: %s", r)
	}

	// logout takes away what login stored, and only that.
	other := `{"auths":{"other.example.org":{"auth":"eDp5"}},"credsStore":""}`
	b, _ := os.ReadFile(filepath.Join(conf, "config.json"))
	var kept map[string]any
	json.Unmarshal(b, &kept)
	kept["auths"].(map[string]any)["other.example.org"] = map[string]any{"auth": "eDp5"}
	kept["credsStore"] = ""
	b, _ = json.Marshal(kept)
	os.WriteFile(filepath.Join(conf, "config.json"), b, 0o600)
	r = mustRun(t, opts{env: env}, "logout", lr.host)
	if !strings.Contains(r.stdout, lr.host) {
		t.Errorf("logout: %s", r)
	}
	b, _ = os.ReadFile(filepath.Join(conf, "config.json"))
	if strings.Contains(string(b), lr.host) || !strings.Contains(string(b), "other.example.org") || !strings.Contains(string(b), "credsStore") {
		t.Errorf("after logout, config.json is %s; want %s's entry gone and the rest (%s) kept", b, lr.host, other)
	}
	r = run(t, opts{env: env}, "pull", "--cache", cache, ref)
	if r.code != 125 || !strings.Contains(r.stderr, "hpcrun login "+lr.host) {
		t.Errorf("pull after logout: %s", r)
	}
	r = run(t, opts{env: env}, "logout", lr.host)
	if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "no credentials for "+lr.host) {
		t.Errorf("a second logout: want exit 125 and one line: %s", r)
	}
}

// A registry with a self-signed certificate: a pull fails in one line that
// gives the fix; --ca-file, SSL_CERT_FILE, --tls-verify=false and
// --insecure each reach it, for pull and for --image docker://. As a user
// with the default cache.
func TestRegistryTLS(t *testing.T) {
	t.Parallel()
	needUserns(t)
	lr := &localRegistry{Registry: testregistry.StartTLS(t)}
	lr.host = lr.Host
	lr.pushArchive(t, busyboxImage(t), "test/bb:v1")
	ref := lr.host + "/test/bb:v1"
	ca := filepath.Join(tempDirOwned(t), "ca.pem")
	if err := os.WriteFile(ca, mustRead(t, lr.CAFile), 0o644); err != nil {
		t.Fatal(err)
	}
	uid := freeUID(t)
	cache := "/var/tmp/hpcrun-" + strconv.Itoa(uid) // the default cache
	removeUserDirs(t, uid)
	o := opts{uid: uid, env: []string{"HOME=/nonexistent"}, dir: "/"}

	r := run(t, o, "pull", ref)
	if r.code != 125 || len(lines(r.stderr)) != 1 || strings.Contains(r.stderr, `\n`) ||
		!strings.Contains(r.stderr, "--ca-file") || !strings.Contains(r.stderr, "--tls-verify=false") {
		t.Errorf("pull from a self-signed registry: want exit 125 and one line with the fix: %s", r)
	}
	r = run(t, o, "--no-home", "--image", "docker://"+ref, "true")
	if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "--tls-verify=false") {
		t.Errorf("--image docker:// of a self-signed registry: %s", r)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"pull --ca-file", nil, []string{"-q", "pull", "--ca-file", ca, ref}},
		{"pull with SSL_CERT_FILE", []string{"SSL_CERT_FILE=" + ca}, []string{"-q", "pull", ref}},
		{"pull --tls-verify=false", nil, []string{"-q", "pull", "--tls-verify=false", ref}},
		{"pull --insecure", nil, []string{"-q", "pull", "--insecure", "docker://" + ref}},
		{"run --tls-verify=false", nil, []string{"-q", "--tls-verify=false", "--no-home", "--image", "docker://" + ref, "true"}},
		{"run --ca-file", nil, []string{"-q", "--ca-file", ca, "--no-home", "--image", "docker://" + ref, "true"}},
	} {
		// Each from a cold cache: a warm run would not ask the registry.
		os.RemoveAll(cache)
		oo := o
		oo.env = append(append([]string{}, o.env...), tc.env...)
		if r := run(t, oo, tc.args...); r.code != 0 {
			t.Errorf("%s: %s", tc.name, r)
		}
	}
	r = run(t, o, "pull", "--ca-file", filepath.Join(cache, "missing.pem"), ref)
	if r.code != 125 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "--ca-file") {
		t.Errorf("pull --ca-file of a missing file: %s", r)
	}
}

// A pull killed halfway through a blob leaves a .partial file that the
// next pull continues from.
func TestPullKilledResumes(t *testing.T) {
	t.Parallel()
	needUserns(t)
	lr := startRegistry(t)
	lr.pushArchive(t, pythonImage(t), "test/py3:v1")
	ref := lr.host + "/test/py3:v1"
	// Blobs trickle out: 1 MiB every 50 ms.
	lr.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if !strings.Contains(r.URL.Path, "/blobs/") || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&slowWriter{ResponseWriter: w, ctx: r.Context()}, r)
	})
	cache := filepath.Join(tempDirOwned(t), "cache")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := command(ctx, opts{}, binPath, "pull", "--cache", cache, ref)
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	partials := filepath.Join(cache, "blobs", "sha256", "*.partial")
	deadline := time.Now().Add(time.Minute)
	for {
		m, _ := filepath.Glob(partials)
		if len(m) > 0 {
			if fi, err := os.Stat(m[0]); err == nil && fi.Size() > 4<<20 {
				break
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("no partial blob grew")
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	lr.setHook(nil)
	r := mustRun(t, opts{timeout: 3 * time.Minute}, "pull", "--cache", cache, ref)
	if !strings.Contains(r.stderr, "resuming blob") {
		t.Errorf("the second pull did not resume: %s", r)
	}
	r = mustRun(t, opts{}, "--cache", cache, "--image", "docker://"+ref, "python3", "-c", "print('resumed')")
	if r.stdout != "resumed\n" {
		t.Errorf("run: %s", r)
	}
	if m, _ := filepath.Glob(partials); len(m) > 0 {
		t.Errorf("left behind: %v", m)
	}
}

// slowWriter hands a response out at about 20 MiB/s: a pause of 50 ms
// after each MiB.
type slowWriter struct {
	http.ResponseWriter
	ctx  context.Context
	sent int
}

func (s *slowWriter) Write(b []byte) (int, error) {
	n, err := s.ResponseWriter.Write(b)
	before := s.sent
	s.sent += n
	if err == nil && s.sent>>20 != before>>20 {
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-s.ctx.Done():
			return n, s.ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return n, err
}

// A compute node without network: --image docker://REF that is not cached
// fails in seconds, in one line that names the registry and what to do,
// with exit 125; it never hangs on the connect. The registry is an address
// whose packets are dropped (lo up, an nftables DROP rule for its port) in
// a network namespace of the test's own, so nothing leaves this machine;
// hpcrun runs there as the test user, with the default cache.
func TestRegistryUnreachable(t *testing.T) {
	t.Parallel()
	needUserns(t)
	if os.Geteuid() != 0 || !asOther {
		if requireUserns {
			t.Fatal("a network namespace with a DROP rule needs root")
		}
		t.Skip("a network namespace with a DROP rule needs root")
	}
	tools := map[string]string{}
	for _, tool := range []string{"unshare", "ip", "nft", "setpriv"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s is missing (scripts/test-deps.sh installs it): %v", tool, err)
		}
		tools[tool] = p
	}
	const port = "5999"
	rules := "table inet hpcrun_test { chain input { type filter hook input priority 0; tcp dport " + port + " drop; }; }"
	script := "set -e; " + tools["ip"] + " link set lo up; " + tools["nft"] + " '" + rules + "'; exec " + tools["setpriv"] +
		" --reuid=" + strconv.Itoa(testUID) + " --regid=" + strconv.Itoa(testGID) + ` --clear-groups -- "$@"`
	start := time.Now()
	r := runRaw(opts{asRoot: true, dir: tempDirOwned(t), timeout: 2 * time.Minute},
		tools["unshare"], "-n", "sh", "-c", script, "sh", binPath, "--image", "docker://127.0.0.1:"+port+"/x:1", "true")
	took := time.Since(start)
	t.Logf("hpcrun gave up after %v: %s", took.Round(10*time.Millisecond), strings.TrimSpace(r.stderr))
	errLines := lines(r.stderr)
	if r.err != nil || r.code != 125 || len(errLines) != 1 || r.stdout != "" {
		t.Fatalf("want exit 125 and one line: %s", r)
	}
	for _, want := range []string{"cannot reach registry 127.0.0.1:" + port, "no answer in", "hpcrun pull", "archive"} {
		if !strings.Contains(errLines[0], want) {
			t.Errorf("the line has no %q: %s", want, errLines[0])
		}
	}
	if took > 15*time.Second {
		t.Errorf("hpcrun took %v to give up on a registry that drops packets; want seconds", took)
	}
}
