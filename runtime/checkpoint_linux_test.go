package runtime

import (
	"strings"
	"testing"
)

func TestParseCriuVersion(t *testing.T) {
	for _, tc := range []struct {
		out, want string
		ok        bool
	}{
		{"Version: 4.1.1\n", "4.1.1", true},
		{"Version: 4.1\nGitID: v4.1\n", "4.1", true},
		{"Version: 3.17.1\n", "3.17.1", false},
		{"Version: 10.0\n", "10.0", true},
		{"criu: unknown option\n", "", false},
		{"", "", false},
	} {
		v := parseCriuVersion(tc.out)
		if v != tc.want || (v != "" && criuAtLeast(v, MinCriu) != tc.ok) {
			t.Errorf("%q: version %q (at least 4.1: %v), want %q (%v)", tc.out, v, criuAtLeast(v, MinCriu), tc.want, tc.ok)
		}
	}
	if criuAtLeast("x.y", MinCriu) || criuAtLeast("", MinCriu) {
		t.Error("a garbled version passes")
	}
}

// The job's standard streams that a checkpoint cannot reconnect are
// refused, each in a line that says which; pipes are named for criu.
func TestStdioName(t *testing.T) {
	for _, tc := range []struct {
		fd         int
		link, name string
		err        string
	}{
		{0, "pipe:[1234]", "pipe:[1234]", ""},
		{1, "socket:[99]", "", "stdout is a socket"},
		{2, "/dev/pts/3", "", "stderr is a terminal"},
		{0, "anon_inode:[eventfd]", "", "stdin is anon_inode:[eventfd]"},
	} {
		name, ext, err := stdioName(1, tc.fd, tc.link, "/nonexistent")
		if name != tc.name || ext != "" || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%d %s: %q %q %v, want %q, error %q", tc.fd, tc.link, name, ext, err, tc.name, tc.err)
		}
	}
}
