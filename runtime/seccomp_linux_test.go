package runtime

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/internal/syscalltab"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// call is one system call as a filter sees it.
type sysCall struct {
	arch *syscalltab.Arch
	name string
	args [6]uint64
}

// runBPF runs prog over c, as the kernel would: a small interpreter of
// the instructions the assembler emits.
func runBPF(t *testing.T, prog []unix.SockFilter, c sysCall) uint32 {
	t.Helper()
	nr, ok := c.arch.Number(c.name)
	if !ok {
		t.Fatalf("no syscall %s on %s", c.name, c.arch.Name)
	}
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], uint32(nr|c.arch.Mask))
	binary.LittleEndian.PutUint32(data[4:], c.arch.ID)
	for i, a := range c.args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			var hold bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				hold = acc == in.K
			case unix.BPF_JGT:
				hold = acc > in.K
			case unix.BPF_JGE:
				hold = acc >= in.K
			}
			if hold {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("instruction %d: unexpected code %#x", pc, in.Code)
		}
	}
	t.Fatal("program ran off its end")
	return 0
}

func errnoRet(n uint) *uint { return &n }

func rule(action specs.LinuxSeccompAction, names ...string) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: names, Action: action}
}

func TestCompileSeccomp(t *testing.T) {
	x64, x86, x32 := syscalltab.X86_64, syscalltab.I386, syscalltab.X32
	allowMkdirErrno := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: errnoRet(95)},
		rule(specs.ActKill, "getppid"),
		rule(specs.ActKillProcess, "getpgrp"),
		rule(specs.ActTrap, "getuid"),
		rule(specs.ActLog, "getgid"),
		{Names: []string{"geteuid"}, Action: specs.ActTrace, ErrnoRet: errnoRet(7)},
		rule(specs.ActErrno, "no_such_call_anywhere", "rmdir"),
	}}
	allArches := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchS390X},
		Syscalls:      []specs.LinuxSyscall{rule(specs.ActErrno, "mkdir")}}
	allowList := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		rule(specs.ActAllow, "read", "write", "exit_group"),
	}}
	defaultErrno := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: errnoRet(13),
		Syscalls: []specs.LinuxSyscall{rule(specs.ActAllow, "read", "exit_group")}}
	shadow := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		rule(specs.ActAllow, "mkdir"), rule(specs.ActKillProcess, "mkdir"),
	}}
	first := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		rule(specs.ActErrno, "mkdir"), rule(specs.ActKillProcess, "mkdir"),
	}}
	andArgs := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
			{Index: 0, Op: specs.OpEqualTo, Value: 8}, {Index: 1, Op: specs.OpNotEqual, Value: 1 << 32}}},
		rule(specs.ActAllow, "exit_group"),
	}}
	orArgs := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
			{Index: 0, Op: specs.OpEqualTo, Value: 8}, {Index: 0, Op: specs.OpEqualTo, Value: 0xffffffff}}},
		rule(specs.ActAllow, "exit_group"),
	}}
	clone := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Op: specs.OpMaskedEqual, Value: unix.CLONE_NEWUSER | unix.CLONE_NEWNS, ValueTwo: 0}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Op: specs.OpEqualTo, Value: 1<<32 | 8}}},
			rule(specs.ActAllow, "exit_group"),
		}}
	const eperm, enosys = retErrno | uint32(unix.EPERM), retErrno | uint32(unix.ENOSYS)
	tests := []struct {
		name    string
		s       *specs.LinuxSeccomp
		c       sysCall
		want    uint32
		comment string
	}{
		{"errnoRet", allowMkdirErrno, sysCall{arch: x64, name: "mkdir"}, retErrno | 95, ""},
		{"errnoRet on the second name", allowMkdirErrno, sysCall{arch: x64, name: "mkdirat"}, retErrno | 95, ""},
		{"default allow", allowMkdirErrno, sysCall{arch: x64, name: "getpid"}, retAllow, ""},
		{"SCMP_ACT_KILL kills the thread", allowMkdirErrno, sysCall{arch: x64, name: "getppid"}, retKillThread, ""},
		{"kill process", allowMkdirErrno, sysCall{arch: x64, name: "getpgrp"}, retKillProcess, ""},
		{"trap", allowMkdirErrno, sysCall{arch: x64, name: "getuid"}, retTrap, ""},
		{"log", allowMkdirErrno, sysCall{arch: x64, name: "getgid"}, retLog, ""},
		{"trace with errnoRet", allowMkdirErrno, sysCall{arch: x64, name: "geteuid"}, retTrace | 7, ""},
		{"unknown names are left out", allowMkdirErrno, sysCall{arch: x64, name: "rmdir"}, eperm, ""},
		{"an unlisted arch is killed", allowMkdirErrno, sysCall{arch: x86, name: "getpid"}, retKillProcess, ""},
		{"x32 unlisted is killed", allowMkdirErrno, sysCall{arch: x32, name: "getpid"}, retKillProcess, ""},
		{"x86_64", allArches, sysCall{arch: x64, name: "mkdir"}, eperm, ""},
		{"i386 numbers", allArches, sysCall{arch: x86, name: "mkdir"}, eperm, ""},
		{"i386 other", allArches, sysCall{arch: x86, name: "getpid"}, retAllow, ""},
		{"x32 numbers", allArches, sysCall{arch: x32, name: "mkdir"}, eperm, ""},
		{"x32 other", allArches, sysCall{arch: x32, name: "getpid"}, retAllow, ""},
		{"allow list", allowList, sysCall{arch: x64, name: "write"}, retAllow, ""},
		{"newer than the profile: ENOSYS", allowList, sysCall{arch: x64, name: "clone3"}, enosys, ""},
		{"blocked below the newest: default errno", allowList, sysCall{arch: x64, name: "mkdir"}, eperm, ""},
		{"defaultErrnoRet", defaultErrno, sysCall{arch: x64, name: "mkdir"}, retErrno | 13, ""},
		{"a rule like the default shadows nothing", shadow, sysCall{arch: x64, name: "mkdir"}, retKillProcess, ""},
		{"first match wins", first, sysCall{arch: x64, name: "mkdir"}, eperm, ""},
		{"and: both hold", andArgs, sysCall{arch: x64, name: "personality", args: [6]uint64{8, 1}}, retAllow, ""},
		{"and: first fails", andArgs, sysCall{arch: x64, name: "personality", args: [6]uint64{9, 1}}, eperm, ""},
		{"and: second fails", andArgs, sysCall{arch: x64, name: "personality", args: [6]uint64{8, 1 << 32}}, eperm, ""},
		{"and: high word of the first", andArgs, sysCall{arch: x64, name: "personality", args: [6]uint64{1<<32 | 8, 1}}, eperm, ""},
		{"same index: or, first", orArgs, sysCall{arch: x64, name: "personality", args: [6]uint64{8}}, retAllow, ""},
		{"same index: or, second", orArgs, sysCall{arch: x64, name: "personality", args: [6]uint64{0xffffffff}}, retAllow, ""},
		{"same index: or, neither", orArgs, sysCall{arch: x64, name: "personality", args: [6]uint64{7}}, eperm, ""},
		{"masked eq holds", clone, sysCall{arch: x64, name: "clone", args: [6]uint64{unix.CLONE_VM | uint64(unix.SIGCHLD)}}, retAllow, ""},
		{"masked eq fails", clone, sysCall{arch: x64, name: "clone", args: [6]uint64{unix.CLONE_NEWUSER}}, eperm, ""},
		{"masked eq on i386", clone, sysCall{arch: x86, name: "clone", args: [6]uint64{unix.CLONE_NEWNS}}, eperm, ""},
		{"i386 compares the low word", clone, sysCall{arch: x86, name: "personality", args: [6]uint64{8}}, retAllow, ""},
		{"x86_64 compares both words", clone, sysCall{arch: x64, name: "personality", args: [6]uint64{8}}, eperm, ""},
		{"x86_64 both words hold", clone, sysCall{arch: x64, name: "personality", args: [6]uint64{1<<32 | 8}}, retAllow, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := compileSeccomp(tt.s, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			if got := runBPF(t, f.Prog, tt.c); got != tt.want {
				t.Errorf("%s(%#x) on %s: got %#x, want %#x", tt.c.name, tt.c.args[:2], tt.c.arch.Name, got, tt.want)
			}
		})
	}
}

