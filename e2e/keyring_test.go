package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// keyReader is a Python job that looks up the user key hpcrun-test in its
// session keyring (keyctl(KEYCTL_SEARCH, @s), then KEYCTL_READ) and prints
// it, or "no key" and why.
const keyReader = `
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": 250, "aarch64": 219}[os.uname().machine]
kid = libc.syscall(nr, ctypes.c_long(10), ctypes.c_long(-3), b"user", b"hpcrun-test", ctypes.c_long(0))
if kid < 0:
    print("no key:", os.strerror(ctypes.get_errno()))
else:
    buf = ctypes.create_string_buffer(64)
    n = libc.syscall(nr, ctypes.c_long(11), ctypes.c_long(kid), buf, ctypes.c_long(64))
    print("key:", buf.raw[:n].decode())
`

// A key that the caller added to its session keyring (keyctl add ... @s,
// as kinit does with a KEYRING: cache) is the job's too by default, so
// Kerberos and AFS work inside; --new-keyring, and the config's
// new_keyring: true, give the job a fresh keyring without it.
func TestSessionKeyring(t *testing.T) {
	t.Parallel()
	needUserns(t)
	keyctl, err := exec.LookPath("keyctl")
	if err != nil {
		t.Fatal("keyctl is missing: run scripts/test-deps.sh (Debian's keyutils)")
	}
	image := pythonBuild.get(t)
	site := filepath.Join(tempDirOwned(t), "site.yaml")
	if err := os.WriteFile(site, []byte("new_keyring: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		env   []string
		flags []string
		want  string
	}{
		{"default", nil, nil, "key: secret-value"},
		{"--new-keyring", nil, []string{"--new-keyring"}, "no key:"},
		{"new_keyring in the config", []string{"HPCRUN_CONFIG=" + site}, nil, "no key:"},
		{"--new-keyring=false over the config", []string{"HPCRUN_CONFIG=" + site}, []string{"--new-keyring=false"}, "key: secret-value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A session keyring of the test user's own, holding the key,
			// in which hpcrun runs.
			args := []string{"session", "-", "sh", "-c",
				`keyctl add user hpcrun-test secret-value @s >/dev/null && exec "$@"`, "sh", binPath, "-q"}
			args = append(append(args, tc.flags...), "--image", image, "python3", "-c", keyReader)
			r := runRaw(opts{env: tc.env}, keyctl, args...)
			if r.err != nil || r.code != 0 {
				t.Fatalf("%s", r)
			}
			if got := strings.TrimSpace(r.stdout); !strings.HasPrefix(got, tc.want) {
				t.Errorf("the job's session keyring: %q, want %q\n%s", got, tc.want, r)
			}
		})
	}
}
