package check

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"github.com/hpcrun/hpcrun/runtime"
)

// kernel is the running kernel's release and version.
type kernel struct {
	release      string // as uname -r gives it; "" when unknown
	major, minor int    // -1 when the release does not parse
}

func readKernel(e Env) kernel {
	rel, _ := e.sysctl("kernel.osrelease")
	k := kernel{release: rel, major: -1, minor: -1}
	// 6.18.44-fc-v782, 3.10.0-1160.el7.x86_64, 5.4.0
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return k
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(c rune) bool { return c < '0' || c > '9' }); i >= 0 {
		minor = minor[:i]
	}
	maj, err1 := strconv.Atoi(parts[0])
	mnr, err2 := strconv.Atoi(minor)
	if err1 == nil && err2 == nil {
		k.major, k.minor = maj, mnr
	}
	return k
}

func (k kernel) known() bool { return k.major >= 0 }

// before reports whether the kernel is known to be older than major.minor.
func (k kernel) before(major, minor int) bool {
	return k.known() && (k.major < major || k.major == major && k.minor < minor)
}

func (k kernel) String() string {
	if k.release == "" {
		return "unknown"
	}
	return "Linux " + k.release
}

// The kernel versions hpcrun's features need.
const (
	usernsMajor, usernsMinor   = 3, 19 // unprivileged user namespaces that can mount
	overlayMajor, overlayMinor = 5, 11 // overlayfs in a user namespace
)

func kernelResult(k kernel) Result {
	r := Result{Name: "kernel", Status: Info, Detail: k.String()}
	switch {
	case !k.known():
		r.Detail += " (not a version hpcrun can read)"
	case k.before(usernsMajor, usernsMinor):
		r.Detail += fmt.Sprintf("; user namespaces need %d.%d or later", usernsMajor, usernsMinor)
	case k.before(overlayMajor, overlayMinor):
		r.Detail += fmt.Sprintf("; --writable-tmpfs needs %d.%d or later", overlayMajor, overlayMinor)
	}
	return r
}

// knob is a sysctl that can block user namespaces.
type knob struct {
	name         string
	blocks       string // the value that blocks them
	unprivileged bool   // it blocks only callers without CAP_SYS_ADMIN: root passes
	why, fix     string
}

// knobs are checked in this order; the first that blocks is the cause.
// The per-type limits are per user namespace, and 0 refuses every new one.
var knobs = []knob{
	{name: "user.max_user_namespaces", blocks: "0",
		why: "user.max_user_namespaces is 0: user namespaces are disabled",
		fix: "sysctl -w user.max_user_namespaces=15000 (as root; keep it in /etc/sysctl.d/), or ask your admins"},
	{name: "kernel.unprivileged_userns_clone", blocks: "0", unprivileged: true,
		why: "kernel.unprivileged_userns_clone is 0 (Debian's and Ubuntu's switch): only root may create user namespaces",
		fix: "sysctl -w kernel.unprivileged_userns_clone=1 (as root; keep it in /etc/sysctl.d/), or ask your admins"},
	{name: "kernel.apparmor_restrict_unprivileged_userns", blocks: "1", unprivileged: true,
		why: "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10 and later): AppArmor denies unprivileged user namespaces to programs without a profile",
		fix: "an admin adds an AppArmor profile for hpcrun's path with `userns,` (as Ubuntu's for bwrap), or sets kernel.apparmor_restrict_unprivileged_userns=0"},
	{name: "user.max_mnt_namespaces", blocks: "0",
		why: "user.max_mnt_namespaces is 0: mount namespaces are disabled",
		fix: "sysctl -w user.max_mnt_namespaces=15000 (as root), or ask your admins"},
	{name: "user.max_pid_namespaces", blocks: "0",
		why: "user.max_pid_namespaces is 0: pid namespaces are disabled",
		fix: "sysctl -w user.max_pid_namespaces=15000 (as root), or ask your admins"},
}

// blocking lists the knobs whose value blocks user namespaces for uid.
func blocking(e Env, forRoot bool) []knob {
	var out []knob
	for _, k := range knobs {
		if v, ok := e.sysctl(k.name); ok && v == k.blocks && !(forRoot && k.unprivileged) {
			out = append(out, k)
		}
	}
	return out
}

