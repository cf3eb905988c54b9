package runtime

// What a bundle's linux.resources writes into a cgroup, for each version
// of the hierarchy, and where its linux.cgroupsPath puts that cgroup: the
// pure half of cgroups_linux.go, which applies it where the container's
// cgroup is delegated to the caller.

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cgWrite is one write into a container's cgroup: Value into File, which
// controller Ctrl provides (for cgroup v1, the hierarchy it is mounted
// in). Res names the linux.resources entry it comes from, for the
// warning about what was not applied.
type cgWrite struct {
	Res, Ctrl, File, Value string
}

// cgroupV1Writes is what r writes into a cgroup v1 container cgroup, in
// order (the period before the quota, the memory limit before
// memory+swap, which must not be below it), as runc's cgroupfs driver
// writes them. The device list is not among them.
func cgroupV1Writes(r *specs.LinuxResources) []cgWrite {
	var w []cgWrite
	add := func(res, ctrl, file, value string) { w = append(w, cgWrite{res, ctrl, file, value}) }
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			add("memory", "memory", "memory.limit_in_bytes", strconv.FormatInt(*m.Limit, 10))
		}
		if m.Reservation != nil {
			add("memory", "memory", "memory.soft_limit_in_bytes", strconv.FormatInt(*m.Reservation, 10))
		}
		if m.Swap != nil {
			add("memory", "memory", "memory.memsw.limit_in_bytes", strconv.FormatInt(*m.Swap, 10))
		}
		// Kernel memory limits, which the spec deprecates and newer
		// kernels refuse (then they are not applied).
		if m.Kernel != nil {
			add("memory", "memory", "memory.kmem.limit_in_bytes", strconv.FormatInt(*m.Kernel, 10))
		}
		if m.KernelTCP != nil {
			add("memory", "memory", "memory.kmem.tcp.limit_in_bytes", strconv.FormatInt(*m.KernelTCP, 10))
		}
		if m.Swappiness != nil {
			add("memory", "memory", "memory.swappiness", strconv.FormatUint(*m.Swappiness, 10))
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			add("memory", "memory", "memory.oom_control", "1")
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil {
			add("cpu", "cpu", "cpu.shares", strconv.FormatUint(*c.Shares, 10))
		}
		if c.Period != nil {
			add("cpu", "cpu", "cpu.cfs_period_us", strconv.FormatUint(*c.Period, 10))
		}
		if c.Quota != nil {
			add("cpu", "cpu", "cpu.cfs_quota_us", strconv.FormatInt(*c.Quota, 10))
		}
		if c.RealtimePeriod != nil {
			add("cpu", "cpu", "cpu.rt_period_us", strconv.FormatUint(*c.RealtimePeriod, 10))
		}
		if c.RealtimeRuntime != nil {
			add("cpu", "cpu", "cpu.rt_runtime_us", strconv.FormatInt(*c.RealtimeRuntime, 10))
		}
		if c.Cpus != "" {
			add("cpu", "cpuset", "cpuset.cpus", c.Cpus)
		}
		if c.Mems != "" {
			add("cpu", "cpuset", "cpuset.mems", c.Mems)
		}
	}
	if p := r.Pids; p != nil && p.Limit != 0 {
		add("pids", "pids", "pids.max", pidsMax(p.Limit))
	}
	if b := r.BlockIO; b != nil {
		if b.Weight != nil {
			add("blockIO", "blkio", "blkio.weight", strconv.Itoa(int(*b.Weight)))
		}
		if b.LeafWeight != nil {
			add("blockIO", "blkio", "blkio.leaf_weight", strconv.Itoa(int(*b.LeafWeight)))
		}
		for _, d := range b.WeightDevice {
			if d.Weight != nil {
				add("blockIO", "blkio", "blkio.weight_device", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.Weight))
			}
			if d.LeafWeight != nil {
				add("blockIO", "blkio", "blkio.leaf_weight_device", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.LeafWeight))
			}
		}
		for _, t := range []struct {
			file string
			devs []specs.LinuxThrottleDevice
		}{
			{"blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice}, {"blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
			{"blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice}, {"blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
		} {
			for _, d := range t.devs {
				add("blockIO", "blkio", t.file, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, d.Rate))
			}
		}
	}
	for _, h := range r.HugepageLimits {
		add("hugepageLimits", "hugetlb", "hugetlb."+h.Pagesize+".limit_in_bytes", strconv.FormatUint(h.Limit, 10))
	}
	if n := r.Network; n != nil {
		if n.ClassID != nil {
			add("network", "net_cls", "net_cls.classid", strconv.FormatUint(uint64(*n.ClassID), 10))
		}
		for _, p := range n.Priorities {
			add("network", "net_prio", "net_prio.ifpriomap", fmt.Sprintf("%s %d", p.Name, p.Priority))
		}
	}
	w = append(w, rdmaWrites(r.Rdma)...)
	return w
}

