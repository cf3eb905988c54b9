package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain lets this test binary serve as the probes' child, as hpcrun
// does: the probes run /proc/self/exe as ProbeArg0; and as the rlimit
// shim, started by a name ending in RlimitArg0.
func TestMain(m *testing.M) {
	if len(os.Args) > 0 && os.Args[0] == ProbeArg0 {
		RunProbe()
	}
	if len(os.Args) > 0 && filepath.Base(os.Args[0]) == RlimitArg0 {
		RunRlimitShim()
	}
	os.Exit(m.Run())
}

// needProbe skips a test whose probe failed, unless
// HPCRUN_TEST_REQUIRE_USERNS=1 makes that a failure.
func needProbe(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("HPCRUN_TEST_REQUIRE_USERNS") == "1" {
		t.Fatalf("HPCRUN_TEST_REQUIRE_USERNS=1 but the probe failed: %v", err)
	}
	var pe *ProbeError
	if !errors.As(err, &pe) {
		t.Fatalf("want a *ProbeError, got %T: %v", err, err)
	}
	t.Skipf("user namespaces unusable here (set HPCRUN_TEST_REQUIRE_USERNS=1 to fail instead): %v", err)
}

func TestProbeUserNS(t *testing.T) {
	needProbe(t, ProbeUserNS())
}

func TestProbeOverlay(t *testing.T) {
	needProbe(t, ProbeUserNS())
	if err := ProbeOverlay(); err != nil {
		// Linux 5.11 or later takes an overlay in a user namespace.
		var uts unix.Utsname
		unix.Uname(&uts)
		t.Logf("kernel %s", unix.ByteSliceToString(uts.Release[:]))
		t.Skipf("overlayfs refused in a user namespace: %v", err)
	}
}

func TestProbeError(t *testing.T) {
	for _, tc := range []struct {
		report string
		want   string
		errno  syscall.Errno
	}{
		{"mount a fresh proc\n1\n", "mount a fresh proc: EPERM (operation not permitted)", syscall.EPERM},
		{"mount an overlay (upper layer in a tmpfs)\n13\n", "mount an overlay (upper layer in a tmpfs): EACCES (permission denied)", syscall.EACCES},
	} {
		pe := parseProbeReport(tc.report)
		if pe == nil {
			t.Fatalf("parseProbeReport(%q) = nil", tc.report)
		}
		if pe.Error() != tc.want || !errors.Is(pe, tc.errno) {
			t.Errorf("parseProbeReport(%q) = %q, want %q wrapping %v", tc.report, pe, tc.want, tc.errno)
		}
	}
	for _, bad := range []string{"", "step", "step\nx\n", "\n1\n"} {
		if pe := parseProbeReport(bad); pe != nil {
			t.Errorf("parseProbeReport(%q) = %v, want nil", bad, pe)
		}
	}
}
