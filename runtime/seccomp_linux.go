package runtime

// A bundle's linux.seccomp becomes a classic BPF program here, at create,
// and is installed by the pre-exec shim (rlimit_linux.go) on the thread
// that then execs the process: the job, and every process exec'd into
// the container. Go's ForkExec has no hook between fork and exec, and the
// init must not filter itself: it keeps serving the container after the
// job starts.
//
// Why our own assembler: github.com/elastic/go-seccomp-bpf (v1.6.0, pure
// Go) builds a filter for the host's own architecture only, answers x32
// calls with ENOSYS whatever the profile says, has no SCMP_CMP_MASKED_EQ
// (Docker's and runc's default profiles need it for clone), and takes no
// errno per rule. Its syscall tables (package arch, kept in step with
// Linux) are what we use from it. libseccomp itself needs cgo.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/hpcrun/hpcrun/internal/syscalltab"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// seccompFilter is a compiled linux.seccomp: the program and the flags
// for seccomp(2).
type seccompFilter struct {
	Flags uint
	Prog  []unix.SockFilter
}

// Return values of a filter (linux/seccomp.h).
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000

	// maxInsns is BPF_MAXINSNS: the kernel refuses a longer program.
	maxInsns = 4096
	// maxErrno is the largest errno the kernel returns from a filter.
	maxErrno = 4095
)

// Offsets in struct seccomp_data; an argument's low word comes first on
// the little-endian architectures hpcrun builds for.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// seccompArches are the SCMP_ARCH_* names the runtime spec allows. Those
// with a syscalltab.Arch can occur on an amd64 or arm64 kernel; the others
// never do there, and are accepted and left out.
var seccompArches = map[specs.Arch]*syscalltab.Arch{
	specs.ArchX86: syscalltab.I386, specs.ArchX86_64: syscalltab.X86_64, specs.ArchX32: syscalltab.X32,
	specs.ArchARM: syscalltab.ARM, specs.ArchAARCH64: syscalltab.AARCH64,
	specs.ArchMIPS: nil, specs.ArchMIPS64: nil, specs.ArchMIPS64N32: nil, specs.ArchMIPSEL: nil,
	specs.ArchMIPSEL64: nil, specs.ArchMIPSEL64N32: nil, specs.ArchPPC: nil, specs.ArchPPC64: nil,
	specs.ArchPPC64LE: nil, specs.ArchS390: nil, specs.ArchS390X: nil, specs.ArchPARISC: nil,
	specs.ArchPARISC64: nil, specs.ArchRISCV64: nil, specs.ArchLOONGARCH64: nil, specs.ArchM68K: nil,
	specs.ArchSH: nil, specs.ArchSHEB: nil,
}

// hostArches are the ABIs a kernel of GOARCH goarch runs processes in,
// its native one first: a filter always covers the native one, as
// libseccomp's does.
func hostArches(goarch string) []*syscalltab.Arch {
	switch goarch {
	case "amd64":
		return []*syscalltab.Arch{syscalltab.X86_64, syscalltab.I386, syscalltab.X32}
	case "arm64":
		return []*syscalltab.Arch{syscalltab.AARCH64, syscalltab.ARM}
	}
	return nil
}

// seccompFlags are the linux.seccomp.flags hpcrun passes to seccomp(2).
// TSYNC is accepted and not passed: the filter goes on the one thread
// that then execs, and after execve that is the whole process.
var seccompFlags = map[specs.LinuxSeccompFlag]uint{
	"SECCOMP_FILTER_FLAG_TSYNC":     0,
	specs.LinuxSeccompFlagLog:       unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagSpecAllow: unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
}

// seccompAction is the filter's return value for action with errnoRet.
func seccompAction(action specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint(unix.EPERM)
	if errnoRet != nil {
		if action != specs.ActErrno && action != specs.ActTrace {
			return 0, fmt.Errorf("errnoRet is for SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not %s", action)
		}
		if *errnoRet > maxErrno {
			return 0, fmt.Errorf("errnoRet %d is above %d", *errnoRet, maxErrno)
		}
		data = *errnoRet
	}
	switch action {
	case specs.ActKill, specs.ActKillThread:
		return retKillThread, nil
	case specs.ActKillProcess:
		return retKillProcess, nil
	case specs.ActTrap:
		return retTrap, nil
	case specs.ActErrno:
		return retErrno | uint32(data), nil
	case specs.ActTrace:
		return retTrace | uint32(data), nil
	case specs.ActAllow:
		return retAllow, nil
	case specs.ActLog:
		return retLog, nil
	case specs.ActNotify:
		return 0, errors.New("SCMP_ACT_NOTIFY needs a seccomp agent, which hpcrun does not have")
	}
	return 0, fmt.Errorf("unknown action %q", action)
}

