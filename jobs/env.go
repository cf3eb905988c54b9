package jobs

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/hpcrun/hpcrun/internal/envlist"
)

// schedulerPrefixes name the variables that batch systems and MPI launchers
// use to talk to a task. They always pass into the container, even with
// --cleanenv, and the host's value wins over the image's Env, or srun and
// mpirun inside cannot find their job (an image built inside a job may
// carry that job's SLURM_JOB_ID or PMIX_RANK). Image values of names the
// host does not set stay: MPI images set OMPI_MCA_* defaults.
var schedulerPrefixes = []string{"SLURM_", "SLURMD_", "PBS_", "PMI_", "PMIX_", "OMPI_"}

// neverPassed are host variables that would load host libraries into the
// image's programs; they never cross into the container (the image's own
// values and --env still apply).
var neverPassed = map[string]bool{"LD_LIBRARY_PATH": true, "LD_PRELOAD": true, "LD_AUDIT": true}

// cleanEnvKept are the host variables --cleanenv keeps besides the
// scheduler's. TMPDIR is a batch job's scratch dir (PBS makes one per
// job), which hpcrun binds.
var cleanEnvKept = map[string]bool{"HOME": true, "USER": true, "TERM": true, "TMPDIR": true}

// SetPrefix marks a host variable that sets a variable inside:
// HPCRUNENV_FOO=1 gives the job FOO=1, as Apptainer's APPTAINERENV_ does.
// Not HPCRUN_ENV_: HPCRUN_ENV_PASS and HPCRUN_ENV_DENY are config keys.
const SetPrefix = "HPCRUNENV_"

// IsSchedulerVar reports whether a variable belongs to the batch system.
func IsSchedulerVar(name string) bool {
	for _, p := range schedulerPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// EnvOptions are the inputs of the container's environment.
type EnvOptions struct {
	Host        []string // the caller's environment, K=V
	Image       []string // the image's Env, K=V
	DefaultPath string   // PATH when the image sets none
	CleanEnv    bool     // keep only HOME, USER, TERM, TMPDIR, the scheduler's variables and Pass from Host
	Pass        []string // host variables (NAME or PREFIX*) that pass even with CleanEnv
	Deny        []string // host variables that never pass, but for the scheduler's
	Marks       []string // hpcrun's own K=V (HPCRUN_CONTAINER, HPCRUN_IMAGE, a shell's PS1), over the image's
	Set         []string // --env-file entries then --env entries, in order; "K" alone copies K from Host
}

// EnvRule is the rule ContainerEnv applies, for --help.
const EnvRule = `Environment: host variables pass into the container, except LD_LIBRARY_PATH,
LD_PRELOAD, LD_AUDIT and the config's env deny list. The image's variables win
over the host's, PATH included, but for the scheduler's. --cleanenv keeps only
HOME, USER, TERM, TMPDIR, the config's env pass list and the scheduler's
variables from the host. The scheduler's variables (SLURM_*, SLURMD_*, PBS_*,
PMI_*, PMIX_*, OMPI_*) always pass, and win over the image's. hpcrun sets
HPCRUN_CONTAINER (the --name, else 1) and HPCRUN_IMAGE (--image or --rootfs as
given). A host variable HPCRUNENV_K=V sets K=V inside, over the image's, even
with --cleanenv (Apptainer's APPTAINERENV_K). --env-file, then --env K=V, win
over everything; --env K copies K from the host even with --cleanenv.`

// ContainerEnv computes the job's environment from the rule in EnvRule.
func ContainerEnv(o EnvOptions) []string {
	var e orderedEnv
	for _, kv := range o.Host {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || neverPassed[k] || strings.HasPrefix(k, SetPrefix) {
			continue
		}
		if sched := IsSchedulerVar(k); !sched && MatchName(o.Deny, k) ||
			o.CleanEnv && !sched && !cleanEnvKept[k] && !MatchName(o.Pass, k) {
			continue
		}
		e.set(kv)
	}
	e.set("PATH=" + o.DefaultPath)
	for _, kv := range o.Image {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if _, onHost := envlist.Get(o.Host, k); onHost && IsSchedulerVar(k) {
			continue
		}
		e.set(kv)
	}
	for _, kv := range o.Marks {
		e.set(kv)
	}
	for _, kv := range o.Host {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, SetPrefix) && validName(k[len(SetPrefix):]) {
			e.set(k[len(SetPrefix):] + "=" + v)
		}
	}
	for _, kv := range o.Set {
		if !strings.Contains(kv, "=") {
			v, ok := envlist.Get(o.Host, kv)
			if !ok {
				continue
			}
			kv += "=" + v
		}
		e.set(kv)
	}
	return e.list
}

// orderedEnv keeps first-seen order, so the job sees a stable environment.
type orderedEnv struct {
	list  []string
	index map[string]int
}

func (e *orderedEnv) set(kv string) {
	k, _, _ := strings.Cut(kv, "=")
	if e.index == nil {
		e.index = map[string]int{}
	}
	if i, ok := e.index[k]; ok {
		e.list[i] = kv
		return
	}
	e.index[k] = len(e.list)
	e.list = append(e.list, kv)
}

// CheckEnvEntry validates one --env value: K=V, or K to copy K from the host.
func CheckEnvEntry(kv string) error {
	k, _, _ := strings.Cut(kv, "=")
	if !validName(k) {
		return fmt.Errorf("bad variable %q: want NAME=VALUE", kv)
	}
	return nil
}

// ParseEnvFile reads an --env-file: NAME=VALUE lines, optionally starting
// with "export ", with # comments and blank lines. A value wrapped in
// matching single or double quotes loses them; nothing else is expanded.
func ParseEnvFile(name string, data []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || !validName(k) {
			return nil, fmt.Errorf("%s:%d: want NAME=VALUE, got %q", name, n, line)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, k+"="+v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

func validName(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
