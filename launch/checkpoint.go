package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/envlist"
	"github.com/hpcrun/hpcrun/runtime"
)

// CheckpointFile is the checkpoint's own record, beside criu's images.
const CheckpointFile = "hpcrun.json"

// CriuEnv names a site's criu (the config's criu key): a static build,
// which the image's glibc does not constrain.
const CriuEnv = "HPCRUN_CRIU"

// Checkpoint is what DIR/hpcrun.json holds: what a restore must find
// again, and how to reconnect the job.
type Checkpoint struct {
	Version  int       `json:"version"`
	Created  time.Time `json:"created"`
	Host     string    `json:"host"`
	Name     string    `json:"name"`      // the container's
	Image    string    `json:"image"`     // the reference it was run with (HPCRUN_IMAGE)
	Digest   string    `json:"digest"`    // the image's, "" for a --rootfs run
	CPUFlags []string  `json:"cpu_flags"` // the node's, from /proc/cpuinfo
	Leave    bool      `json:"leave_running,omitempty"`
	runtime.CheckpointInfo
}

const checkpointVersion = 1

// CheckpointContainer checkpoints container name's job into dir, which
// must not exist: criu's images and hpcrun.json go to a directory of
// their own beside it, renamed to dir once complete, so that no failed
// or cut-off checkpoint passes for one. The job ends unless leave.
func CheckpointContainer(c *runtime.Containers, name, dir string, leave bool) (*Checkpoint, int64, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, 0, err
	}
	if _, err := os.Lstat(dir); err == nil {
		return nil, 0, fmt.Errorf("%s exists: checkpoint into a new directory (or remove that one)", dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, 0, err
	}
	settings, err := LoadSettings(HostFacts(), "", "")
	if err != nil {
		return nil, 0, err
	}
	var criu *os.File
	if p := settings.Conf.Criu; p.Value != "" {
		if criu, err = openCriu(p.Value, p.From); err != nil {
			return nil, 0, err
		}
		defer criu.Close()
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return nil, 0, fmt.Errorf("make the checkpoint's directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	d, err := os.Open(tmp)
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	st, info, commit, err := c.Checkpoint(name, d, criu, leave)
	if err != nil {
		return nil, 0, err
	}
	// Until the commit the job waits, stopped: a failure here continues
	// it.
	defer func() {
		if !ok {
			commit(false)
		}
	}()
	host, _ := os.Hostname()
	cp := &Checkpoint{Version: checkpointVersion, Created: time.Now().UTC(), Host: host, Name: name,
		Image: envlist.Value(info.Env, "HPCRUN_IMAGE"), Digest: rootfsDigest(st.Rootfs), CPUFlags: cpuFlags(),
		Leave: leave, CheckpointInfo: *info}
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return nil, 0, err
	}
	if err := writeSynced(filepath.Join(tmp, CheckpointFile), append(b, '\n')); err != nil {
		return nil, 0, fmt.Errorf("write the checkpoint's %s: %w", CheckpointFile, err)
	}
	size := dirSize(tmp)
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		return nil, 0, fmt.Errorf("put the checkpoint in place at %s: %w; the job goes on", dir, err)
	}
	ok = true
	if err := commit(true); err != nil {
		return nil, 0, fmt.Errorf("the checkpoint is in %s, but its container did not take the commit, and its job goes on: %w", dir, err)
	}
	return cp, size, nil
}

// openCriu opens a site's criu, which must be an executable file; from
// says where it was named.
func openCriu(path, from string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("criu %s (%s): %w", path, from, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		f.Close()
		return nil, fmt.Errorf("criu %s (%s) is not an executable file: point it at a static criu %d.%d or newer", path, from, runtime.MinCriu[0], runtime.MinCriu[1])
	}
	return f, nil
}

// rootfsDigest is the digest in an unpacked image's rootfs path
// (.../images/sha256-HEX/rootfs), "" for another rootfs.
func rootfsDigest(rootfs string) string {
	base := filepath.Base(filepath.Dir(rootfs))
	if filepath.Base(rootfs) != "rootfs" || !strings.HasPrefix(base, "sha256-") {
		return ""
	}
	return "sha256:" + strings.TrimPrefix(base, "sha256-")
}

// cpuFlags are the CPU's flags, as /proc/cpuinfo lists the first's
// (flags on x86, Features on Arm).
func cpuFlags() []string {
	b, err := readCapped("/proc/cpuinfo", 1<<20)
	if err != nil {
		return nil
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && (strings.TrimSpace(k) == "flags" || strings.TrimSpace(k) == "Features") {
			f := strings.Fields(v)
			slices.Sort(f)
			return f
		}
	}
	return nil
}

// readCapped reads at most max bytes of path, without following a final
// symlink and without blocking on a fifo.
func readCapped(path string, max int64) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, err
}

// writeSynced writes a new file and syncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dirSize is the bytes of the files in dir.
func dirSize(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// LoadCheckpoint reads and checks dir's hpcrun.json.
func LoadCheckpoint(dir string) (*Checkpoint, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("--restore: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("--restore %s: not a directory: give the directory hpcrun checkpoint made", dir)
	}
	b, err := readCapped(filepath.Join(dir, CheckpointFile), 4<<20)
	if err != nil {
		return nil, fmt.Errorf("--restore %s: no checkpoint there (%v): give a directory that hpcrun checkpoint completed", dir, err)
	}
	cp := &Checkpoint{}
	if err := json.Unmarshal(b, cp); err != nil || cp.Version != checkpointVersion || cp.Pid <= 0 || len(cp.Args) == 0 {
		return nil, fmt.Errorf("--restore %s: %s is corrupt or from another version of hpcrun: checkpoint the job again", dir, CheckpointFile)
	}
	return cp, nil
}

// restoreChecks says why cp cannot be restored into the container cfg
// describes, on this node, if it cannot.
func restoreChecks(cp *Checkpoint, cfg *runtime.Config, digest string) error {
	if cp.Digest != digest {
		return fmt.Errorf("--restore: the checkpoint was taken in image %s (%s), this run's image is %s: restore it with the same image", cp.Image, cp.Digest, imageOrRootfs(digest))
	}
	if digest == "" && cfg.Spec.Root != nil && cp.Rootfs != cfg.Spec.Root.Path {
		return fmt.Errorf("--restore: the checkpoint was taken in the rootfs %s, this run's is %s: restore it with the same --rootfs", cp.Rootfs, cfg.Spec.Root.Path)
	}
	var binds []string
	for _, m := range cfg.Spec.Mounts {
		binds = append(binds, m.Destination+"<-"+m.Source)
	}
	for _, b := range cp.Binds {
		if !slices.Contains(binds, b) {
			return fmt.Errorf("--restore: the checkpoint's container had %s, which this one lacks: restore with the same binds, from the same directory", strings.Replace(b, "<-", " bound from ", 1))
		}
	}
	for _, b := range binds {
		if !slices.Contains(cp.Binds, b) {
			return fmt.Errorf("--restore: this container has %s, which the checkpoint's lacked: restore with the same binds, from the same directory", strings.Replace(b, "<-", " bound from ", 1))
		}
	}
	have := cpuFlags()
	var missing []string
	for _, f := range cp.CPUFlags {
		if !slices.Contains(have, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 && have != nil {
		return fmt.Errorf("--restore: this node's CPU lacks %s, which the checkpoint's node (%s) had: restore on a node of the same CPU type", strings.Join(missing, " "), cp.Host)
	}
	return nil
}

func imageOrRootfs(s string) string {
	if s == "" {
		return "a --rootfs directory"
	}
	return s
}