// cgroupV2Writes is what r writes into a cgroup v2 container cgroup, with
// runc's conversions of the v1 values the spec gives (cpu.shares to
// cpu.weight, blkio weights to io.weight, memory+swap to swap alone),
// then linux.resources.unified as it stands. An error is a spec whose
// values cannot be converted. What v2 has no file for (net_cls, net_prio,
// the realtime and leaf weights, swappiness) comes back in notV2, File
// naming the field.
func cgroupV2Writes(r *specs.LinuxResources) (w, notV2 []cgWrite, err error) {
	add := func(res, ctrl, file, value string) { w = append(w, cgWrite{res, ctrl, file, value}) }
	none := func(res, ctrl, what string) { notV2 = append(notV2, cgWrite{Res: res, Ctrl: ctrl, File: what}) }
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			add("memory", "memory", "memory.max", memMax(*m.Limit))
		}
		if m.Reservation != nil {
			add("memory", "memory", "memory.low", memMax(*m.Reservation))
		}
		if m.Swap != nil || (m.Limit != nil && *m.Limit == -1) {
			swap, err := swapV2(deref(m.Swap), deref(m.Limit))
			if err != nil {
				return nil, nil, fmt.Errorf("linux.resources.memory: %w", err)
			}
			if swap != 0 {
				add("memory", "memory", "memory.swap.max", memMax(swap))
			}
		}
		if m.Kernel != nil || m.KernelTCP != nil {
			none("memory", "memory", "kernel memory limit")
		}
		if m.Swappiness != nil {
			none("memory", "memory", "swappiness")
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			none("memory", "memory", "disableOOMKiller")
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			add("cpu", "cpu", "cpu.weight", strconv.FormatUint(1+((*c.Shares-2)*9999)/262142, 10))
		}
		if c.Quota != nil || c.Period != nil {
			quota, period := "max", uint64(100000)
			if c.Quota != nil && *c.Quota > 0 {
				quota = strconv.FormatInt(*c.Quota, 10)
			}
			if c.Period != nil && *c.Period != 0 {
				period = *c.Period
			}
			add("cpu", "cpu", "cpu.max", quota+" "+strconv.FormatUint(period, 10))
		}
		if c.RealtimePeriod != nil || c.RealtimeRuntime != nil {
			none("cpu", "cpu", "realtimeRuntime/realtimePeriod")
		}
		if c.Cpus != "" {
			add("cpu", "cpuset", "cpuset.cpus", c.Cpus)
		}
		if c.Mems != "" {
			add("cpu", "cpuset", "cpuset.mems", c.Mems)
		}
	}
	if p := r.Pids; p != nil && p.Limit != 0 {
		add("pids", "pids", "pids.max", pidsMax(p.Limit))
	}
	if b := r.BlockIO; b != nil {
		if b.Weight != nil && *b.Weight != 0 {
			add("blockIO", "io", "io.weight", "default "+strconv.Itoa(ioWeight(*b.Weight)))
		}
		if b.LeafWeight != nil {
			none("blockIO", "io", "leafWeight")
		}
		for _, d := range b.WeightDevice {
			if d.LeafWeight != nil {
				none("blockIO", "io", "leafWeight")
			}
			if d.Weight != nil {
				add("blockIO", "io", "io.weight", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, ioWeight(*d.Weight)))
			}
		}
		for _, t := range []struct {
			key  string
			devs []specs.LinuxThrottleDevice
		}{
			{"rbps", b.ThrottleReadBpsDevice}, {"wbps", b.ThrottleWriteBpsDevice},
			{"riops", b.ThrottleReadIOPSDevice}, {"wiops", b.ThrottleWriteIOPSDevice},
		} {
			for _, d := range t.devs {
				add("blockIO", "io", "io.max", fmt.Sprintf("%d:%d %s=%d", d.Major, d.Minor, t.key, d.Rate))
			}
		}
	}
	for _, h := range r.HugepageLimits {
		add("hugepageLimits", "hugetlb", "hugetlb."+h.Pagesize+".max", strconv.FormatUint(h.Limit, 10))
	}
	if n := r.Network; n != nil && (n.ClassID != nil || len(n.Priorities) > 0) {
		none("network", "net_cls", "classID/priorities")
	}
	w = append(w, rdmaWrites(r.Rdma)...)
	keys := make([]string, 0, len(r.Unified))
	for k := range r.Unified {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ctrl, _, ok := strings.Cut(k, ".")
		if !ok || strings.ContainsAny(k, "/\x00") || ctrl == "cgroup" {
			return nil, nil, fmt.Errorf("linux.resources.unified: %q is not a controller's file (such as memory.high)", k)
		}
		add("unified", ctrl, k, r.Unified[k])
	}
	return w, notV2, nil
}