// seccompRule is one linux.seccomp.syscalls entry, checked: its return
// value and its sets of conditions, any one of which (all of its
// conditions) makes it match. No sets: it matches on the name alone.
type seccompRule struct {
	names []string
	ret   uint32
	sets  [][]specs.LinuxSeccompArg
}

var seccompOps = map[specs.LinuxSeccompOperator]bool{
	specs.OpNotEqual: true, specs.OpLessThan: true, specs.OpLessEqual: true, specs.OpEqualTo: true,
	specs.OpGreaterEqual: true, specs.OpGreaterThan: true, specs.OpMaskedEqual: true,
}

// newSeccompRule checks entry sc. Its conditions must all hold, except
// where two of them test the same argument: then, as runc does, each
// condition alone makes the rule match.
func newSeccompRule(sc specs.LinuxSyscall) (seccompRule, error) {
	r := seccompRule{names: sc.Names}
	if len(sc.Names) == 0 {
		return r, errors.New("no names")
	}
	var err error
	if r.ret, err = seccompAction(sc.Action, sc.ErrnoRet); err != nil {
		return r, err
	}
	var seen [6]bool
	split := false
	for _, a := range sc.Args {
		if a.Index > 5 {
			return r, fmt.Errorf("argument index %d is above 5", a.Index)
		}
		if !seccompOps[a.Op] {
			return r, fmt.Errorf("unknown operator %q", a.Op)
		}
		split = split || seen[a.Index]
		seen[a.Index] = true
	}
	switch {
	case len(sc.Args) == 0:
	case split:
		for _, a := range sc.Args {
			r.sets = append(r.sets, []specs.LinuxSeccompArg{a})
		}
	default:
		r.sets = [][]specs.LinuxSeccompArg{sc.Args}
	}
	return r, nil
}

// compileSeccomp turns s into a filter for a kernel of GOARCH goarch.
// Names this kernel does not know on an architecture are left out there,
// as libseccomp and runc do; an unknown action, operator, flag or
// architecture is an error.
func compileSeccomp(s *specs.LinuxSeccomp, goarch string) (*seccompFilter, error) {
	f, err := compileSeccompProg(s, goarch)
	if err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	return f, nil
}

func compileSeccompProg(s *specs.LinuxSeccomp, goarch string) (*seccompFilter, error) {
	host := hostArches(goarch)
	if host == nil {
		return nil, fmt.Errorf("hpcrun builds no filter for %s", goarch)
	}
	if s.ListenerPath != "" {
		return nil, errors.New("listenerPath needs a seccomp agent, which hpcrun does not have")
	}
	f := &seccompFilter{}
	for _, fl := range s.Flags {
		v, ok := seccompFlags[fl]
		if !ok {
			return nil, fmt.Errorf("unsupported flag %q", fl)
		}
		f.Flags |= v
	}
	def, err := seccompAction(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	var rules []seccompRule
	for i, sc := range s.Syscalls {
		r, err := newSeccompRule(sc)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d]: %w", i, err)
		}
		rules = append(rules, r)
	}
	arches, err := filterArches(s.Architectures, host)
	if err != nil {
		return nil, err
	}
	a := &bpfAsm{}
	emitSeccomp(a, arches, rules, def)
	if f.Prog, err = a.assemble(); err != nil {
		return nil, err
	}
	if len(f.Prog) > maxInsns {
		return nil, fmt.Errorf("the filter is %d BPF instructions long; the kernel takes at most %d", len(f.Prog), maxInsns)
	}
	return f, nil
}

// filterArches are the host's ABIs that the filter covers: the native
// one and those of names that the host runs.
func filterArches(names []specs.Arch, host []*syscalltab.Arch) ([]*syscalltab.Arch, error) {
	out := host[:1:1]
	for _, n := range names {
		info, ok := seccompArches[n]
		if !ok {
			return nil, fmt.Errorf("unknown architecture %q", n)
		}
		for _, h := range host[1:] {
			if info == h && !containsArch(out, h) {
				out = append(out, h)
			}
		}
	}
	return out, nil
}

func containsArch(as []*syscalltab.Arch, a *syscalltab.Arch) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// is64 reports whether arch a passes 64-bit arguments. On the 32-bit
// ones only the low word is compared, as libseccomp does.
func is64(a *syscalltab.Arch) bool { return a != syscalltab.I386 && a != syscalltab.ARM }