// TestSeccompCompare checks each operator at the edges of both words.
func TestSeccompCompare(t *testing.T) {
	const v = 1<<32 | 10
	tests := []struct {
		op   specs.LinuxSeccompOperator
		arg  uint64
		want bool
	}{
		{specs.OpEqualTo, v, true}, {specs.OpEqualTo, 10, false}, {specs.OpEqualTo, v + 1, false},
		{specs.OpNotEqual, v, false}, {specs.OpNotEqual, 10, true}, {specs.OpNotEqual, v + 1, true},
		{specs.OpGreaterThan, v + 1, true}, {specs.OpGreaterThan, v, false}, {specs.OpGreaterThan, 2 << 32, true},
		{specs.OpGreaterThan, 11, false},
		{specs.OpGreaterEqual, v, true}, {specs.OpGreaterEqual, v - 1, false}, {specs.OpGreaterEqual, 2 << 32, true},
		{specs.OpLessThan, v - 1, true}, {specs.OpLessThan, v, false}, {specs.OpLessThan, 0xffffffff, true},
		{specs.OpLessThan, 2<<32 | 1, false},
		{specs.OpLessEqual, v, true}, {specs.OpLessEqual, v + 1, false}, {specs.OpLessEqual, 5, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s_%#x", tt.op, tt.arg), func(t *testing.T) {
			s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 3, Op: tt.op, Value: v}}},
				rule(specs.ActAllow, "exit_group"),
			}}
			f, err := compileSeccomp(s, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			got := runBPF(t, f.Prog, sysCall{arch: syscalltab.X86_64, name: "personality", args: [6]uint64{3: tt.arg}}) == retAllow
			if got != tt.want {
				t.Errorf("%#x %s %#x: got %v, want %v", tt.arg, tt.op, uint64(v), got, tt.want)
			}
		})
	}
	masked := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"ioctl"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
			{Index: 1, Op: specs.OpMaskedEqual, Value: 0xffff_0000_ffff, ValueTwo: 0x1234_0000_5678}}},
	}}
	f, err := compileSeccomp(masked, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	for arg, want := range map[uint64]uint32{
		0x1234_abcd_5678: retErrno | uint32(unix.EPERM), 0x1234_0000_5679: retAllow, 0x1235_0000_5678: retAllow,
	} {
		if got := runBPF(t, f.Prog, sysCall{arch: syscalltab.X86_64, name: "ioctl", args: [6]uint64{1: arg}}); got != want {
			t.Errorf("masked eq, arg %#x: got %#x, want %#x", arg, got, want)
		}
	}
}

