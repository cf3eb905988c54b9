package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpcrun/hpcrun/runtime/procs"
	"golang.org/x/sys/unix"
)

// mountsBundle makes a bundle whose process prints its mountinfo after
// script, with a /dev of its own (a tmpfs, as runc bundles have it) and
// mounts added after `hpcrun spec`'s; it returns the bundle, the state
// root and the config's mounts.
func mountsBundle(t *testing.T, script string, extra []map[string]any, edit func(spec map[string]any)) (bundle, root string, mounts []string) {
	t.Helper()
	bundle, root = makeBundle(t)
	r := mustRun(t, opts{}, "spec", "--rootfs", filepath.Join(bundle, "rootfs"), "--", "sh", "-c", script+"\necho ---\ncat /proc/self/mountinfo")
	var spec map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil {
		t.Fatal(err)
	}
	var ms []any
	for _, m := range spec["mounts"].([]any) {
		if m.(map[string]any)["destination"] == "/dev" {
			m = map[string]any{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}}
		}
		ms = append(ms, m)
	}
	for _, m := range extra {
		ms = append(ms, m)
	}
	spec["mounts"] = ms
	if edit != nil {
		edit(spec)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	writeConfig(t, bundle, b)
	for _, m := range ms {
		mounts = append(mounts, m.(map[string]any)["destination"].(string))
	}
	return bundle, root, mounts
}

// inOrder checks that mountinfo, as the container printed it after
// "---", has a mount at each of mounts in that order (other mounts may
// come between), and returns the output before "---".
func inOrder(t *testing.T, r result, mounts []string) string {
	t.Helper()
	out, mi, ok := strings.Cut(r.stdout, "---\n")
	if r.code != 0 || !ok {
		t.Fatalf("want exit 0 and the mountinfo: %s", r)
	}
	var points []string
	for _, line := range lines(mi) {
		if f := strings.Fields(line); len(f) > 4 {
			points = append(points, procs.UnescapeMountinfo(f[4]))
		}
	}
	at := 0
	for i, m := range mounts {
		j := 0
		for j = at; j < len(points) && points[j] != m; j++ {
		}
		if j == len(points) {
			t.Fatalf("mounts[%d] (%s) is not in the mount table after mounts[%d], in config order %v; mount table:\n%s", i, m, max(i-1, 0), mounts, strings.Join(points, "\n"))
		}
		at = j + 1
	}
	return out
}

func tmpfsAt(dest string) map[string]any {
	return map[string]any{"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=755", "size=1m"}}
}

func bindAt(src, dest string, opts ...string) map[string]any {
	return map[string]any{"destination": dest, "type": "bind", "source": src, "options": append([]string{"rbind"}, opts...)}
}

// The container's mount table follows the config's order, also when a
// mount point is missing from the rootfs and must be staged, and nothing
// is made in the bundle's rootfs.
func TestOCIMountsInConfigOrder(t *testing.T) {
	t.Parallel()
	needUserns(t)
	bundle, root, mounts := mountsBundle(t, "test -d /new/dir && echo made", []map[string]any{tmpfsAt("/mnt/x"), tmpfsAt("/new/dir"), tmpfsAt("/a")}, nil)
	before := fingerprint(t, filepath.Join(bundle, "rootfs"))
	if out := inOrder(t, lc(t, root, "run", "--bundle", bundle, "order"), mounts); strings.TrimSpace(out) != "made" {
		t.Errorf("want the staged mount point: %q", out)
	}
	assertUnchanged(t, filepath.Join(bundle, "rootfs"), before)
}

