package runtime

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// sysctlReader reads one sysctl by its dotted name; ok is false when the
// kernel does not have it.
type sysctlReader func(name string) (value string, ok bool)

func readSysctl(name string) (string, bool) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}

// diagnoseUserNS explains why the kernel refused to create a user
// namespace: it names the setting that blocks it and the fix. err is what
// clone returned.
func diagnoseUserNS(err error, sysctl sysctlReader) error {
	if v, ok := sysctl("user.max_user_namespaces"); ok && v == "0" {
		return fmt.Errorf("%w: user.max_user_namespaces is 0 on this node; an admin can enable them with `sysctl -w user.max_user_namespaces=15000`", ErrUserNSDisabled)
	}
	if v, ok := sysctl("kernel.unprivileged_userns_clone"); ok && v == "0" {
		return fmt.Errorf("%w: kernel.unprivileged_userns_clone is 0 on this node; an admin can enable them with `sysctl -w kernel.unprivileged_userns_clone=1`", ErrUserNSDisabled)
	}
	if v, ok := sysctl("kernel.apparmor_restrict_unprivileged_userns"); ok && v == "1" {
		return fmt.Errorf("%w: AppArmor restricts them (kernel.apparmor_restrict_unprivileged_userns=1); an admin can allow hpcrun with an AppArmor profile that has `userns,`, or set the sysctl to 0", ErrUserNSDisabled)
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EUSERS) {
		v, _ := sysctl("user.max_user_namespaces")
		return fmt.Errorf("%w: the limit user.max_user_namespaces (%s) is used up on this node; end other containers or ask an admin to raise it", ErrUserNSDisabled, v)
	}
	return fmt.Errorf("%w: %v (a seccomp filter or an outer container may forbid them; `unshare --user true` shows the same)", ErrUserNSDisabled, err)
}

// isUserNSRefusal reports whether a clone error means the user namespace
// itself was refused, rather than a bad argument of ours.
func isUserNSRefusal(err error) bool {
	for _, e := range []error{syscall.EPERM, syscall.EACCES, syscall.ENOSPC, syscall.EUSERS, syscall.EINVAL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