func TestCompileSeccompArm64(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchARM},
		Syscalls: []specs.LinuxSyscall{rule(specs.ActErrno, "mkdirat", "mkdir")}}
	f, err := compileSeccomp(s, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []sysCall{{arch: syscalltab.AARCH64, name: "mkdirat"}, {arch: syscalltab.ARM, name: "mkdir"}} {
		if got := runBPF(t, f.Prog, c); got != retErrno|uint32(unix.EPERM) {
			t.Errorf("%s on %s: got %#x", c.name, c.arch.Name, got)
		}
	}
	if got := runBPF(t, f.Prog, sysCall{arch: syscalltab.X86_64, name: "mkdir"}); got != retKillProcess {
		t.Errorf("x86_64 on an arm64 filter: got %#x", got)
	}
}

// TestCompileSeccompLong: a profile of hundreds of names keeps every
// jump in range, and each name still matches.
func TestCompileSeccompLong(t *testing.T) {
	var names []string
	for nr := 0; nr < 330; nr++ {
		if n, ok := syscalltab.X86_64.Syscall(nr); ok && n != "exit_group" {
			names = append(names, n)
		}
	}
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{rule(specs.ActAllow, names...),
			{Names: []string{"exit_group"}, Action: specs.ActErrno, ErrnoRet: errnoRet(5)}}}
	f, err := compileSeccomp(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{names[0], names[150], names[len(names)-1]} {
		if got := runBPF(t, f.Prog, sysCall{arch: syscalltab.X86_64, name: n}); got != retAllow {
			t.Errorf("%s: got %#x", n, got)
		}
	}
	if got := runBPF(t, f.Prog, sysCall{arch: syscalltab.X86_64, name: "exit_group"}); got != retErrno|5 {
		t.Errorf("exit_group after a long rule: got %#x", got)
	}
}

