package runtime

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// The session keyring holds a user's Kerberos KEYRING: credential caches
// and AFS tokens, which a job needs to reach a krb5 or AFS home, so a job
// shares the caller's by default. With Config.NewKeyring the init joins a
// fresh one before it starts the job, as runc does for every container:
// the job then sees none of the caller's keys.
//
// A session keyring is part of a thread's credentials, not the process's:
// the init's main thread, which forks every process of the container (see
// ctl_linux.go), joins it, by the name the parent picked.

// keyringName is a fresh keyring's name, unguessable, so that no other
// process of the user joins it by name by chance.
func keyringName() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("name a fresh session keyring: %w", err)
	}
	return "_ses.hpcrun." + hex.EncodeToString(b[:]), nil
}

// keyringPerm is the fresh keyring's permission mask: everything for its
// possessors, and view, read and link for its owner.
const keyringPerm = 0x3f000000 | 0x00010000 | 0x00020000 | 0x00100000

// joinKeyring makes this thread's session keyring the one named name,
// creating it on the first call. Call it on a locked OS thread.
func joinKeyring(name string) error {
	id, err := unix.KeyctlJoinSessionKeyring(name)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("join a fresh session keyring: %w (this kernel, or a seccomp filter around hpcrun, forbids keyrings); run without --new-keyring or new_keyring", err)
		}
		return fmt.Errorf("join a fresh session keyring: %w", err)
	}
	if err := unix.KeyctlSetperm(id, keyringPerm); err != nil {
		return fmt.Errorf("set the permissions of the fresh session keyring %d: %w", id, err)
	}
	return nil
}
