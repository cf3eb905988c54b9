package runtime

// linux.rootfsPropagation: the propagation of the container's / once it is
// pivoted into, as runc sets it. Without one / stays private, as the
// init's staging leaves it: nothing mounted in the container reaches the
// host, nor the host's later mounts the container. Each mode works in
// the container's own mount namespace, which the init's user namespace
// owns: shared makes / a peer group of the container's, never the host's;
// slave makes it a slave of nothing (the host's mounts were left behind
// at the pivot), which the kernel keeps private.

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

var rootPropagations = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// rootPropagation is the mount flags of linux.rootfsPropagation mode; 0
// for none.
func rootPropagation(mode string) (uintptr, error) {
	if mode == "" {
		return 0, nil
	}
	f, ok := rootPropagations[mode]
	if !ok {
		return 0, fmt.Errorf("linux.rootfsPropagation: unknown mode %q; use private, rprivate, slave, rslave, shared, rshared, unbindable or runbindable", mode)
	}
	return f, nil
}

// applyRootPropagation sets flags (of rootPropagation) on /. It runs once
// the init has pivoted: pivot_root refuses a shared root.
func applyRootPropagation(flags uintptr) error {
	if flags == 0 {
		return nil
	}
	if err := unix.Mount("", "/", "", flags, ""); err != nil {
		return &os.PathError{Op: "set linux.rootfsPropagation on", Path: "/", Err: err}
	}
	return nil
}
