//go:build !(linux && amd64)

package rawclone

// Supported says whether this package clones on this platform: here it
// does not, and its callers use syscall.ForkExec.
const Supported = false

const enosys = 38

// Spawn fails with ENOSYS.
func Spawn(*Attr) (int, uintptr) { return 0, enosys }

// Pipe fails with ENOSYS.
func Pipe() (int, int, uintptr) { return -1, -1, enosys }

// Close does nothing.
func Close(int) {}

// IsTerminal reports false.
func IsTerminal(int) bool { return false }

// ReadFile reports false.
func ReadFile(string, int) ([]byte, bool) { return nil, false }

// WriteExit does nothing: callers check Supported first.
func WriteExit(int, string, int) {}

// Now returns 0.
func Now() int64 { return 0 }

// capKnown reports false: without a raw system call here, the clone
// asks for no capability that an older kernel would refuse.
func capKnown(uintptr) bool { return false }