// permissive reports whether ret lets a call through.
func permissive(ret uint32) bool {
	return ret == retAllow || ret == retLog || ret&0xffff0000 == retTrace
}

// emitSeccomp lays the filter out:
//
//	load the architecture; jump to its section; kill any other
//	section: load the number; (x86_64) x32 numbers go to the x32 section;
//	  numbers above every one the profile names get ENOSYS; the rules in
//	  order, first match wins; the default action
//
// Numbers newer than the profile get ENOSYS, not the default, when that
// blocks, as runc does: libc then falls back to an older call (clone3 to
// clone) instead of failing.
func emitSeccomp(a *bpfAsm, arches []*syscalltab.Arch, rules []seccompRule, def uint32) {
	sections := make([]label, len(arches))
	a.ld(offArch)
	for i, ar := range arches {
		sections[i] = a.newLabel()
		if ar == syscalltab.X32 {
			continue // shares x86_64's audit arch; reached from there
		}
		a.jmp(unix.BPF_JEQ, ar.ID, next, skip1)
		a.ja(sections[i])
	}
	a.ret(retKillProcess)
	for i, ar := range arches {
		a.mark(sections[i])
		if ar != syscalltab.X32 {
			a.ld(offNr)
		}
		if ar == syscalltab.X86_64 {
			a.jmp(unix.BPF_JGE, uint32(syscalltab.X32.Mask), next, skip1)
			if j := indexArch(arches, syscalltab.X32); j >= 0 {
				a.ja(sections[j])
			} else {
				a.ret(retKillProcess)
			}
		}
		emitSection(a, ar, rules, def)
	}
}

func indexArch(as []*syscalltab.Arch, a *syscalltab.Arch) int {
	for i, x := range as {
		if x == a {
			return i
		}
	}
	return -1
}

// emitSection emits the rules for one ABI, with the syscall number in A.
func emitSection(a *bpfAsm, ar *syscalltab.Arch, rules []seccompRule, def uint32) {
	last := uint32(0)
	for _, r := range rules {
		for _, nr := range sysnums(ar, r.names) {
			last = max(last, nr)
		}
	}
	if last > 0 && !permissive(def) {
		a.jmp(unix.BPF_JGT, last, next, skip1)
		a.ret(retErrno | uint32(unix.ENOSYS))
	}
	for _, r := range rules {
		// A rule that does what the default does changes nothing, and
		// must not shadow a later one for the same call (runc skips it).
		if r.ret == def {
			continue
		}
		nrs := sysnums(ar, r.names)
		// Short runs of numbers, so that every jump stays in 8 bits.
		for len(nrs) > 0 {
			n := min(len(nrs), 200)
			emitRule(a, ar, nrs[:n], r)
			nrs = nrs[n:]
		}
	}
	a.ret(def)
}

// sysnums are the numbers of names on ar, the unknown ones left out.
func sysnums(ar *syscalltab.Arch, names []string) []uint32 {
	var out []uint32
	for _, n := range names {
		if nr, ok := ar.Number(n); ok {
			out = append(out, uint32(nr|ar.Mask))
		}
	}
	return out
}

// emitRule: any of nrs, with any set of r's conditions, returns r.ret.
func emitRule(a *bpfAsm, ar *syscalltab.Arch, nrs []uint32, r seccompRule) {
	hit, after := a.newLabel(), a.newLabel()
	for _, nr := range nrs {
		a.jmp(unix.BPF_JEQ, nr, hit, next)
	}
	// No number matched: past the rule, with an unconditional jump, whose
	// offset holds 32 bits: the conditions may take more than a
	// conditional jump's 8.
	a.ja(after)
	a.mark(hit)
	if len(r.sets) == 0 {
		a.ret(r.ret)
		a.mark(after)
		return
	}
	for _, set := range r.sets {
		fail := a.newLabel()
		for _, c := range set {
			emitCond(a, c, is64(ar), fail)
		}
		a.ret(r.ret)
		a.mark(fail)
	}
	// A holds an argument now: the next rule wants the number.
	a.ld(offNr)
	a.mark(after)
}

