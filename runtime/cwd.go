package runtime

import (
	"path/filepath"
	"strings"
)

// InProcessDir reports whether path lies in a process's own directory in
// /proc: /proc/self/..., /proc/thread-self/... or /proc/<pid>/... . Its
// fd/ and cwd lead to directories of the process's mount namespace, out
// of a container. /proc itself and the rest of it (/proc/sys) are plain
// directories.
func InProcessDir(path string) bool {
	rest, ok := strings.CutPrefix(filepath.Clean("/"+path), "/proc/")
	if !ok {
		return false
	}
	first, _, _ := strings.Cut(rest, "/")
	return first == "self" || first == "thread-self" || strings.Trim(first, "0123456789") == ""
}
