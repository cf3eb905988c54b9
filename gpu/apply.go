package gpu

import (
	"path"
	"strings"

	"github.com/hpcrun/hpcrun/runtime"
)

// Binds returns the read-only binds that put the driver's files in the
// container: each library at Dir/lib/NAME, each executable at Dir/bin/NAME.
// The device nodes need none: hpcrun binds the host's /dev whole.
func (d Driver) Binds() []runtime.Bind {
	var bs []runtime.Bind
	for _, f := range d.Libs {
		bs = append(bs, runtime.Bind{Source: f.Source, Dest: path.Join(d.Dir, "lib", f.Name), ReadOnly: true})
	}
	for _, f := range d.Bins {
		bs = append(bs, runtime.Bind{Source: f.Source, Dest: path.Join(d.Dir, "bin", f.Name), ReadOnly: true})
	}
	return bs
}

// Env returns the job's environment with the driver's directories added:
// Dir/lib first in LD_LIBRARY_PATH, ahead of the image's or --env's own, so
// the host's driver wins over any copy in the image (a CUDA image's compat
// libcuda); Dir/bin last in PATH, after the image's own programs. A
// directory already there is not added again. The rest of job, and its
// order, are kept; job itself is not modified.
func (d Driver) Env(job []string) []string {
	out := append([]string(nil), job...)
	if len(d.Libs) > 0 {
		out = setList(out, "LD_LIBRARY_PATH", path.Join(d.Dir, "lib"), "", true)
	}
	if len(d.Bins) > 0 {
		out = setList(out, "PATH", path.Join(d.Dir, "bin"), runtime.DefaultPath, false)
	}
	return out
}

// setList adds dir to the colon-separated list in variable k of env, first
// or last, starting from def when env has no k. An empty value counts as
// none: an empty element in LD_LIBRARY_PATH or PATH means the current
// directory.
func setList(env []string, k, dir, def string, first bool) []string {
	i, v := -1, def
	for j, kv := range env {
		if name, val, _ := strings.Cut(kv, "="); name == k {
			i, v = j, val
		}
	}
	switch {
	case v == "":
		v = dir
	case first && !strings.HasPrefix(v+":", dir+":"):
		v = dir + ":" + v
	case !first && !strings.HasSuffix(":"+v, ":"+dir):
		v = v + ":" + dir
	}
	if i < 0 {
		return append(env, k+"="+v)
	}
	env[i] = k + "=" + v
	return env
}
