package runtime

import "testing"

// Each row is a path and what both rules of hostDirs make of it.
func TestHostDirs(t *testing.T) {
	tests := []struct {
		path      string
		cwdBound  bool   // bindsCwd: a working directory there gets a bind
		systemDir string // SystemDir: what allow_system_binds: false refuses
	}{
		{"/", false, "/"},
		{"/usr", false, "/usr"},
		{"/usr/lib64/openmpi", false, "/usr"},
		{"/usrlocal", true, ""},
		{"/etc/slurm", false, "/etc"},
		{"/proc/self/fd/3", false, "/proc"},
		{"/var", false, "/var"},
		{"/var/scratch/a", true, "/var"},
		{"/var/lib/dpkg", false, "/var/lib"},
		{"/var/spool/slurmd", false, "/var/spool"},
		{"/var/run/x", false, "/var/run"},
		{"/var/tmp", true, ""},
		{"/var/tmp/x", true, ""},
		{"/run", false, "/run"},
		{"/run/munge", true, "/run"},
		{"/home", false, ""},
		{"/home/u", true, ""},
		{"/opt/app", true, ""},
		{"/scratch", true, ""},
		{"/tmp/x", true, ""},
	}
	for _, tc := range tests {
		if got := bindsCwd(tc.path, nil); got != tc.cwdBound {
			t.Errorf("bindsCwd(%q) = %v, want %v", tc.path, got, tc.cwdBound)
		}
		if got := SystemDir(tc.path); got != tc.systemDir {
			t.Errorf("SystemDir(%q) = %q, want %q", tc.path, got, tc.systemDir)
		}
	}
	if got := SystemDir("/usr/lib/../../etc/"); got != "/etc" {
		t.Errorf("SystemDir of an unclean path = %q, want /etc", got)
	}
}