// A target below an earlier mount is made in that mount, after it, even
// when the earlier one's own point was missing: [tmpfs /a, bind /a/b/c]
// with neither in the rootfs. A later mount never hides it.
func TestOCIMountUnderEarlierMount(t *testing.T) {
	t.Parallel()
	needUserns(t)
	host := tempDirOwnedIn(t, outerDir)
	if err := os.WriteFile(filepath.Join(host, "from-host"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bundle, root, mounts := mountsBundle(t, "ls /a/b/c; ls /etc/new/d; ls -d /a/b /etc/new",
		[]map[string]any{tmpfsAt("/a"), bindAt(host, "/a/b/c"), tmpfsAt("/etc/new"), bindAt(host, "/etc/new/d", "ro"), tmpfsAt("/zz")}, nil)
	before := fingerprint(t, filepath.Join(bundle, "rootfs"))
	out := inOrder(t, lc(t, root, "run", "--bundle", bundle, "nested"), mounts)
	if strings.Join(strings.Fields(out), " ") != "from-host from-host /a/b /etc/new" {
		t.Errorf("want the host dir at /a/b/c and /etc/new/d: %q", out)
	}
	assertUnchanged(t, filepath.Join(bundle, "rootfs"), before)
	if ents, _ := os.ReadDir(host); len(ents) != 1 {
		t.Errorf("hpcrun wrote into the bound host directory: %v", ents)
	}
}

// A mount point behind a symlink of the rootfs that points out of it
// (absolutely, or with ..) resolves inside the rootfs: it is made there, in
// a staging tmpfs, and nothing is made on the host.
func TestOCIMountThroughSymlink(t *testing.T) {
	t.Parallel()
	needUserns(t)
	host := tempDirOwnedIn(t, outerDir)
	bundle, root, _ := mountsBundle(t, `ls -d "$0/sub" /up/x; grep -c " $0/sub \| /x " /proc/self/mountinfo`,
		[]map[string]any{tmpfsAt("/out/sub"), tmpfsAt("/up/x")}, func(spec map[string]any) {
			spec["process"].(map[string]any)["args"] = append(spec["process"].(map[string]any)["args"].([]any), host)
		})
	rootfs := filepath.Join(bundle, "rootfs")
	for name, target := range map[string]string{"out": host, "up": "../../../../../../.."} {
		if err := os.Symlink(target, filepath.Join(rootfs, name)); err != nil {
			t.Fatal(err)
		}
		if asOther {
			os.Lchown(filepath.Join(rootfs, name), testUID, testGID)
		}
	}
	before := fingerprint(t, rootfs)
	// The mount table shows the resolved points, so only the order of
	// the ones at their own paths is checked.
	out := inOrder(t, lc(t, root, "run", "--bundle", bundle, "symlinked"), []string{"/proc", "/dev", host + "/sub", "/x"})
	if strings.Join(strings.Fields(out), " ") != host+"/sub /up/x 2" {
		t.Errorf("want the mount points inside the rootfs: %q", out)
	}
	assertUnchanged(t, rootfs, before)
	if ents, _ := os.ReadDir(host); len(ents) != 0 {
		t.Errorf("hpcrun made %v on the host, through the rootfs's symlink", ents)
	}
}

// hostDevice is a character device of the host that a bundle can ask for
// in linux.devices and that a /dev of its own lacks.
func hostDevice(t *testing.T) (path string, major, minor uint32) {
	t.Helper()
	for _, p := range []string{"/dev/fuse", "/dev/kvm", "/dev/net/tun", "/dev/ptmx"} {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR {
			return p, unix.Major(st.Rdev), unix.Minor(st.Rdev)
		}
	}
	t.Fatal("the host has none of /dev/fuse, /dev/kvm, /dev/net/tun, /dev/ptmx")
	return "", 0, 0
}

// linux.devices are bound from the host's nodes when they exist and
// match; a missing or different one fails create in one line.
func TestOCIDevices(t *testing.T) {
	t.Parallel()
	needUserns(t)
	dev, major, minor := hostDevice(t)
	devices := func(devs ...map[string]any) func(map[string]any) {
		return func(spec map[string]any) { spec["linux"].(map[string]any)["devices"] = devs }
	}
	device := func(path, typ string, major, minor uint32) map[string]any {
		return map[string]any{"path": path, "type": typ, "major": major, "minor": minor, "fileMode": 0o600, "uid": 0, "gid": 0}
	}
	bundle, root, mounts := mountsBundle(t, fmt.Sprintf(`stat -c '%%F %%t:%%T' %s; test -c /dev/null && echo null`, dev), nil,
		devices(device(dev, "c", major, minor), device("/dev/null", "c", 1, 3)))
	r := lc(t, root, "run", "--bundle", bundle, "devices")
	out := inOrder(t, r, append(mounts, dev))
	if want := fmt.Sprintf("character special file %x:%x\nnull\n", major, minor); out != want {
		t.Errorf("want the host's %s in the container: %q, want %q", dev, out, want)
	}
	if !strings.Contains(r.stderr, "of device "+dev) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("want one warning line naming what the bind of %s keeps of the host's: %s", dev, r)
	}

	for name, tc := range map[string]struct {
		dev  map[string]any
		want string
	}{
		"missing": {device("/dev/e2e-missing", "c", 10, 666), "/dev/e2e-missing does not exist on this host"},
		"numbers": {device(dev, "c", major, minor+1), fmt.Sprintf("and the host's is c %d:%d", major, minor)},
		"type":    {device(dev, "b", major, minor), fmt.Sprintf("and the host's is c %d:%d", major, minor)},
	} {
		bundle, root, _ := mountsBundle(t, "true", nil, devices(tc.dev))
		failsLC(t, root, tc.want, "create", "--bundle", bundle, "bad-"+name)
		if r := lc(t, root, "state", "bad-"+name); r.code == 0 {
			t.Errorf("%s: a refused container was left: %s", name, r)
		}
	}
}

// Mount options: recursive read-only (rro) and propagation apply; a bind's
// options that a user namespace cannot give are said in one warning line.
func TestOCIMountOptions(t *testing.T) {
	t.Parallel()
	needUserns(t)
	host := tempDirOwnedIn(t, outerDir)
	tmpfs := map[string]any{"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "noexec", "mode=750", "size=1m", "ro", "private"}}
	bundle, root, mounts := mountsBundle(t, `touch /ro/x 2>/dev/null || echo ro; touch /rw/x && echo rw; stat -c %a /t
grep -E " /(ro|rw) " /proc/self/mountinfo | cut -d" " -f5,7 | sed "s/:[0-9]*//"; grep " /t " /proc/self/mountinfo | awk '{print $6, $NF}' | sed "s/,uid=.*//"`,
		[]map[string]any{bindAt(host, "/ro", "rro", "rshared"), bindAt(host, "/rw", "mode=755", "rslave"), tmpfs}, nil)
	r := lc(t, root, "run", "--bundle", bundle, "options")
	out := inOrder(t, r, mounts)
	// A slave of a private mount (the host's, here, may be private) is
	// private: /rw is only not shared.
	got := strings.Join(strings.Fields(out), " ")
	if want := "ro rw 750 /ro shared /rw %s ro,nosuid,noexec,relatime ro,size=1024k,mode=750"; got != fmt.Sprintf(want, "master") && got != fmt.Sprintf(want, "-") {
		t.Errorf("want /ro read-only and shared, /rw writable and not shared, /t a read-only tmpfs of 1 MiB, mode 750: %q", got)
	}
	if !strings.Contains(r.stderr, "options mode=755 of the bind at /rw") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("want one warning line that the bind takes no mode=: %s", r)
	}
}