// cgroupPlan is which hierarchy applies each write on a host, and what
// is not applied, and why.
type cgroupPlan struct {
	groups map[string][]cgWrite // hierarchy (a v1 controller, "" for v2): its writes
	order  []string             // the hierarchies, as first used
	why    map[string][]string  // linux.resources entry: why (some of) it is not applied
}

// planCgroups sorts the writes of cgroupV1Writes (v1w) and
// cgroupV2Writes (v2w, notV2) by the hierarchy that has their controller
// on a host whose cgroup v1 controllers are mounted as v1 says (each
// controller: its mount point) and whose cgroup v2 tree offers v2ctrls. A
// controller in a v1 hierarchy takes the v1 writes; else one the v2 tree
// offers takes the v2 ones; else the entry is not applied.
func planCgroups(v1w, v2w, notV2 []cgWrite, v1 map[string]string, v2ctrls []string) *cgroupPlan {
	p := &cgroupPlan{groups: map[string][]cgWrite{}, why: map[string][]string{}}
	use := func(h string, w cgWrite) {
		if _, ok := p.groups[h]; !ok {
			p.order = append(p.order, h)
		}
		p.groups[h] = append(p.groups[h], w)
	}
	for _, w := range v1w {
		switch {
		case v1[w.Ctrl] != "":
			use(w.Ctrl, w)
		case slices.Contains(v2ctrls, v2Name(w.Ctrl)):
			// cgroup v2 has it: cgroupV2Writes says how.
		default:
			p.not(w.Res, "no "+w.Ctrl+" controller here")
		}
	}
	for _, w := range v2w {
		switch inV1 := v1[v1Name(w.Ctrl)] != ""; {
		case inV1 && w.Res == "unified":
			p.not(w.Res, w.Ctrl+" is a cgroup v1 controller here")
		case inV1:
			// a v1 hierarchy has it: cgroupV1Writes says how.
		case slices.Contains(v2ctrls, w.Ctrl):
			use("", w)
		case w.Res == "unified":
			p.not(w.Res, "no "+w.Ctrl+" controller here")
		}
	}
	for _, n := range notV2 {
		if v1[v1Name(n.Ctrl)] == "" && slices.Contains(v2ctrls, n.Ctrl) {
			p.not(n.Res, "cgroup v2 has no "+n.File)
		}
	}
	return p
}

