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

// A restored process whose credentials exceed the job's (an altered
// checkpoint) is refused: another uid or gid, no no_new_privs, a
// capability the job did not hold.
func TestCheckCreds(t *testing.T) {
	cfg := &initConfig{UID: 1000, GID: 100, NoNewPrivs: true}
	good := map[string]string{"Uid": "1000\t1000\t1000\t1000", "Gid": "100\t100\t100\t100", "NoNewPrivs": "1",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "000001ffffffffff", "CapAmb": "0000000000000000"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, tc := range []struct {
		name string
		st   map[string]string
		err  string
	}{
		{"the job's", good, ""},
		{"root", with("Uid", "0\t0\t0\t0"), "Uid"},
		{"a saved uid", with("Uid", "1000\t1000\t0\t1000"), "Uid"},
		{"another gid", with("Gid", "0\t100\t100\t100"), "Gid"},
		{"no no_new_privs", with("NoNewPrivs", "0"), "no_new_privs"},
		{"CAP_SYS_ADMIN", with("CapEff", "0000000000200000"), "CapEff"},
		{"ambient", with("CapAmb", "0000000000000001"), "CapAmb"},
		{"garbled", with("CapPrm", "zz"), "CapPrm"},
	} {
		err := checkCreds(cfg, 1000, tc.st)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
	root := &initConfig{UID: 0, GID: 0, Caps: capSets{Permitted: 1 << 21}}
	if err := checkCreds(root, 1000, map[string]string{"Uid": "0", "Gid": "0", "CapPrm": "0000000000200000",
		"CapEff": "0000000000200000", "CapInh": "0", "CapAmb": "0", "CapBnd": "1ff"}); err != nil {
		t.Errorf("a --fakeroot job's own capabilities: %v", err)
	}
}
