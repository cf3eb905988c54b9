package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// -v lists the job's environment with the values of secret-looking
// variables hidden; the job still gets them.
func TestVerboseHidesSecrets(t *testing.T) {
	t.Parallel()
	needUserns(t)
	image := visibleCopy(t, busyboxImage(t))
	uid := freeUID(t)
	removeUserDirs(t, uid)
	secrets := []string{"HF_TOKEN=hf-sekrit-1", "DB_PASSWORD=sekrit-2", "AWS_SECRET_ACCESS_KEY=sekrit-3", "MY_API_KEY=sekrit-4"}
	o := opts{uid: uid, env: append([]string{"HOME=/nonexistent", "VISIBLE_VAR=plain-value"}, secrets...), dir: "/"}
	r := mustRun(t, o, "-v", "--no-home", "--image", image, "sh", "-c", "echo $HF_TOKEN $DB_PASSWORD $AWS_SECRET_ACCESS_KEY $MY_API_KEY")
	if r.stdout != "hf-sekrit-1 sekrit-2 sekrit-3 sekrit-4\n" {
		t.Errorf("the job's environment lost its secrets: %s", r)
	}
	if strings.Contains(r.stderr, "sekrit") || !strings.Contains(r.stderr, "VISIBLE_VAR=plain-value") {
		t.Errorf("-v shows a secret's value, or hides a plain one:\n%s", r.stderr)
	}
	for _, kv := range secrets {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(r.stderr, name+"=(hidden)") {
			t.Errorf("-v does not list %s as hidden:\n%s", name, r.stderr)
		}
	}
}

// removeUserDirs removes, when the test ends, what hpcrun runs as uid make
// in /tmp and /var/tmp: its default cache, state root and OCI root.
func removeUserDirs(t *testing.T, uid int) {
	t.Cleanup(func() {
		for _, d := range []string{"/var/tmp/hpcrun-", "/tmp/hpcrun-", "/tmp/hpcrun-oci-"} {
			os.RemoveAll(d + strconv.Itoa(uid))
		}
	})
}
