package e2e

import (
	"os"
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
