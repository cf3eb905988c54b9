package runtime

// linux.rootfsPropagation: the propagation of the container's / once it is
// pivoted into, as runc sets it. Without one, / is as the init's staging
// leaves it, a slave of the host's mounts (the staging makes the host's /
// rslave in the container's mount namespace, as runc's default does):
// the host's later mounts may reach the container, nothing mounted in the
// container reaches the host. Each mode works in the container's own
// mount namespace, which the init's user namespace owns: shared makes /
// a peer of a group of the container's own, never the host's, and a
// slave still of the host's.

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// rootPropagation is the mount flags of linux.rootfsPropagation mode; 0
// for none.
func rootPropagation(mode string) (uintptr, error) {
	if mode == "" {
		return 0, nil
	}
	f, ok := propagationFlags[mode]
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
