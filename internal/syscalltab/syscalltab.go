// Package syscalltab holds the syscall numbers of the Linux ABIs that a
// seccomp filter on an amd64 or arm64 kernel can meet, by name. The
// tables are strings (tables.go, generated), read into maps the first
// time an ABI is asked: a start of hpcrun that compiles no filter pays
// nothing for them.
package syscalltab

import (
	"strconv"
	"strings"
	"sync"
)

// Arch is one ABI.
type Arch struct {
	Name string // Linux's name for it: x86_64, i386, x32, aarch64, arm
	ID   uint32 // its AUDIT_ARCH_* constant, as seccomp_data.arch has it
	// Mask is set in every number of the ABI: x32's __X32_SYSCALL_BIT.
	Mask int

	table   string
	once    sync.Once
	names   map[string]int
	numbers map[int]string
}

// The ABIs. x32 shares x86_64's audit arch; its numbers carry Mask.
var (
	X86_64  = &Arch{Name: "x86_64", ID: 0xc000003e, table: tableX86_64}
	I386    = &Arch{Name: "i386", ID: 0x40000003, table: tableI386}
	X32     = &Arch{Name: "x32", ID: 0xc000003e, Mask: 0x40000000, table: tableX32}
	AARCH64 = &Arch{Name: "aarch64", ID: 0xc00000b7, table: tableAARCH64}
	ARM     = &Arch{Name: "arm", ID: 0x40000028, table: tableARM}
)

func (a *Arch) load() {
	a.once.Do(func() {
		a.names, a.numbers = map[string]int{}, map[int]string{}
		for line := range strings.Lines(a.table) {
			name, nr, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
			n, err := strconv.Atoi(nr)
			if err != nil || name == "" {
				panic("syscalltab: bad line in the " + a.Name + " table: " + line)
			}
			a.names[name], a.numbers[n] = n, name
		}
	})
}

// Number is the number of syscall name on the ABI, without Mask.
func (a *Arch) Number(name string) (int, bool) {
	a.load()
	n, ok := a.names[name]
	return n, ok
}

// Syscall is the name of syscall number nr on the ABI.
func (a *Arch) Syscall(nr int) (string, bool) {
	a.load()
	n, ok := a.numbers[nr]
	return n, ok
}
