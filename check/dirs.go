package check

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/hpcrun/hpcrun/internal/safedir"
	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/unpack/store"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

// LowSpace is the free space below which the cache gets a warning: an
// unpacked image takes a few hundred MiB to a few GiB.
const LowSpace = 1 << 30

// privateDir checks a directory that hpcrun keeps private state in (the
// image cache, the container state) as store.Open and
// runtime.OpenContainers will: a real directory of the caller's that no
// one else can write, below parents that only root and the caller can
// change (sticky ones such as /tmp aside), writable; where it is missing,
// its nearest existing parent must let the caller create it. base is the
// directory whose filesystem holds it (dir, or that parent). problem is ""
// when all is well, else what is wrong with dir, to follow its name and a
// colon; fix is a specific remedy, or "".
func privateDir(e Env, dir string) (base string, exists bool, problem, fix string) {
	uid := e.UID
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		base = filepath.Dir(dir)
		for {
			fi, err = os.Stat(base)
			if !errors.Is(err, fs.ErrNotExist) || base == "/" {
				break
			}
			base = filepath.Dir(base)
		}
		switch {
		case err != nil:
			return base, false, termsafe.Line(err.Error()), ""
		case !fi.IsDir():
			return base, false, fmt.Sprintf("missing, and %s is not a directory", base), ""
		}
		if problem := parentsProblem(base, uid); problem != "" {
			return base, false, problem, ""
		}
		if !e.Dir(base).Writable {
			return base, false, fmt.Sprintf("missing, and you (uid %d) cannot create it in %s", uid, base), ""
		}
		return base, false, "", ""
	case err != nil:
		return dir, false, termsafe.Line(err.Error()), ""
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := filepath.EvalSymlinks(dir)
		return dir, true, "a symlink", "give the directory it leads to (" + target + ") instead"
	case !fi.IsDir():
		return dir, true, "not a directory", ""
	case st != nil && int(st.Uid) != uid:
		return dir, true, fmt.Sprintf("owned by uid %d, not by you (uid %d)", st.Uid, uid), ""
	case fi.Mode().Perm()&0o022 != 0:
		return dir, true, fmt.Sprintf("writable by others (mode %04o)", fi.Mode().Perm()), "chmod go-w " + dir
	}
	if problem := parentsProblem(filepath.Dir(dir), uid); problem != "" {
		return dir, true, problem, ""
	}
	if !e.Dir(dir).Writable {
		return dir, true, fmt.Sprintf("not writable by you (uid %d)", uid), "chmod u+rwx " + dir
	}
	return dir, true, "", ""
}

// parentsProblem says who could swap a private dir below parent, as
// safedir.CheckParents finds it; "" for no one.
func parentsProblem(parent string, uid int) string {
	real, err := filepath.EvalSymlinks(parent)
	if err != nil {
		return termsafe.Line(err.Error())
	}
	var pe *safedir.ParentError
	switch err := safedir.CheckParents(real, uid); {
	case errors.As(err, &pe):
		return "its parent " + pe.Error() + ", who could swap it"
	case err != nil:
		return termsafe.Line(err.Error())
	}
	return ""
}

func cache(e Env) Result {
	r := Result{Name: "image cache", Status: Fail}
	elsewhere := fmt.Sprintf("point --cache or %s (or cache: in your config; scratch: in the site's) at a node-local directory of yours on a filesystem that allows exec, such as /var/tmp/hpcrun-%d", store.Env, e.UID)
	switch {
	case e.CacheErr != nil:
		r.Detail, r.Fix = termsafe.Line(e.CacheErr.Error()), elsewhere
		return r
	case e.Cache == "":
		r.Detail, r.Fix = "no cache directory", elsewhere
		return r
	}
	dir, err := filepath.Abs(e.Cache)
	if err != nil {
		r.Detail, r.Fix = err.Error(), elsewhere
		return r
	}
	from := ""
	if e.CacheFrom != "" {
		from = " (" + e.CacheFrom + ")"
	}
	base, exists, problem, fix := privateDir(e, dir)
	if problem != "" {
		r.Detail = dir + from + ": " + problem
		r.Fix = elsewhere
		if fix != "" {
			r.Fix = fix + ", or " + elsewhere
		}
		return r
	}
	d := e.Dir(base)
	fsName := d.FS
	if fsName == "" {
		fsName = "an unknown filesystem"
	}
	free := store.Bytes(int64(min(d.Free, math.MaxInt64)))
	r.Detail = dir + from + ": " + fsName
	switch {
	case d.NoExec:
		r.Detail += ", mounted noexec: no image unpacked there can run"
		r.Fix = elsewhere
		return r
	case d.Free == 0:
		r.Detail += ", full"
		r.Fix = "free some space there (hpcrun prune removes unused images), or " + elsewhere
		return r
	case !d.Local:
		r.Status = Warn
		r.Detail += " (shared between nodes, not node-local), " + free + " free"
		r.Fix = elsewhere + ": every node unpacks its images into a shared filesystem's metadata servers otherwise"
	case d.Free < LowSpace:
		r.Status = Warn
		r.Detail += ", node-local, only " + free + " free"
		r.Fix = "free some space there (hpcrun prune removes unused images), or " + elsewhere
	default:
		r.Status = OK
		r.Detail += ", node-local, " + free + " free"
	}
	if exists {
		r.Detail += ", writable"
	} else {
		r.Detail += "; made on first use in " + base
	}
	return r
}

func state(e Env) Result {
	r := Result{Name: "container state", Status: OK}
	var note string
	root, from := e.StateRoot, "--root"
	if root == "" {
		root, from = runtime.DefaultRoot(e.Environ, e.UID), "$XDG_RUNTIME_DIR"
		switch xdg, set := e.getenv("XDG_RUNTIME_DIR"); {
		case !set || xdg == "":
			from, note = "the default", "XDG_RUNTIME_DIR is not set"
		case root != filepath.Join(xdg, "hpcrun"):
			// No login session here (a batch job's node has none).
			from, note = "the default", "XDG_RUNTIME_DIR="+xdg+" does not exist"
		default:
			// hpcrun makes its dir there: the runtime dir itself must be
			// the caller's (after su or sudo it still names the first
			// user's).
			if fi, err := os.Stat(xdg); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != e.UID {
					r.Status = Warn
					r.Detail = fmt.Sprintf("XDG_RUNTIME_DIR=%s belongs to uid %d, not to you (uid %d): --name, --detach, exec and the shared container of a step's tasks will not work", xdg, st.Uid, e.UID)
					r.Fix = "unset XDG_RUNTIME_DIR or set it to your own (/run/user/" + strconv.Itoa(e.UID) + "), or give --root a directory of yours"
					return r
				}
			}
		}
	}
	root, err := filepath.Abs(root)
	if err != nil {
		r.Status, r.Detail = Warn, err.Error()
		return r
	}
	_, exists, problem, fix := privateDir(e, root)
	if problem != "" {
		r.Status = Warn
		r.Detail = root + " (" + from + "): " + problem + "; --name, --detach, exec and the shared container of a step's tasks will not work"
		r.Fix = "give --root a directory of yours"
		if from == "$XDG_RUNTIME_DIR" {
			r.Fix = "unset XDG_RUNTIME_DIR, or give --root a directory of yours"
		}
		if fix != "" {
			r.Fix = fix + ", or " + r.Fix
		}
		return r
	}
	r.Detail = root + " (" + from
	if note != "" {
		r.Detail += "; " + note
	}
	r.Detail += ")"
	if exists {
		r.Detail += ", yours, writable"
	} else {
		r.Detail += ", made on first use"
	}
	return r
}