// emitCond falls through when condition c holds, and jumps to fail when
// it does not. 64-bit comparisons take the high words first.
func emitCond(a *bpfAsm, c specs.LinuxSeccompArg, wide bool, fail label) {
	lo, hi := uint32(offArgs+8*c.Index), uint32(offArgs+8*c.Index+4)
	v, v2 := c.Value, c.ValueTwo
	ok := a.newLabel()
	if !wide {
		a.ld(lo)
		switch c.Op {
		case specs.OpEqualTo:
			a.jmp(unix.BPF_JEQ, uint32(v), next, fail)
		case specs.OpNotEqual:
			a.jmp(unix.BPF_JEQ, uint32(v), fail, next)
		case specs.OpGreaterThan:
			a.jmp(unix.BPF_JGT, uint32(v), next, fail)
		case specs.OpGreaterEqual:
			a.jmp(unix.BPF_JGE, uint32(v), next, fail)
		case specs.OpLessThan:
			a.jmp(unix.BPF_JGE, uint32(v), fail, next)
		case specs.OpLessEqual:
			a.jmp(unix.BPF_JGT, uint32(v), fail, next)
		case specs.OpMaskedEqual:
			a.and(uint32(v))
			a.jmp(unix.BPF_JEQ, uint32(v2), next, fail)
		}
		a.mark(ok)
		return
	}
	vh, vl := uint32(v>>32), uint32(v)
	a.ld(hi)
	switch c.Op {
	case specs.OpEqualTo:
		a.jmp(unix.BPF_JEQ, vh, next, fail)
		a.ld(lo)
		a.jmp(unix.BPF_JEQ, vl, next, fail)
	case specs.OpNotEqual:
		a.jmp(unix.BPF_JEQ, vh, next, ok)
		a.ld(lo)
		a.jmp(unix.BPF_JEQ, vl, fail, ok)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		a.jmp(unix.BPF_JGT, vh, ok, next)
		a.jmp(unix.BPF_JEQ, vh, next, fail)
		a.ld(lo)
		op := uint16(unix.BPF_JGT)
		if c.Op == specs.OpGreaterEqual {
			op = unix.BPF_JGE
		}
		a.jmp(op, vl, ok, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		a.jmp(unix.BPF_JGT, vh, fail, next)
		a.jmp(unix.BPF_JEQ, vh, next, ok)
		a.ld(lo)
		op := uint16(unix.BPF_JGE)
		if c.Op == specs.OpLessEqual {
			op = unix.BPF_JGT
		}
		a.jmp(op, vl, fail, ok)
	case specs.OpMaskedEqual:
		a.and(uint32(v >> 32))
		a.jmp(unix.BPF_JEQ, uint32(v2>>32), next, fail)
		a.ld(lo)
		a.and(uint32(v))
		a.jmp(unix.BPF_JEQ, uint32(v2), next, fail)
	}
	a.mark(ok)
}

// label names a place in a bpfAsm program; next and skip1 are the
// instruction after a jump and the one after that.
type label int

const (
	next  label = -1
	skip1 label = -2
)

// bpfAsm assembles classic BPF with forward jumps to labels.
type bpfAsm struct {
	insns  []unix.SockFilter
	labels []int // label -> instruction index; -1 until marked
	fixups []fixup
}

type fixup struct {
	at     int
	jt, jf label
	long   bool // a BPF_JA: the target goes in k
}

func (a *bpfAsm) newLabel() label {
	a.labels = append(a.labels, -1)
	return label(len(a.labels) - 1)
}

func (a *bpfAsm) mark(l label) { a.labels[l] = len(a.insns) }

func (a *bpfAsm) ld(off uint32) {
	a.insns = append(a.insns, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off})
}

func (a *bpfAsm) and(k uint32) {
	a.insns = append(a.insns, unix.SockFilter{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: k})
}

func (a *bpfAsm) ret(k uint32) {
	a.insns = append(a.insns, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k})
}

// jmp compares A with k (op: BPF_JEQ, BPF_JGT, BPF_JGE) and goes on at
// jt when it holds, at jf when not.
func (a *bpfAsm) jmp(op uint16, k uint32, jt, jf label) {
	a.fixups = append(a.fixups, fixup{at: len(a.insns), jt: jt, jf: jf})
	a.insns = append(a.insns, unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k})
}

// ja jumps to l, however far.
func (a *bpfAsm) ja(l label) {
	a.fixups = append(a.fixups, fixup{at: len(a.insns), jt: l, long: true})
	a.insns = append(a.insns, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA})
}

// offset is how many instructions a jump at at skips to reach l.
func (a *bpfAsm) offset(at int, l label) (int, error) {
	switch l {
	case next:
		return 0, nil
	case skip1:
		return 1, nil
	}
	to := a.labels[l]
	if to <= at {
		return 0, fmt.Errorf("BPF jump at %d to unplaced or earlier label %d", at, l)
	}
	return to - at - 1, nil
}

