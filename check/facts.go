package check

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hpcrun/hpcrun/gpu"
	"github.com/hpcrun/hpcrun/jobs"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

// gpuVendors are the drivers hpcrun can bind, with their flags.
var gpuVendors = []struct {
	vendor     gpu.Vendor
	name, flag string
}{
	{gpu.NVIDIA, "NVIDIA GPU", "--gpu"},
	{gpu.ROCm, "AMD GPU", "--rocm"},
}

// gpus reports each driver found, and each GPU whose driver is
// unusable; one informational line when the node has neither.
func gpus(e Env) []Result {
	var rs []Result
	root := e.GPU.Root
	if root == "" {
		root = "/"
	}
	for _, v := range gpuVendors {
		d, err := gpu.Find(v.vendor, e.GPU)
		if err == nil {
			rs = append(rs, Result{Name: v.name, Status: OK, Detail: driverDetail(v.flag, d)})
			continue
		}
		dev := v.vendor.ControlDevice()
		if _, serr := os.Stat(filepath.Join(root, dev)); serr != nil {
			continue // no such GPU here
		}
		rs = append(rs, Result{Name: v.name, Status: Warn,
			Detail: fmt.Sprintf("%s is here, but %s will fail: %s", dev, v.flag, termsafe.Line(err.Error())),
			Fix:    "ask the node's admins to repair the driver; the message says what is missing"})
	}
	if len(rs) == 0 {
		rs = append(rs, Result{Name: "GPU", Status: Info,
			Detail: "no NVIDIA or ROCm driver on this node: --gpu and --rocm would fail here"})
	}
	return rs
}

func driverDetail(flag string, d gpu.Driver) string {
	var b strings.Builder
	b.WriteString(string(d.Vendor))
	if d.Version != "" {
		b.WriteString(" " + d.Version)
	}
	fmt.Fprintf(&b, ": %s binds %d libraries", flag, len(d.Libs))
	if len(d.Bins) > 0 {
		var names []string
		for _, f := range d.Bins {
			names = append(names, f.Name)
		}
		fmt.Fprintf(&b, " and %s", strings.Join(names, ", "))
	}
	fmt.Fprintf(&b, "; devices %s", strings.Join(d.Devices, " "))
	if len(d.Binding) > 0 {
		b.WriteString("; " + strings.Join(d.Binding, " "))
	}
	return b.String()
}

// scheduler reports the batch job that the environment describes.
func scheduler(e Env) Result {
	j := jobs.FromEnv(e.Environ)
	r := Result{Name: "scheduler", Status: Info}
	if j.Scheduler == jobs.None {
		r.Detail = "none: no SLURM_JOB_ID or PBS_JOBID in the environment"
		return r
	}
	var facts []string
	add := func(name, v string) {
		if v != "" {
			facts = append(facts, name+" "+v)
		}
	}
	add("job", j.ID)
	add("step", j.Step)
	add("array job", j.ArrayJob)
	add("array task", j.ArrayTask)
	add("rank", j.Rank)
	if j.LocalRank >= 0 {
		lr := strconv.Itoa(j.LocalRank)
		if j.LocalSize > 0 {
			lr += " of " + strconv.Itoa(j.LocalSize)
		}
		add("local rank", lr)
	} else if j.LocalSize > 0 {
		add("tasks on this node", strconv.Itoa(j.LocalSize))
	}
	add("tmp dir", j.TmpDir)
	add("runs are named", j.Name())
	name := string(j.Scheduler)
	if j.Flavor != "" {
		name += " (" + j.Flavor + ")"
	}
	r.Detail = name + ": " + strings.Join(facts, ", ")
	return r
}