func TestCompileSeccompErrors(t *testing.T) {
	var many []specs.LinuxSyscall
	for i := 0; i < 700; i++ {
		many = append(many, specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpEqualTo, Value: uint64(i)}}})
	}
	tests := []struct {
		name string
		s    specs.LinuxSeccomp
		want string
	}{
		{"unknown default", specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_MAYBE"}, `defaultAction: unknown action "SCMP_ACT_MAYBE"`},
		{"empty default", specs.LinuxSeccomp{}, `defaultAction: unknown action ""`},
		{"unknown action", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{rule("allow", "mkdir")}},
			`syscalls[0]: unknown action "allow"`},
		{"notify", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{rule(specs.ActNotify, "mkdir")}},
			"SCMP_ACT_NOTIFY needs a seccomp agent"},
		{"no names", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{rule(specs.ActErrno)}},
			"syscalls[0]: no names"},
		{"errnoRet on allow", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActAllow, ErrnoRet: errnoRet(1)}}}, "errnoRet is for SCMP_ACT_ERRNO"},
		{"errnoRet too big", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: errnoRet(70000)}, "errnoRet 70000 is above 4095"},
		{"index", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}},
			"argument index 6 is above 5"},
		{"operator", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_ABOUT"}}}}},
			`unknown operator "SCMP_CMP_ABOUT"`},
		{"arch", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{"SCMP_ARCH_Z80"}}, `unknown architecture "SCMP_ARCH_Z80"`},
		{"flag", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_FAST"}}, `unsupported flag "SECCOMP_FILTER_FLAG_FAST"`},
		{"wait killable needs notify", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}}, "unsupported flag"},
		{"listener", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/agent.sock"}, "listenerPath needs a seccomp agent"},
		{"too long", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: many}, "the kernel takes at most 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileSeccomp(&tt.s, "amd64")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "linux.seccomp: ") {
				t.Fatalf("got %v, want linux.seccomp: ...%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestCompileSeccompFlags(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{
		"SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow}}
	f, err := compileSeccomp(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if f.Flags != unix.SECCOMP_FILTER_FLAG_LOG|unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW {
		t.Errorf("flags %#x", f.Flags)
	}
	if got := runBPF(t, f.Prog, sysCall{arch: syscalltab.X86_64, name: "mkdir"}); got != retAllow {
		t.Errorf("an empty allow filter: got %#x", got)
	}
}

func TestSeccompFilterString(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
		Syscalls: []specs.LinuxSyscall{rule(specs.ActErrno, "mkdir")}}
	f, err := compileSeccomp(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	g, err := parseSeccompFilter(f.String())
	if err != nil {
		t.Fatal(err)
	}
	if g.Flags != f.Flags || fmt.Sprint(g.Prog) != fmt.Sprint(f.Prog) {
		t.Errorf("round trip: got %+v, want %+v", g, f)
	}
	for _, bad := range []string{"", "2", "x:AAAA", "2:!!", "2:AAAA"} {
		if _, err := parseSeccompFilter(bad); err == nil {
			t.Errorf("parseSeccompFilter(%q) took it", bad)
		}
	}
}

func TestSeccompArgNeedsProc(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}}}
	if _, err := seccompArg(s); err == nil || !strings.Contains(err.Error(), "needs /proc") {
		t.Errorf("no /proc: got %v", err)
	}
	s.Mounts = []specs.Mount{{Destination: "/proc/", Type: "proc", Source: "proc"}}
	if a, err := seccompArg(s); err != nil || a == "" {
		t.Errorf("with /proc: got %q, %v", a, err)
	}
	if a, err := seccompArg(&specs.Spec{}); err != nil || a != "" {
		t.Errorf("no seccomp: got %q, %v", a, err)
	}
}

