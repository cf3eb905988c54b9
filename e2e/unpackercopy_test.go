package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unpackerRacer is a job that tries to swap the unpacker's copy in the
// cache's tmp/ (argv[1]) for its own program (argv[2]): it watches the
// directory with inotify and, at once and again in a loop, renames its
// program over every new file named hpcrun-unpack*, as the probe of
// issue 16 did. It prints "watching", then "swapped NAME" for each swap.
const unpackerRacer = `
import ctypes, os, struct, sys, select
tmp, evil = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
IN_CREATE, IN_CLOSE_WRITE, IN_MOVED_TO, IN_ATTRIB = 0x100, 0x8, 0x80, 0x4
if fd < 0 or libc.inotify_add_watch(fd, tmp.encode(), IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_ATTRIB) < 0:
    sys.exit("inotify: " + os.strerror(ctypes.get_errno()))
body = open(evil, "rb").read()
before = set(os.listdir(tmp))
def swap(name):
    if not name.startswith("hpcrun-unpack") or name in before:
        return
    t = os.path.join(tmp, ".swap-" + name)
    try:
        with open(t, "wb") as f:
            f.write(body)
        os.chmod(t, 0o755)
        os.rename(t, os.path.join(tmp, name))
        print("swapped", name, flush=True)
    except OSError:
        pass
print("watching", flush=True)
while True:
    select.select([fd], [], [], 0.001)
    try:
        buf = os.read(fd, 65536)
    except BlockingIOError:
        buf = b""
    i = 0
    while i + 16 <= len(buf):
        _, mask, _, n = struct.unpack_from("iIII", buf, i)
        swap(buf[i + 16:i + 16 + n].rstrip(b"\0").decode())
        i += 16 + n
    for name in os.listdir(tmp):
        swap(name)
`

// Where memfd exec is forbidden (vm.memfd_noexec=2), hpcrun runs its
// unpacker from a copy on the cache's filesystem. The default cache is
// under /var/tmp, which jobs see: a job that watches <cache>/tmp and swaps
// the copy must not get its program run by the user's next cold start.
// The copy has no name at all (O_TMPFILE), so there is nothing to swap.
// Each cold start runs with the test switch (HPCRUN_TEST_FALLBACK=
// memfd_exec) and, as root, once more in a pid namespace whose
// vm.memfd_noexec is 2, as a node would set it.
func TestUnpackerCopyCannotBeSwapped(t *testing.T) {
	needUserns(t)
	py := pythonBuild.get(t)
	dir := tempDirOwned(t)
	mark := filepath.Join(dir, "ran-the-jobs-program")
	evil := filepath.Join(dir, "evil")
	if err := os.WriteFile(evil, []byte("#!/bin/sh\necho \"$0 $*\" >>'"+mark+"'\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cache := defaultCache(t)
	tmp := filepath.Join(cache, "tmp")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	racer := command(ctx, opts{}, binPath, "-q", "--image", py, "python3", "-c", unpackerRacer, tmp, evil)
	out, err := racer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	racer.Stderr = os.Stderr
	if err := racer.Start(); err != nil {
		t.Fatal(err)
	}
	defer racer.Wait()
	defer cancel()
	said := readLines(out)
	select {
	case l := <-said:
		if l != "watching" {
			t.Fatalf("the racing job said %q", l)
		}
	case <-time.After(time.Minute):
		t.Fatal("the racing job did not start watching within a minute")
	}

	starts := []struct {
		name string
		wrap []string // a command line around hpcrun
		env  []string
	}{
		{"test switch", nil, []string{"HPCRUN_TEST_FALLBACK=memfd_exec"}},
	}
	if asOther {
		starts = append(starts, struct {
			name string
			wrap []string
			env  []string
		}{"vm.memfd_noexec=2", []string{"unshare", "-p", "-f", "--mount-proc", "sh", "-c",
			`echo 2 >/proc/sys/vm/memfd_noexec && exec setpriv --reuid=` + strconv.Itoa(testUID) + ` --regid=` + strconv.Itoa(testGID) + ` --clear-groups "$@"`, "sh"}, nil})
	}
	for i, s := range starts {
		for n := range 3 {
			// A fresh image each time: a cold start that runs the unpacker.
			image := genImage{env: []string{"PATH=/bin"}, layers: [][]byte{busyboxLayer(t),
				tarBytes(t, tFile("etc/nonce", fmt.Sprintf("%d.%d.%d\n", os.Getpid(), i, n)))}}.
				oci(t, "v1").writeTar(t, filepath.Join(dir, fmt.Sprintf("cold-%d-%d.tar", i, n)))
			args := []string{"-q", "--image", image, "cat", "/etc/nonce"}
			var r result
			if s.wrap == nil {
				r = runRaw(opts{env: s.env}, binPath, args...)
			} else {
				r = runRaw(opts{env: s.env, asRoot: true}, s.wrap[0], append(append(s.wrap[1:], binPath), args...)...)
			}
			if b, err := os.ReadFile(mark); err == nil {
				t.Fatalf("%s: hpcrun ran the job's program as its unpacker: %s\n%s", s.name, b, r)
			}
			if r.err != nil || r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf(".%d.%d", i, n)) {
				t.Fatalf("%s: cold start: %s", s.name, r)
			}
			runRaw(opts{}, binPath, "rmi", image)
		}
	}
	cancel()
	for l := range said {
		t.Errorf("the racing job %s", l)
	}
}

// defaultCache is the test user's default cache, as hpcrun config says.
func defaultCache(t *testing.T) string {
	t.Helper()
	r := mustRun(t, opts{}, "config")
	for _, l := range lines(r.stdout) {
		if v, ok := strings.CutPrefix(l, "cache: "); ok {
			return strings.Fields(v)[0]
		}
	}
	t.Fatalf("hpcrun config names no cache:\n%s", r.stdout)
	return ""
}
