package runtime

import (
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCgroupWrites(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	u16 := func(v uint16) *uint16 { return &v }
	u32 := func(v uint32) *uint32 { return &v }
	yes := true
	w := func(res, ctrl, file, value string) cgWrite { return cgWrite{res, ctrl, file, value} }
	dev := specs.LinuxBlockIODevice{Major: 8, Minor: 0}
	for _, c := range []struct {
		name   string
		r      specs.LinuxResources
		v1, v2 []cgWrite
		notV2  []string // the fields v2 has no file for
		err    string   // from cgroupV2Writes
	}{
		{"none", specs.LinuxResources{Memory: &specs.LinuxMemory{}, Pids: &specs.LinuxPids{}}, nil, nil, nil, ""},
		{"pids", specs.LinuxResources{Pids: &specs.LinuxPids{Limit: 50}},
			[]cgWrite{w("pids", "pids", "pids.max", "50")}, []cgWrite{w("pids", "pids", "pids.max", "50")}, nil, ""},
		{"pids unlimited", specs.LinuxResources{Pids: &specs.LinuxPids{Limit: -1}},
			[]cgWrite{w("pids", "pids", "pids.max", "max")}, []cgWrite{w("pids", "pids", "pids.max", "max")}, nil, ""},
		{"memory", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Reservation: i64(32 << 20), Swap: i64(128 << 20), Swappiness: u64(10), DisableOOMKiller: &yes}},
			[]cgWrite{w("memory", "memory", "memory.limit_in_bytes", "67108864"), w("memory", "memory", "memory.soft_limit_in_bytes", "33554432"),
				w("memory", "memory", "memory.memsw.limit_in_bytes", "134217728"), w("memory", "memory", "memory.swappiness", "10"), w("memory", "memory", "memory.oom_control", "1")},
			[]cgWrite{w("memory", "memory", "memory.max", "67108864"), w("memory", "memory", "memory.low", "33554432"), w("memory", "memory", "memory.swap.max", "67108864")},
			[]string{"swappiness", "disableOOMKiller"}, ""},
		{"kernel memory", specs.LinuxResources{Memory: &specs.LinuxMemory{Kernel: i64(1 << 20), KernelTCP: i64(2 << 20)}},
			[]cgWrite{w("memory", "memory", "memory.kmem.limit_in_bytes", "1048576"), w("memory", "memory", "memory.kmem.tcp.limit_in_bytes", "2097152")},
			nil, []string{"kernel memory limit"}, ""},
		{"memory unlimited", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1)}},
			[]cgWrite{w("memory", "memory", "memory.limit_in_bytes", "-1")},
			[]cgWrite{w("memory", "memory", "memory.max", "max"), w("memory", "memory", "memory.swap.max", "max")}, nil, ""},
		{"swap without memory", specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: i64(1 << 20)}},
			[]cgWrite{w("memory", "memory", "memory.memsw.limit_in_bytes", "1048576")}, nil, nil, "set memory.limit too"},
		{"swap below memory", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(2 << 20), Swap: i64(1 << 20)}},
			nil, nil, nil, "below the memory limit"},
		{"cpu", specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(1024), Quota: i64(50000), Period: u64(100000), Cpus: "0-1", Mems: "0"}},
			[]cgWrite{w("cpu", "cpu", "cpu.shares", "1024"), w("cpu", "cpu", "cpu.cfs_period_us", "100000"), w("cpu", "cpu", "cpu.cfs_quota_us", "50000"),
				w("cpu", "cpuset", "cpuset.cpus", "0-1"), w("cpu", "cpuset", "cpuset.mems", "0")},
			[]cgWrite{w("cpu", "cpu", "cpu.weight", "39"), w("cpu", "cpu", "cpu.max", "50000 100000"),
				w("cpu", "cpuset", "cpuset.cpus", "0-1"), w("cpu", "cpuset", "cpuset.mems", "0")}, nil, ""},
		{"cpu quota alone", specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1), RealtimeRuntime: i64(5)}},
			[]cgWrite{w("cpu", "cpu", "cpu.cfs_quota_us", "-1"), w("cpu", "cpu", "cpu.rt_runtime_us", "5")},
			[]cgWrite{w("cpu", "cpu", "cpu.max", "max 100000")}, []string{"realtimeRuntime/realtimePeriod"}, ""},
		{"blkio", specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: u16(500), LeafWeight: u16(300),
			WeightDevice:          []specs.LinuxWeightDevice{{LinuxBlockIODevice: dev, Weight: u16(10)}},
			ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev, Rate: 1000}}, ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev, Rate: 7}}}},
			[]cgWrite{w("blockIO", "blkio", "blkio.weight", "500"), w("blockIO", "blkio", "blkio.leaf_weight", "300"), w("blockIO", "blkio", "blkio.weight_device", "8:0 10"),
				w("blockIO", "blkio", "blkio.throttle.read_bps_device", "8:0 1000"), w("blockIO", "blkio", "blkio.throttle.write_iops_device", "8:0 7")},
			[]cgWrite{w("blockIO", "io", "io.weight", "default 4950"), w("blockIO", "io", "io.weight", "8:0 1"),
				w("blockIO", "io", "io.max", "8:0 rbps=1000"), w("blockIO", "io", "io.max", "8:0 wiops=7")}, []string{"leafWeight"}, ""},
		{"hugetlb", specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}},
			[]cgWrite{w("hugepageLimits", "hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304")},
			[]cgWrite{w("hugepageLimits", "hugetlb", "hugetlb.2MB.max", "4194304")}, nil, ""},
		{"network", specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: u32(0x100001), Priorities: []specs.LinuxInterfacePriority{{Name: "lo", Priority: 2}}}},
			[]cgWrite{w("network", "net_cls", "net_cls.classid", "1048577"), w("network", "net_prio", "net_prio.ifpriomap", "lo 2")},
			nil, []string{"classID/priorities"}, ""},
		{"rdma", specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{"mlx5_1": {HcaHandles: u32(3)}, "mlx4_0": {HcaHandles: u32(1), HcaObjects: u32(2)}}},
			[]cgWrite{w("rdma", "rdma", "rdma.max", "mlx4_0 hca_handle=1 hca_object=2"), w("rdma", "rdma", "rdma.max", "mlx5_1 hca_handle=3")},
			[]cgWrite{w("rdma", "rdma", "rdma.max", "mlx4_0 hca_handle=1 hca_object=2"), w("rdma", "rdma", "rdma.max", "mlx5_1 hca_handle=3")}, nil, ""},
		{"unified", specs.LinuxResources{Unified: map[string]string{"memory.high": "1G", "io.latency": "8:0 target=10"}},
			nil, []cgWrite{w("unified", "io", "io.latency", "8:0 target=10"), w("unified", "memory", "memory.high", "1G")}, nil, ""},
		{"unified not a file", specs.LinuxResources{Unified: map[string]string{"../memory.high": "1G"}}, nil, nil, nil, "not a controller's file"},
		{"unified cgroup file", specs.LinuxResources{Unified: map[string]string{"cgroup.procs": "1"}}, nil, nil, nil, "not a controller's file"},
	} {
		if got := cgroupV1Writes(&c.r); c.err == "" && !reflect.DeepEqual(got, c.v1) {
			t.Errorf("%s: v1 %q, want %q", c.name, got, c.v1)
		}
		got, notV2, err := cgroupV2Writes(&c.r)
		if (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: v2 error %v, want %q", c.name, err, c.err)
			continue
		}
		var not []string
		for _, n := range notV2 {
			not = append(not, n.File)
		}
		if !reflect.DeepEqual(got, c.v2) || !reflect.DeepEqual(not, c.notV2) {
			t.Errorf("%s: v2 %q, not %q; want %q, not %q", c.name, got, not, c.v2, c.notV2)
		}
	}
}