func userNamespaces(e Env, k kernel) Result {
	r := Result{Name: "user namespaces"}
	limit := ""
	if v, ok := e.sysctl("user.max_user_namespaces"); ok {
		limit = " (user.max_user_namespaces=" + v + ")"
	}
	var err error
	var pe *runtime.ProbeError
	tried := e.UserNS != nil
	if tried {
		err = e.UserNS()
	}
	if tried && err == nil {
		r.Status = OK
		r.Detail = "work: new user, mount and pid namespaces, a tmpfs and a fresh /proc mounted in them" + limit
		// Root passes the switches that stop everyone else: say so to an
		// admin who checks a node for its users.
		for _, kb := range blocking(e, false) {
			switch {
			case !kb.unprivileged:
			case e.UID == 0:
				r.Status = Warn
				r.Detail = "work for root, but not for other users: " + kb.why
				r.Fix = kb.fix
				return r
			default:
				// An AppArmor profile lets hpcrun through, say.
				r.Detail += "; " + kb.name + " is " + kb.blocks + ", yet hpcrun is let through"
			}
		}
		return r
	}

	// They do not work, or were not tried: find the cause.
	r.Status = Fail
	var cause []string
	switch b := blocking(e, e.UID == 0); {
	case k.before(usernsMajor, usernsMinor):
		cause = []string{fmt.Sprintf("%s is older than %d.%d", k, usernsMajor, usernsMinor)}
		r.Fix = "run on a node with a newer kernel, or ask your admins"
	case len(b) > 0:
		cause = []string{b[0].why}
		r.Fix = b[0].fix
	case !tried:
		r.Status, r.Detail = Info, "not tried; no sysctl blocks them"+limit
		return r
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EUSERS):
		cause = []string{"the limit of user, mount or pid namespaces is used up" + limit}
		r.Fix = "end other containers, or an admin raises user.max_user_namespaces (and max_mnt_namespaces, max_pid_namespaces)"
	case errors.As(err, &pe) && pe.Step == runtime.ProbeMountProc:
		cause = []string{"a fresh /proc cannot be mounted: parts of this /proc are hidden under other mounts, as in an outer container"}
		r.Fix = "run hpcrun outside that container, or have it started with /proc unmasked (docker --security-opt systempaths=unconfined)"
	default:
		cause = []string{"a seccomp filter, an LSM or an outer container forbids them"}
		r.Fix = "`unshare --user --map-root-user --mount --pid --fork true` shows the same; ask your admins"
	}
	if tried {
		cause = append(cause, err.Error())
	}
	r.Detail = "do not work: " + strings.Join(cause, "; ")
	return r
}

func overlay(e Env, k kernel, usernsOK bool) Result {
	r := Result{Name: "overlayfs", Status: Warn}
	const without = "run without --writable-tmpfs, and write to $HOME, /tmp or a --bind dir"
	if !usernsOK {
		r.Detail = "not tried: user namespaces do not work, and --writable-tmpfs needs them"
		r.Fix = "see user namespaces"
		return r
	}
	if e.Overlay == nil {
		if k.before(overlayMajor, overlayMinor) {
			r.Detail = fmt.Sprintf("%s is older than %d.%d: --writable-tmpfs will not work", k, overlayMajor, overlayMinor)
			r.Fix = without
			return r
		}
		r.Status, r.Detail = Info, "not tried"
		return r
	}
	err := e.Overlay()
	switch {
	case err == nil:
		r.Status, r.Detail = OK, "an overlay mounts in a user namespace: --writable-tmpfs works"
	case k.before(overlayMajor, overlayMinor):
		r.Detail = fmt.Sprintf("--writable-tmpfs will not work: %s is older than %d.%d, which first allows overlayfs in a user namespace; %v",
			k, overlayMajor, overlayMinor, err)
		r.Fix = without + "; or use a node with a newer kernel"
	case errors.Is(err, syscall.ENODEV):
		r.Detail = "--writable-tmpfs will not work: the kernel has no overlay filesystem; " + err.Error()
		r.Fix = "modprobe overlay (as root), or ask your admins; meanwhile " + without
	default:
		r.Detail = "--writable-tmpfs will not work: " + err.Error()
		r.Fix = without + "; ask your admins whether overlayfs is restricted here"
	}
	return r
}