// assemble resolves the jumps. A conditional one holds 8 bits; the
// layout keeps them short, and a longer one is a bug.
func (a *bpfAsm) assemble() ([]unix.SockFilter, error) {
	for _, f := range a.fixups {
		t, err := a.offset(f.at, f.jt)
		if err != nil {
			return nil, err
		}
		if f.long {
			a.insns[f.at].K = uint32(t)
			continue
		}
		e, err := a.offset(f.at, f.jf)
		if err != nil {
			return nil, err
		}
		if t > 255 || e > 255 {
			return nil, fmt.Errorf("BPF jump at %d is too long (%d, %d)", f.at, t, e)
		}
		a.insns[f.at].Jt, a.insns[f.at].Jf = uint8(t), uint8(e)
	}
	return a.insns, nil
}

// String is the filter as the pre-exec shim takes it: flags, a colon,
// and the program in base64.
func (f *seccompFilter) String() string {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&f.Prog[0])), len(f.Prog)*int(unsafe.Sizeof(f.Prog[0])))
	return strconv.FormatUint(uint64(f.Flags), 10) + ":" + base64.StdEncoding.EncodeToString(b)
}

// parseSeccompFilter reads what String wrote.
func parseSeccompFilter(s string) (*seccompFilter, error) {
	fl, enc, ok := strings.Cut(s, ":")
	flags, err := strconv.ParseUint(fl, 10, 32)
	if !ok || err != nil {
		return nil, errors.New("bad seccomp filter argument")
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	size := int(unsafe.Sizeof(unix.SockFilter{}))
	if err != nil || len(b) == 0 || len(b)%size != 0 {
		return nil, errors.New("bad seccomp filter argument")
	}
	prog := make([]unix.SockFilter, len(b)/size)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(b)), b)
	return &seccompFilter{Flags: uint(flags), Prog: prog}, nil
}

// install puts the filter on the calling thread, which must be locked
// to its goroutine and exec right after. The kernel takes a filter from
// a thread with no_new_privs or with CAP_SYS_ADMIN in its own user
// namespace (see dropsInShim). Where it has neither (a process.user that
// the init is not), this sets no_new_privs, as libseccomp does by
// default.
func (f *seccompFilter) install() error {
	prog := unix.SockFprog{Len: uint16(len(f.Prog)), Filter: &f.Prog[0]}
	load := func() error {
		_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(f.Flags), uintptr(unsafe.Pointer(&prog)))
		if e != 0 {
			return e
		}
		return nil
	}
	err := load()
	if err == unix.EACCES {
		if err = unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs for the seccomp filter: %w", err)
		}
		err = load()
	}
	if err != nil {
		return fmt.Errorf("install the seccomp filter: %w", err)
	}
	return nil
}

// seccompArg is s's linux.seccomp compiled for this host, in the form the
// pre-exec shim takes; "" when there is none.
func seccompArg(s *specs.Spec) (string, error) {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return "", nil
	}
	if !slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return path.Clean(m.Destination) == "/proc" }) {
		return "", errors.New("linux.seccomp needs /proc mounted in the container: hpcrun installs the filter from its own binary, /proc/self/exe; add the proc mount")
	}
	f, err := compileSeccomp(s.Linux.Seccomp, goruntime.GOARCH)
	if err != nil {
		return "", err
	}
	return f.String(), nil
}

// dropsInShim reports whether the pre-exec shim, not the init, drops the
// process's privileges: with a filter and without no_new_privs. The
// kernel then takes the filter only from a thread with CAP_SYS_ADMIN in
// its user namespace, so the shim installs it first, with the init's
// capabilities, and drops them after, as runc does; setting no_new_privs
// instead would change what the bundle asked for.
func (c *initConfig) dropsInShim() bool { return c.Seccomp != "" && !c.NoNewPrivs }

// shimPrivileges is the pre-exec shim's argument for dropsInShim: the
// capability sets and whether the process is root; "" when the init
// drops them itself.
func (c *initConfig) shimPrivileges() string {
	if !c.dropsInShim() {
		return ""
	}
	k := c.Caps
	return fmt.Sprintf("%t:%x:%x:%x:%x:%x", c.UID == 0, k.Bounding, k.Effective, k.Permitted, k.Inheritable, k.Ambient)
}

// parseShimPrivileges reads what shimPrivileges wrote.
func parseShimPrivileges(s string) (k capSets, root bool, err error) {
	if _, err := fmt.Sscanf(s, "%t:%x:%x:%x:%x:%x", &root, &k.Bounding, &k.Effective, &k.Permitted, &k.Inheritable, &k.Ambient); err != nil {
		return k, false, errors.New("bad privileges argument")
	}
	return k, root, nil
}
