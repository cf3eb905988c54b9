package syscalltab

import (
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// The generated tables are the library's, number for number (run the
// generator when this fails after the library is updated), and its ABIs'
// audit arch and mask are the library's. Where x32 has a name twice (the
// 64-bit number, which an x32 process cannot make, and the x32 one from
// 512 up), the name is the x32 one; the library's inverted map picks
// either, as its map iteration falls.
func TestTablesAreTheLibrarys(t *testing.T) {
	for _, c := range []struct {
		ours   *Arch
		theirs *arch.Info
	}{{X86_64, arch.X86_64}, {I386, arch.I386}, {X32, arch.X32}, {AARCH64, arch.AARCH64}, {ARM, arch.ARM}} {
		if c.ours.Name != c.theirs.Name || c.ours.ID != uint32(c.theirs.ID) || c.ours.Mask != c.theirs.SeccompMask {
			t.Errorf("%s: %s %#x %#x, the library has %s %#x %#x", c.ours.Name, c.ours.Name, c.ours.ID, c.ours.Mask, c.theirs.Name, c.theirs.ID, c.theirs.SeccompMask)
		}
		want := map[string]int{}
		for nr, name := range c.theirs.SyscallNumbers {
			if old, ok := want[name]; !ok || nr > old {
				want[name] = nr
			}
		}
		for name, nr := range want {
			if got, ok := c.ours.Number(name); !ok || got != nr {
				t.Errorf("%s: %s is %d (%v), the library has %d", c.ours.Name, name, got, ok, nr)
			}
		}
		for nr, name := range c.theirs.SyscallNumbers {
			if got, ok := c.ours.Syscall(nr); !ok || got != name {
				t.Errorf("%s: %d is %q (%v), the library has %q", c.ours.Name, nr, got, ok, name)
			}
		}
		if len(c.ours.names) != len(want) || len(c.ours.numbers) != len(c.theirs.SyscallNumbers) {
			t.Errorf("%s: %d names and %d numbers, the library has %d and %d", c.ours.Name, len(c.ours.names), len(c.ours.numbers), len(want), len(c.theirs.SyscallNumbers))
		}
	}
	if n, ok := X86_64.Syscall(0); !ok || n != "read" {
		t.Errorf("x86_64 0 is %q", n)
	}
}
