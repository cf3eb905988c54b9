package launch

import (
	"fmt"
	"slices"
	"testing"

	"github.com/hpcrun/hpcrun/runtime"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// TestIdentityFiles: the image's /etc/passwd and /etc/group with the
// caller's entries, or root's under --fakeroot when the image has none.
func TestIdentityFiles(t *testing.T) {
	const alice = "alice:x:3999999:3999999::/home/alice:/bin/sh\n"
	const aliceGroup = "group3999999:x:3999999:\n"
	tests := []struct {
		name        string
		fakeroot    bool
		files       map[string]string // the image's; nil entries are left out
		passwd, grp string
		none        bool // no files generated
		err         string
	}{
		{name: "the caller added",
			files:  map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nbin:x:1:1::/:/sbin/nologin\n", "etc/group": "root:x:0:\n"},
			passwd: "root:x:0:0:root:/root:/bin/sh\nbin:x:1:1::/:/sbin/nologin\n" + alice,
			grp:    "root:x:0:\n" + aliceGroup},
		{name: "the image's entries of the same name or id replaced",
			files: map[string]string{
				"etc/passwd": "# users\nalice:x:1000:1000::/home/alice:/bin/bash\nsvc:x:3999999:10::/srv:/bin/sh\nroot:x:0:0::/root:/bin/sh\n",
				"etc/group":  "wheel:x:3999999:\ngroup3999999:x:5:\nstaff:x:50:\n",
			},
			passwd: "# users\nroot:x:0:0::/root:/bin/sh\n" + alice,
			grp:    "staff:x:50:\n" + aliceGroup},
		{name: "no /etc/passwd or /etc/group in the image", files: map[string]string{"bin/sh": ""},
			passwd: alice, grp: aliceGroup},
		{name: "--fakeroot, the image has root", fakeroot: true,
			files: map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/bash\n", "etc/group": "root:x:0:\n"},
			none:  true},
		{name: "--fakeroot, the image has no root user", fakeroot: true,
			files:  map[string]string{"etc/passwd": "bin:x:1:1::/:/sbin/nologin\n", "etc/group": "root:x:0:\n"},
			passwd: "bin:x:1:1::/:/sbin/nologin\nroot:x:0:0::/root:/bin/sh\n",
			grp:    "root:x:0:\n"},
		{name: "--fakeroot, the image has no root group", fakeroot: true,
			files:  map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/bash\n", "etc/group": "wheel:x:10:\n"},
			passwd: "root:x:0:0::/root:/bin/sh\n",
			grp:    "wheel:x:10:\nroot:x:0:\n"},
		{name: "--fakeroot, no /etc/passwd", fakeroot: true, files: map[string]string{"bin/sh": ""},
			passwd: "root:x:0:0::/root:/bin/sh\n", grp: "root:x:0:\n"},
		{name: "/etc/passwd not a file", files: map[string]string{"etc/passwd/": ""},
			err: "read the image's /etc/passwd: not a regular file"},
		{name: "/etc/group not a file", files: map[string]string{"etc/passwd": "", "etc/group/": ""},
			err: "read the image's /etc/group: not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t)
			j.r.Fakeroot = tc.fakeroot
			j.im = newImage(t, tc.files, nil, store.ImageConfig{})
			cfg, err := j.build()
			if !checkErr(t, err, tc.err, false) {
				return
			}
			var want []runtime.File
			if !tc.none {
				want = []runtime.File{{Path: "/etc/passwd", Data: []byte(tc.passwd), Mode: 0o644}, {Path: "/etc/group", Data: []byte(tc.grp), Mode: 0o644}}
			}
			files := slices.DeleteFunc(cfg.Files, func(f runtime.File) bool { return f.Path == ContainerEnvFile })
			if got, want := filesText(files), filesText(want); got != want {
				t.Errorf("files:\n%s\nwant\n%s", got, want)
			}
			uid := uint32(testUID)
			if tc.fakeroot {
				uid = 0
			}
			if u := cfg.Spec.Process.User; u.UID != uid || u.GID != uid || cfg.Spec.Linux.UIDMappings[0].HostID != testUID {
				t.Errorf("user %d:%d, mapped to %d; want %d:%d, mapped to %d", u.UID, u.GID, cfg.Spec.Linux.UIDMappings[0].HostID, uid, uid, testUID)
			}
		})
	}
}

// TestIdentityShell: the caller's login shell where the image has it,
// else /bin/sh. The caller is root, the one user every host names.
func TestIdentityShell(t *testing.T) {
	id := runtime.LookupIdentity(0, 0, nil)
	if id.Shell == "/bin/sh" || id.Shell == "" {
		t.Skipf("root's shell here is %q: no other to fall back from", id.Shell)
	}
	line := func(shell string) string {
		return fmt.Sprintf("root:x:0:0:%s:%s:%s\n", id.Gecos, id.Home, shell)
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"the image has the shell", with(map[string]string{id.Shell[1:]: ""}), line(id.Shell)},
		{"the image lacks it", baseImage, line("/bin/sh")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := newImage(t, tc.files, nil, store.ImageConfig{})
			h := Host{UID: 0, GID: 0}
			files, err := identityFiles(im.Image, identity(h, false), false)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 2 || string(files[0].Data) != tc.want {
				t.Fatalf("files %s, want /etc/passwd %q", filesText(files), tc.want)
			}
			if want := id.Group + ":x:0:\n"; string(files[1].Data) != want {
				t.Errorf("/etc/group %q, want %q", files[1].Data, want)
			}
		})
	}
}

// filesText shows generated files for a comparison.
func filesText(fs []runtime.File) string {
	var s string
	for _, f := range fs {
		s += fmt.Sprintf("%s %o %q\n", f.Path, f.Mode, f.Data)
	}
	return s
}
