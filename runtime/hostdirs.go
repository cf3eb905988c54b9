package runtime

import "path/filepath"

// reach is how far one rule of a hostDirs entry reaches.
type reach uint8

const (
	nowhere reach = iota
	dirOnly       // the directory itself, not what lies below it
	subtree       // the directory and everything below it
)

// hostDir is a directory of the host that a rule treats apart.
type hostDir struct {
	path string
	// noCwdBind: the working directory is not bound there, as its contents
	// are the image's: the host's /usr would hide the image's.
	noCwdBind reach
	// noUserBind: a site's allow_system_binds: false refuses a user's bind
	// there, as it holds the node's own software and state.
	noUserBind reach
}

// hostDirs are the host's system directories and the directories around
// them. The longest entry that holds a path decides each rule for it.
//
// The two rules differ where the node keeps state of its own that is not
// the image's: /run and most of /var (sockets such as munge's, node-local
// scratch such as /var/scratch). A working directory there is bound like
// any other, but a site may keep users from binding them. /var/tmp is
// scratch for everyone, under neither rule. A working directory of exactly
// /, /var, /run, /home and the like stays the image's: binding it would
// hide the whole of the image's.
var hostDirs = []hostDir{
	{"/", dirOnly, dirOnly},
	{"/bin", subtree, subtree},
	{"/boot", subtree, subtree},
	{"/dev", subtree, subtree},
	{"/etc", subtree, subtree},
	{"/home", dirOnly, nowhere},
	{"/lib", subtree, subtree},
	{"/lib32", subtree, subtree},
	{"/lib64", subtree, subtree},
	{"/libx32", subtree, subtree},
	{"/media", dirOnly, nowhere},
	{"/mnt", dirOnly, nowhere},
	{"/opt", dirOnly, nowhere},
	{"/proc", subtree, subtree},
	{"/run", dirOnly, subtree},
	{"/sbin", subtree, subtree},
	{"/srv", dirOnly, nowhere},
	{"/sys", subtree, subtree},
	{"/usr", subtree, subtree},
	{"/var", dirOnly, subtree},
	{"/var/cache", subtree, subtree},
	{"/var/lib", subtree, subtree},
	{"/var/log", subtree, subtree},
	{"/var/mail", subtree, subtree},
	{"/var/run", subtree, subtree},
	{"/var/spool", subtree, subtree},
	{"/var/tmp", nowhere, nowhere},
}

// hostDirOf is the entry that decides the rules for a clean absolute path.
func hostDirOf(path string) hostDir {
	var best hostDir
	for _, d := range hostDirs {
		if within(path, d.path) && len(d.path) > len(best.path) {
			best = d
		}
	}
	return best
}

// hostDirRule reports whether the rule that col picks holds for path.
func hostDirRule(path string, col func(hostDir) reach) bool {
	d := hostDirOf(path)
	switch col(d) {
	case subtree:
		return true
	case dirOnly:
		return path == d.path
	}
	return false
}

// SystemDir is the host's system dir that holds path, which a site's
// allow_system_binds: false keeps users from binding, or "" when none
// does. The root itself counts as one.
func SystemDir(path string) string {
	path = filepath.Clean(path)
	if !hostDirRule(path, func(d hostDir) reach { return d.noUserBind }) {
		return ""
	}
	return hostDirOf(path).path
}