func TestShimPrivileges(t *testing.T) {
	caps := capSets{Bounding: 1<<40 | 5, Effective: 4, Permitted: 5, Inheritable: 1, Ambient: 1}
	for _, tc := range []struct {
		cfg  initConfig
		want bool
	}{
		{initConfig{Seccomp: "1:AAAA", NoNewPrivs: false, Caps: caps}, true},
		{initConfig{Seccomp: "1:AAAA", NoNewPrivs: true, Caps: caps}, false},
		{initConfig{NoNewPrivs: false, Caps: caps}, false},
	} {
		arg := tc.cfg.shimPrivileges()
		if (arg != "") != tc.want || tc.cfg.dropsInShim() != tc.want {
			t.Errorf("%+v: got %q", tc.cfg, arg)
			continue
		}
		if arg == "" {
			continue
		}
		k, root, err := parseShimPrivileges(arg)
		if err != nil || k != caps || !root {
			t.Errorf("round trip of %q: %+v %v %v", arg, k, root, err)
		}
	}
	if _, _, err := parseShimPrivileges("yes:1"); err == nil {
		t.Error("a bad argument was taken")
	}
}

// Many conditions on one argument (each its own alternative) make a rule
// longer than a conditional jump reaches: the calls it does not match
// still get past it.
func TestCompileSeccompManyConditions(t *testing.T) {
	var args []specs.LinuxSeccompArg
	for v := range uint64(100) {
		args = append(args, specs.LinuxSeccompArg{Index: 0, Value: 1000 + v, Op: specs.OpEqualTo})
	}
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"personality"}, Action: specs.ActErrno, Args: args},
		rule(specs.ActErrno, "mkdir"),
	}}
	f, err := compileSeccomp(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	eperm := retErrno | uint32(unix.EPERM)
	for _, c := range []struct {
		c    sysCall
		want uint32
	}{
		{sysCall{arch: syscalltab.X86_64, name: "personality", args: [6]uint64{1050}}, eperm},
		{sysCall{arch: syscalltab.X86_64, name: "personality", args: [6]uint64{7}}, retAllow},
		{sysCall{arch: syscalltab.X86_64, name: "mkdir"}, eperm},
		{sysCall{arch: syscalltab.X86_64, name: "getpid"}, retAllow},
	} {
		if got := runBPF(t, f.Prog, c.c); got != c.want {
			t.Errorf("%s(%d): got %#x, want %#x", c.c.name, c.c.args[0], got, c.want)
		}
	}
}

// A rule on a call that x32 numbers twice (the 64-bit number, which an x32
// process cannot make, and its own from 512 up) catches the x32 one.
func TestCompileSeccompX32Numbers(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{rule(specs.ActErrno, "execve", "ptrace")}}
	f, err := compileSeccomp(s, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"execve", "ptrace"} {
		if nr, _ := syscalltab.X32.Number(name); nr < 512 {
			t.Errorf("x32 %s is %d, not its x32 number", name, nr)
		}
		if got := runBPF(t, f.Prog, sysCall{arch: syscalltab.X32, name: name}); got != retErrno|uint32(unix.EPERM) {
			t.Errorf("x32 %s: got %#x", name, got)
		}
	}
}