// not records that (some of) linux.resources entry res is not applied,
// and why.
func (p *cgroupPlan) not(res, reason string) {
	if !slices.Contains(p.why[res], reason) {
		p.why[res] = append(p.why[res], reason)
	}
}

// unapplied is the warning's list: each entry not applied, with why.
func (p *cgroupPlan) unapplied() []string {
	var names, lines []string
	for r := range p.why {
		names = append(names, r)
	}
	slices.Sort(names)
	for _, r := range names {
		lines = append(lines, "linux.resources."+r+" ("+strings.Join(p.why[r], "; ")+")")
	}
	return lines
}

// v1Name is cgroup v2 controller c's name in cgroup v1, v2Name the
// reverse: only io (v1's blkio) differs.
func v1Name(c string) string {
	if c == "io" {
		return "blkio"
	}
	return c
}

func v2Name(c string) string {
	if c == "blkio" {
		return "io"
	}
	return c
}

func rdmaWrites(rdma map[string]specs.LinuxRdma) []cgWrite {
	devs := make([]string, 0, len(rdma))
	for d := range rdma {
		devs = append(devs, d)
	}
	slices.Sort(devs)
	var w []cgWrite
	for _, d := range devs {
		v := d
		if h := rdma[d].HcaHandles; h != nil {
			v += " hca_handle=" + strconv.FormatUint(uint64(*h), 10)
		}
		if o := rdma[d].HcaObjects; o != nil {
			v += " hca_object=" + strconv.FormatUint(uint64(*o), 10)
		}
		w = append(w, cgWrite{"rdma", "rdma", "rdma.max", v})
	}
	return w
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// pidsMax is pids.max for a spec's pids.limit: "max" for none (-1).
func pidsMax(limit int64) string {
	if limit < 0 {
		return "max"
	}
	return strconv.FormatInt(limit, 10)
}

// memMax is a cgroup v2 memory file's value: "max" for -1.
func memMax(v int64) string {
	if v == -1 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// ioWeight converts a blkio weight (10 to 1000) to io.weight's scale (1
// to 10000), as runc does.
func ioWeight(w uint16) int {
	return 1 + (int(w)-10)*9999/990
}

// swapV2 is memory.swap.max for a spec's swap (memory+swap, as cgroup v1
// counts it) and memory limit, as runc converts them: 0 leaves it alone,
// -1 is "max".
func swapV2(swap, mem int64) (int64, error) {
	if mem == -1 && swap == 0 {
		return -1, nil
	}
	if swap == -1 || swap == 0 {
		return swap, nil
	}
	switch {
	case mem == 0 || mem == -1:
		return 0, errors.New("swap is limited but memory is not; set memory.limit too")
	case mem < 0:
		return 0, fmt.Errorf("memory limit %d is not a size", mem)
	case swap < mem:
		return 0, fmt.Errorf("swap (memory+swap) %d is below the memory limit %d; raise it", swap, mem)
	}
	return swap - mem, nil
}

// cgroupPath is where, relative to a hierarchy's mount point, the
// container's cgroup goes for linux.cgroupsPath p, as runc's cgroupfs
// driver places it: an absolute p from the mount point, a relative one
// below own, the caller's own cgroup in that hierarchy (as
// /proc/self/cgroup names it), and none as the container's id below own.
// ".." never leads above the mount point or out of own. systemd's
// "slice:prefix:name" form is not a path and is refused.
func cgroupPath(p, own, id string) (string, error) {
	if strings.ContainsRune(p, 0) || strings.Count(p, ":") == 2 && !strings.Contains(p, "/") {
		return "", fmt.Errorf("linux.cgroupsPath %q is not a path (the systemd slice:prefix:name form is not supported); give a cgroup path", p)
	}
	if p == "" {
		p = id
	}
	if path.IsAbs(p) {
		p = path.Clean(p)
	} else {
		p = path.Join(path.Clean("/"+own), path.Clean("/"+p))
	}
	if p == "/" {
		return "", fmt.Errorf("linux.cgroupsPath %q names the root cgroup; give a cgroup of the container's own", p)
	}
	return p, nil
}
