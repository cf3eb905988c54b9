package fallback

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// Env is the name of the test switch.
const Env = "HPCRUN_TEST_FALLBACK"

// Feature is a kernel feature that hpcrun uses when the kernel has it.
type Feature string

// The features with a fallback, and the kernels that have them.
const (
	Pidfd        Feature = "pidfd"         // pidfd_open and pidfd_send_signal, Linux 5.3
	MountSetattr Feature = "mount_setattr" // mount_setattr, Linux 5.12
	Openat2      Feature = "openat2"       // openat2 with RESOLVE_*, Linux 5.6
	CloseRange   Feature = "close_range"   // close_range with CLOSE_RANGE_CLOEXEC, Linux 5.11
	// MemfdExec is executing a memfd, which vm.memfd_noexec=2 (Linux
	// 6.3) forbids: hpcrun then runs its unpacker from an unnamed file.
	MemfdExec Feature = "memfd_exec"
)

// Features lists every Feature the switch knows.
var Features = []Feature{Pidfd, MountSetattr, Openat2, CloseRange, MemfdExec}

var forced = sync.OnceValue(func() map[Feature]bool {
	set, err := Parse(os.Getenv(Env))
	if err != nil {
		// A misspelt switch would test the feature, not its fallback,
		// and pass for the wrong reason.
		panic(err)
	}
	return set
})

// Forced reports whether the switch asks for f's fallback.
func Forced(f Feature) bool { return forced()[f] }

// Parse reads the switch's value.
func Parse(s string) (map[Feature]bool, error) {
	set := map[Feature]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		ok := false
		for _, f := range Features {
			if Feature(name) == f {
				set[f], ok = true, true
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s: unknown feature %q; known: %v", Env, name, Features)
		}
	}
	return set, nil
}

// Environ returns the switch as NAME=VALUE for a process started with an
// environment of its own (the container's init), or nil when unset.
func Environ() []string {
	if v, ok := os.LookupEnv(Env); ok {
		return []string{Env + "=" + v}
	}
	return nil
}
