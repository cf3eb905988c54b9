package launch

import (
	"errors"
	"strings"

	"github.com/hpcrun/hpcrun/check"
	"github.com/hpcrun/hpcrun/gpu"
	"github.com/hpcrun/hpcrun/jobs"
	"github.com/hpcrun/hpcrun/runtime"
)

// CheckEnv describes this node and caller to check.Run: the settings as a
// run would resolve them, and the real probes.
func CheckEnv(h Host, cacheFlag, stateRoot string) check.Env {
	e := check.Env{
		Environ:    h.Env,
		UID:        int(h.UID),
		StateRoot:  stateRoot,
		Dir:        jobs.ProbeDir,
		UserNS:     runtime.ProbeUserNS,
		Overlay:    runtime.ProbeOverlay,
		Checkpoint: runtime.CheckpointSupport,
		GPU:        gpu.Host{Env: h.Env},
	}
	st, err := LoadSettings(h, cacheFlag, "")
	if err != nil {
		e.ConfigErr = err
		e.CacheErr = errors.New("not known: the config does not load")
		return e
	}
	e.ConfigRead = st.Loaded.Read
	e.Criu, e.CriuFrom = st.Conf.Criu.Value, st.Conf.Criu.From
	e.Cache, e.CacheErr = st.Cache(h)
	e.CacheFrom = st.Conf.Cache.From
	if strings.HasPrefix(e.CacheFrom, "default") {
		e.CacheFrom += ", " + st.Conf.Scratch.From
	}
	return e
}