func TestCgroupPath(t *testing.T) {
	for _, c := range []struct {
		path, own, want, err string
	}{
		{"/cgrouptest", "/user.slice/job_1", "/cgrouptest", ""},
		{"/a/b/../c", "/x", "/a/c", ""},
		{"/../../etc", "/x", "/etc", ""}, // within the mount point, as it is opened from there
		{"c1", "/uid_1/job_2/step_0", "/uid_1/job_2/step_0/c1", ""},
		{"../../c1", "/uid_1/job_2", "/uid_1/job_2/c1", ""}, // never out of the caller's own
		{"a/./b/", "/", "/a/b", ""},
		{"", "/uid_1/job_2", "/uid_1/job_2/ctr", ""}, // none: the container's id
		{"", "/", "/ctr", ""},
		{"/", "/x", "", "root cgroup"},
		{"..", "/", "", "root cgroup"},
		{"system.slice:hpcrun:ctr", "/", "", "slice:prefix:name"},
		{"/a\x00b", "/", "", "not a path"},
	} {
		got, err := cgroupPath(c.path, c.own, "ctr")
		if got != c.want || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("cgroupPath(%q, %q): %q, %v; want %q, %q", c.path, c.own, got, err, c.want, c.err)
		}
	}
}

func TestPlanCgroups(t *testing.T) {
	limit, swappiness, weight, class := int64(64<<20), uint64(10), uint16(500), uint32(7)
	r := &specs.LinuxResources{
		Memory:         &specs.LinuxMemory{Limit: &limit, Swappiness: &swappiness},
		Pids:           &specs.LinuxPids{Limit: 50},
		BlockIO:        &specs.LinuxBlockIO{Weight: &weight},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
		Network:        &specs.LinuxNetwork{ClassID: &class},
		Unified:        map[string]string{"memory.high": "1G"},
	}
	v1w := cgroupV1Writes(r)
	v2w, notV2, err := cgroupV2Writes(r)
	if err != nil {
		t.Fatal(err)
	}
	mounts := func(cs ...string) map[string]string {
		m := map[string]string{}
		for _, c := range cs {
			m[c] = "/sys/fs/cgroup/" + c
		}
		return m
	}
	files := func(p *cgroupPlan) map[string][]string {
		m := map[string][]string{}
		for h, ws := range p.groups {
			for _, w := range ws {
				m[h] = append(m[h], w.File)
			}
		}
		return m
	}
	for _, c := range []struct {
		name      string
		v1        map[string]string
		v2        []string
		files     map[string][]string
		unapplied []string
	}{
		{"hybrid, as this host", mounts("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"), []string{"hugetlb"},
			map[string][]string{"memory": {"memory.limit_in_bytes", "memory.swappiness"}, "pids": {"pids.max"}, "blkio": {"blkio.weight"}, "": {"hugetlb.2MB.max"}},
			[]string{"linux.resources.network (no net_cls controller here)", "linux.resources.unified (memory is a cgroup v1 controller here)"}},
		{"unified", nil, []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"},
			map[string][]string{"": {"memory.max", "pids.max", "io.weight", "hugetlb.2MB.max", "memory.high"}},
			[]string{"linux.resources.memory (cgroup v2 has no swappiness)", "linux.resources.network (no net_cls controller here)"}},
		{"unified, no controller delegated", nil, nil, map[string][]string{},
			[]string{"linux.resources.blockIO (no blkio controller here)", "linux.resources.hugepageLimits (no hugetlb controller here)",
				"linux.resources.memory (no memory controller here)", "linux.resources.network (no net_cls controller here)",
				"linux.resources.pids (no pids controller here)", "linux.resources.unified (no memory controller here)"}},
		{"v1 with net_cls and hugetlb", mounts("memory", "pids", "blkio", "hugetlb", "net_cls"), nil,
			map[string][]string{"memory": {"memory.limit_in_bytes", "memory.swappiness"}, "pids": {"pids.max"}, "blkio": {"blkio.weight"},
				"hugetlb": {"hugetlb.2MB.limit_in_bytes"}, "net_cls": {"net_cls.classid"}},
			[]string{"linux.resources.unified (memory is a cgroup v1 controller here)"}},
	} {
		p := planCgroups(v1w, v2w, notV2, c.v1, c.v2)
		if got := files(p); !reflect.DeepEqual(got, c.files) || len(p.order) != len(c.files) {
			t.Errorf("%s: writes %q (order %q), want %q", c.name, got, p.order, c.files)
		}
		if got := p.unapplied(); !reflect.DeepEqual(got, c.unapplied) {
			t.Errorf("%s: not applied %q, want %q", c.name, got, c.unapplied)
		}
	}
}
