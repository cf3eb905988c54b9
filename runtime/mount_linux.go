package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/hpcrun/hpcrun/internal/fallback"
	"github.com/hpcrun/hpcrun/runtime/procs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountFlags maps mount options to flags, as runc's table does. clear
// means the option removes the flag.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"bind":        {false, unix.MS_BIND},
	"rbind":       {false, unix.MS_BIND | unix.MS_REC},
	"ro":          {false, unix.MS_RDONLY},
	"rw":          {true, unix.MS_RDONLY},
	"nosuid":      {false, unix.MS_NOSUID},
	"suid":        {true, unix.MS_NOSUID},
	"nodev":       {false, unix.MS_NODEV},
	"dev":         {true, unix.MS_NODEV},
	"noexec":      {false, unix.MS_NOEXEC},
	"exec":        {true, unix.MS_NOEXEC},
	"noatime":     {false, unix.MS_NOATIME},
	"atime":       {true, unix.MS_NOATIME},
	"nodiratime":  {false, unix.MS_NODIRATIME},
	"diratime":    {true, unix.MS_NODIRATIME},
	"relatime":    {false, unix.MS_RELATIME},
	"norelatime":  {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME},
	"sync":        {false, unix.MS_SYNCHRONOUS},
	"async":       {true, unix.MS_SYNCHRONOUS},
	"dirsync":     {false, unix.MS_DIRSYNC},
}

// propagationFlags are the propagation modes, of a mount's options and of
// linux.rootfsPropagation.
var propagationFlags = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// recursiveAttrs are runc's recursive options: mount_setattr bits set on
// a mount and every mount below it.
var recursiveAttrs = map[string]uint64{
	"rro":     unix.MOUNT_ATTR_RDONLY,
	"rnosuid": unix.MOUNT_ATTR_NOSUID,
	"rnodev":  unix.MOUNT_ATTR_NODEV,
	"rnoexec": unix.MOUNT_ATTR_NOEXEC,
}

// recursiveAttrsOf returns the bits that the recursive options ask for.
func recursiveAttrsOf(opts []string) uint64 {
	var a uint64
	for _, o := range opts {
		a |= recursiveAttrs[o]
	}
	return a
}

// parseMountOptions splits a spec mount's options into mount(2) flags,
// propagation changes and filesystem data ("mode=755,size=64m").
func parseMountOptions(opts []string) (flags uintptr, propagation []uintptr, data string) {
	var extra []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
		} else if p, ok := propagationFlags[o]; ok {
			propagation = append(propagation, p)
		} else if _, ok := recursiveAttrs[o]; ok {
			continue
		} else {
			extra = append(extra, o)
		}
	}
	return flags, propagation, strings.Join(extra, ",")
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" || m.Type == "rbind" {
		return true
	}
	flags, _, _ := parseMountOptions(m.Options)
	return flags&unix.MS_BIND != 0
}

// attrsOf turns the restricting flags of a bind into mount_setattr bits.
func attrsOf(flags uintptr) uint64 {
	var a uint64
	for _, f := range []struct {
		ms   uintptr
		attr uint64
	}{
		{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
		{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
		{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
		{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	} {
		if flags&f.ms != 0 {
			a |= f.attr
		}
	}
	return a
}

// bindUnapplied lists what the options of a bind mount ask for that the
// bind cannot give in a user namespace, for CreateBundle to warn about.
// runc passes them to the kernel, which ignores some and refuses others.
// A bind takes no filesystem data (mode=, size=), nor sync or dirsync,
// which belong to the filesystem. It copies its source's flags, and the
// kernel locks them for a user namespace: a bind can add ro, nosuid,
// nodev and noexec, but neither clear them (rw, suid, dev, exec) nor
// change the atime mode. srcFlags are the statfs flags of the source.
func bindUnapplied(m specs.Mount, srcFlags int64) []string {
	flags, _, data := parseMountOptions(m.Options)
	var out []string
	if data != "" {
		out = append(out, fmt.Sprintf("options %s of the bind at %s (a bind takes no filesystem options)", data, m.Destination))
	}
	var locked []string
	for _, o := range m.Options {
		f, ok := mountFlags[o]
		if !ok {
			continue
		}
		switch f.flag {
		case unix.MS_SYNCHRONOUS, unix.MS_DIRSYNC:
			if !f.clear {
				locked = append(locked, o)
			}
		case unix.MS_RDONLY, unix.MS_NOSUID, unix.MS_NODEV, unix.MS_NOEXEC:
			if f.clear && flags&f.flag == 0 && srcFlags&statfsFlag[f.flag] != 0 {
				locked = append(locked, o)
			}
		case unix.MS_NOATIME, unix.MS_RELATIME, unix.MS_STRICTATIME, unix.MS_NODIRATIME:
			if !f.clear && atimeMode(flags) != atimeMode(statfsToMS(srcFlags)) && !slices.Contains(locked, o) {
				locked = append(locked, o)
			}
		}
	}
	if len(locked) > 0 {
		out = append(out, fmt.Sprintf("%s on the bind at %s (it keeps the flags of %s)", strings.Join(locked, ","), m.Destination, m.Source))
	}
	return out
}

// statfsFlag maps the mount flags that a bind copies to statfs's.
var statfsFlag = map[uintptr]int64{
	unix.MS_RDONLY: unix.ST_RDONLY, unix.MS_NOSUID: unix.ST_NOSUID, unix.MS_NODEV: unix.ST_NODEV,
	unix.MS_NOEXEC: unix.ST_NOEXEC, unix.MS_NOATIME: unix.ST_NOATIME, unix.MS_NODIRATIME: unix.ST_NODIRATIME,
	unix.MS_RELATIME: unix.ST_RELATIME,
}

// statfsToMS turns statfs flags into mount flags; neither noatime nor
// relatime there is strictatime.
func statfsToMS(st int64) uintptr {
	var ms uintptr
	for f, s := range statfsFlag {
		if st&s != 0 {
			ms |= f
		}
	}
	if ms&(unix.MS_NOATIME|unix.MS_RELATIME) == 0 {
		ms |= unix.MS_STRICTATIME
	}
	return ms
}

// atimeMode is the atime behaviour that mount flags give: noatime,
// relatime or strictatime (the kernel's default is relatime), with
// nodiratime.
func atimeMode(flags uintptr) uintptr {
	mode := uintptr(unix.MS_RELATIME)
	switch {
	case flags&unix.MS_NOATIME != 0:
		mode = unix.MS_NOATIME
	case flags&unix.MS_STRICTATIME != 0:
		mode = unix.MS_STRICTATIME
	}
	return mode | flags&unix.MS_NODIRATIME
}

// mountLabelUnapplied names linux.mountLabel where the host enforces
// SELinux labels: hpcrun does not label mounts. Without SELinux no runtime
// labels anything, and runc ignores the field too.
func mountLabelUnapplied(label string, selinux bool) []string {
	if label == "" || !selinux {
		return nil
	}
	return []string{"linux.mountLabel " + label + " (mounts keep their own SELinux labels)"}
}

// mountsUnapplied lists what a bundle's mounts and linux.devices ask for
// that hpcrun cannot give rootless, for CreateBundle to warn about.
func mountsUnapplied(s *specs.Spec) []string {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	out := mountLabelUnapplied(s.Linux.MountLabel, err == nil)
	for _, m := range s.Mounts {
		if !isBind(m) {
			continue
		}
		var st unix.Statfs_t
		if unix.Statfs(m.Source, &st) == nil {
			out = append(out, bindUnapplied(m, st.Flags)...)
		}
	}
	return append(out, deviceUnapplied(s, hostStat)...)
}

// builder assembles the container's tree below newroot before the pivot.
// It never creates anything in the rootfs or in a host directory: a
// mount point missing from the image is made in a private tmpfs (see
// makeUnderlay), and one missing from a host directory is an error.
type builder struct {
	stage    string          // private tmpfs over the rootfs path: newroot, files, overlay layers
	newroot  string          // host path of the container's /
	writable bool            // newroot is a writable overlay (--writable-tmpfs)
	ours     map[string]bool // directories in our own tmpfs, free to add mount points to
	foreign  []foreignMount  // mounts whose contents are not the image's
	underlay []string        // staging tmpfs mounts, made read-only at the end
	mounted  []string        // targets mounted so far, in order
	logf     func(string, ...any)
}

// foreignMount is a mount whose directory belongs to the host or the
// kernel: nothing may be created in it.
type foreignMount struct {
	target string // host side, below newroot
	dest   string // inside the container
	what   string // "bound from the host's /tmp", "a proc mount"
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// buildRootfs makes the container's root filesystem and pivots into it:
//  1. make / a recursive slave, so nothing mounted here reaches the host;
//  2. open the rootfs and every bind source, before anything covers them;
//  3. mount the stage, a private tmpfs, over the rootfs path, and bind the
//     rootfs (read-only) or an overlay on it (--writable-tmpfs) at stage/root;
//  4. place the generated files, then apply the spec's mounts in order;
//  5. make the staging tmpfs mounts read-only, and pivot_root.
//
// stateDir, if set, is the descriptor of the container's state directory:
// it is replaced by one of a bind of it in the stage, which pivot_root
// detaches with the stage, so that the descriptor the init keeps leads to
// the state directory's files and nowhere above (see fence_linux.go).
func buildRootfs(cfg *initConfig, stateDir *int, logf func(string, ...any)) error {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return &os.PathError{Op: "make / a slave mount", Path: "/", Err: err}
	}
	rootfs := cfg.Rootfs
	rootFD, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rootfs %s: %w", rootfs, err)
	}
	defer unix.Close(rootFD)
	srcFDs := make([]int, len(cfg.Mounts))
	defer func() {
		for _, fd := range srcFDs {
			if fd > 0 {
				unix.Close(fd)
			}
		}
	}()
	for i, m := range cfg.Mounts {
		srcFDs[i] = -1
		if isBind(m) {
			fd, err := unix.Open(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("bind source %s: %w", m.Source, err)
			}
			srcFDs[i] = fd
		}
	}

	b := &builder{stage: rootfs, newroot: filepath.Join(rootfs, "root"), writable: cfg.Writable,
		ours: map[string]bool{}, logf: logf}
	if err := unix.Mount("hpcrun", b.stage, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return &os.PathError{Op: "mount staging tmpfs", Path: b.stage, Err: err}
	}
	// The rootfs often lies under /tmp, /var/tmp or $HOME, which are bound
	// recursively into the container: an unbindable stage keeps those
	// copies from dragging the whole new tree along.
	if err := unix.Mount("", b.stage, "", unix.MS_UNBINDABLE, ""); err != nil {
		return &os.PathError{Op: "make staging tmpfs unbindable", Path: b.stage, Err: err}
	}
	if err := unix.Mkdir(b.newroot, 0o755); err != nil {
		return &os.PathError{Op: "mkdir", Path: b.newroot, Err: err}
	}
	if stateDir != nil {
		if err := b.confine(stateDir); err != nil {
			return err
		}
	}
	if len(cfg.Files) > 0 || b.writable {
		// Generated files and overlay layers live in a tmpfs of their own:
		// nothing can be bound, nor an overlay layer taken, from the
		// unbindable stage itself.
		rw := b.stage + "/rw"
		if err := unix.Mkdir(rw, 0o755); err != nil {
			return &os.PathError{Op: "mkdir", Path: rw, Err: err}
		}
		if err := unix.Mount("hpcrun", rw, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
			return &os.PathError{Op: "mount tmpfs", Path: rw, Err: err}
		}
		for _, d := range []string{"files", "upper", "work", "lower"} {
			if err := unix.Mkdir(rw+"/"+d, 0o755); err != nil {
				return &os.PathError{Op: "mkdir", Path: rw + "/" + d, Err: err}
			}
		}
	}
	if b.writable {
		if err := mountOverlay(fdPath(rootFD), b.stage+"/rw", b.newroot); err != nil {
			return err
		}
	} else {
		if err := unix.Mount(fdPath(rootFD), b.newroot, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind rootfs %s: %w", rootfs, err)
		}
		// Read-only now, with any filesystem mounted inside the rootfs,
		// and before anything clones it: a bind mount copies the flags of
		// its source, so underlays stay read-only too. An OCI bundle may
		// ask for its rootfs writable (root.readonly false).
		attrs := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
		if !cfg.WritableRoot {
			attrs |= unix.MOUNT_ATTR_RDONLY
		}
		if err := setAttrs(b.newroot, attrs, true); err != nil {
			return fmt.Errorf("make rootfs read-only: %w", err)
		}
	}
	logf("rootfs %s at %s (writable: %v)", rootfs, b.newroot, b.writable)
	// Every image directory that needs a staging tmpfs gets it now, before
	// anything is mounted in the new root: staging re-binds a directory's
	// entries in name order, which would reorder mounts made before it.
	if err := b.stageAll(cfg.Files, cfg.Mounts); err != nil {
		return err
	}

	// Generated files first: a --bind of the caller's own /etc/passwd or
	// /etc/hosts comes later in the spec, and wins.
	for i, f := range cfg.Files {
		if err := b.placeFile(i, f); err != nil {
			return err
		}
	}
	for i, m := range cfg.Mounts {
		if err := b.apply(m, srcFDs[i]); err != nil {
			return err
		}
	}
	b.devLinks(cfg.Mounts)
	if err := b.maskAndProtect(cfg.MaskedPaths, cfg.ReadonlyPaths); err != nil {
		return err
	}
	for _, d := range b.underlay {
		if err := setAttrs(d, unix.MOUNT_ATTR_RDONLY, false); err != nil {
			return fmt.Errorf("make staging mount %s read-only: %w", d, err)
		}
	}
	logf("%d mounts applied, %d mount points staged in tmpfs", len(cfg.Mounts)+len(cfg.Files), len(b.underlay))
	newroot := b.newroot
	if cfg.beforePivot != nil {
		if newroot, err = cfg.beforePivot(newroot); err != nil {
			return err
		}
	}
	if err := pivotRoot(newroot); err != nil {
		return err
	}
	logf("pivoted into the rootfs")
	return nil
}

// confine replaces *dir, a directory descriptor, by one of a bind of that
// directory (alone: not recursive) at stage/state. The pivot detaches the
// stage and that bind with it, and ".." at the root of a detached mount
// stays there.
func (b *builder) confine(dir *int) error {
	at := b.stage + "/state"
	if err := unix.Mkdir(at, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: at, Err: err}
	}
	if err := unix.Mount(fdPath(*dir), at, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the container's state directory into the stage: %w", err)
	}
	fd, err := unix.Open(at, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: at, Err: err}
	}
	unix.Close(*dir)
	*dir = fd
	b.logf("state directory bound into the stage, held as fd %d", fd)
	return nil
}

// devLinks makes the symlinks that the runtime spec promises in a /dev of
// the spec's own (a tmpfs, as runc bundles have it; hpcrun's own runs bind
// the host's /dev, which has them): fd, stdin, stdout, stderr and ptmx.
func (b *builder) devLinks(mounts []specs.Mount) {
	own := false
	for _, m := range mounts {
		if m.Destination == "/dev" {
			own = m.Type == "tmpfs"
		}
	}
	if !own {
		return
	}
	dev := b.newroot + "/dev/"
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		unix.Symlink(target, dev+name) // EEXIST: a bind put one there
	}
}

// maskAndProtect applies linux.maskedPaths and linux.readonlyPaths. A path
// the container lacks is skipped, as runc does; one that leads out of the
// rootfs through a symlink is refused.
func (b *builder) maskAndProtect(masked, readonly []string) error {
	inside := func(p string) (string, os.FileInfo, bool) {
		full, err := securejoin.SecureJoin(b.newroot, p)
		if err != nil {
			return "", nil, false
		}
		fi, err := os.Stat(full)
		return full, fi, err == nil
	}
	for _, p := range masked {
		full, fi, ok := inside(p)
		switch {
		case !ok:
		case fi.IsDir():
			if err := unix.Mount("tmpfs", full, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=0555"); err != nil {
				return fmt.Errorf("mask %s: %w", p, err)
			}
		default:
			if err := unix.Mount("/dev/null", full, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("mask %s: %w", p, err)
			}
		}
	}
	for _, p := range readonly {
		full, _, ok := inside(p)
		if !ok {
			continue
		}
		if err := unix.Mount(full, full, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
		if err := setAttrs(full, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC, true); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}

// apply places one spec mount; srcFD is the open bind source, or -1.
func (b *builder) apply(m specs.Mount, srcFD int) error {
	flags, propagation, data := parseMountOptions(m.Options)
	dir := true
	if srcFD >= 0 {
		var st unix.Stat_t
		if err := unix.Fstat(srcFD, &st); err != nil {
			return fmt.Errorf("bind source %s: %w", m.Source, err)
		}
		dir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	target, err := b.ensureTarget(m.Destination, dir)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", m.Destination, err)
	}
	// What was staged at or below target is covered now: a mount point
	// made there later would land in whatever this mount brings, and
	// making an underlay read-only at the end, by its path, would make
	// this mount read-only instead.
	for d := range b.ours {
		if within(d, target) {
			delete(b.ours, d)
		}
	}
	b.underlay = slices.DeleteFunc(b.underlay, func(d string) bool { return within(d, target) })
	b.mounted = append(b.mounted, target)
	if srcFD >= 0 {
		if err := unix.Mount(fdPath(srcFD), target, "", unix.MS_BIND|flags&unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s to %s: %w", m.Source, m.Destination, err)
		}
		if a := attrsOf(flags); a != 0 {
			if err := setAttrs(target, a, flags&unix.MS_REC != 0); err != nil {
				return fmt.Errorf("restrict bind of %s (%s): %w", m.Destination, strings.Join(m.Options, ","), err)
			}
		}
		b.foreign = append(b.foreign, foreignMount{target, m.Destination, "bound from the host's " + m.Source})
	} else {
		if err := unix.Mount(m.Source, target, m.Type, flags, data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, m.Destination, err)
		}
		if m.Type == "tmpfs" {
			b.ours[target] = true
		} else {
			b.foreign = append(b.foreign, foreignMount{target, m.Destination, "a " + m.Type + " mount"})
		}
	}
	if a := recursiveAttrsOf(m.Options); a != 0 {
		if err := setAttrs(target, a, true); err != nil {
			return fmt.Errorf("restrict %s (%s): %w", m.Destination, strings.Join(m.Options, ","), err)
		}
	}
	for _, p := range propagation {
		if err := unix.Mount("", target, "", p, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
		}
	}
	return nil
}

// placeFile writes a generated file into the stage and binds it read-only
// at its path in the container.
func (b *builder) placeFile(i int, f File) error {
	src := filepath.Join(b.stage, "rw", "files", strconv.Itoa(i))
	if err := writeNew(src, f.Data, f.Mode&0o777); err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	target, err := b.ensureTarget(f.Path, false)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", f.Path, err)
	}
	b.mounted = append(b.mounted, target)
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind generated %s: %w", f.Path, err)
	}
	if err := setAttrs(target, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, false); err != nil {
		return fmt.Errorf("make %s read-only: %w", f.Path, err)
	}
	return nil
}

// writeNew writes data to a new file at path, in the init's own tmpfs,
// with system calls alone: os.WriteFile would try the file on Go's poller
// (a dozen calls more, and the poller's set-up on the first).
func writeNew(path string, data []byte, mode uint32) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := writeAll(fd, data); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// mountOverlay mounts an overlay of the rootfs at target, with its upper
// layer in the tmpfs at rw. Writes land in that tmpfs and vanish with the
// mount namespace.
func mountOverlay(rootfs, rw, target string) error {
	// overlayfs wants a plain path for its lower layer, not a magic link.
	lower := rw + "/lower"
	if err := unix.Mount(rootfs, lower, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs for the overlay: %w", err)
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, rw, rw)
	// In a user namespace overlayfs keeps its metadata in user.* xattrs;
	// kernels before 5.11 know no userxattr and may still take the mount.
	err := unix.Mount("overlay", target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, data+",userxattr")
	if err == unix.EINVAL {
		err = unix.Mount("overlay", target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, data)
	}
	if err != nil {
		return fmt.Errorf("%w: --writable-tmpfs needs kernel overlayfs in a user namespace (Linux 5.11 or later), and this kernel said: %w; run without --writable-tmpfs and write to $HOME or /tmp instead", ErrOverlayRefused, err)
	}
	return nil
}

// ensureTarget returns the host path of dest inside the new root, with
// symlinks resolved inside the root as the container will see them. When
// it is missing it is created, as a directory or an empty file: directly
// in a tmpfs of ours, or else in an underlay of its deepest existing
// ancestor.
func (b *builder) ensureTarget(dest string, dir bool) (string, error) {
	p, err := securejoin.SecureJoin(b.newroot, dest)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(p); err == nil {
		return p, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	anc, missing := p, []string{}
	for {
		missing = append([]string{filepath.Base(anc)}, missing...)
		anc = filepath.Dir(anc)
		if _, err := os.Lstat(anc); err == nil {
			break
		}
		if !within(anc, b.newroot) {
			return "", fmt.Errorf("%s escapes the container root", dest)
		}
	}
	if !b.ours[anc] {
		if f := b.foreignAt(anc); f != nil {
			return "", fmt.Errorf("it does not exist in %s, which is %s; create it there first, or choose another destination", f.dest, f.what)
		}
		// In the image: a read-only rootfs, or a directory of the
		// overlay that the caller cannot write, gets an underlay. stageAll
		// made those it could foresee; one that a mount's own symlink
		// leads to is made now, unless mounts lie below it already:
		// their copies in the underlay would come in name order.
		if b.needsUnderlay(anc) {
			if i := slices.IndexFunc(b.mounted, func(t string) bool { return within(t, anc) }); i >= 0 {
				return "", fmt.Errorf("it is missing from the rootfs, and a staging tmpfs for it at %s would reorder the mount at %s; create it in the rootfs",
					b.inside(anc), b.inside(b.mounted[i]))
			}
			if err := b.makeUnderlay(anc); err != nil {
				return "", err
			}
		}
	}
	cur := anc
	for i, name := range missing {
		cur = filepath.Join(cur, name)
		if i == len(missing)-1 && !dir {
			fd, err := unix.Open(cur, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
			if err != nil {
				return "", &os.PathError{Op: "create", Path: cur, Err: err}
			}
			unix.Close(fd)
			break
		}
		if err := unix.Mkdir(cur, 0o755); err != nil {
			return "", &os.PathError{Op: "mkdir", Path: cur, Err: err}
		}
		b.ours[cur] = true
	}
	return p, nil
}

// needsUnderlay reports whether a mount point may be made in dir, a
// directory of the image, only in a staging tmpfs: the rootfs is
// read-only, or dir is an overlay directory that the caller cannot write.
func (b *builder) needsUnderlay(dir string) bool {
	return !b.writable || unix.Access(dir, unix.W_OK|unix.X_OK) != nil
}

// inside returns the container's path of p, a host path below newroot.
func (b *builder) inside(p string) string {
	if p == b.newroot {
		return "/"
	}
	return strings.TrimPrefix(p, b.newroot)
}

// stageAll makes, before anything is mounted in the new root, the
// underlays that the generated files and the mounts will need (see
// stagePlan). The mount points themselves are made later, each just
// before its own mount, in the underlay or in a tmpfs mounted before it.
func (b *builder) stageAll(files []File, mounts []specs.Mount) error {
	var targets []string
	for _, f := range files {
		p, err := securejoin.SecureJoin(b.newroot, f.Path)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", f.Path, err)
		}
		targets = append(targets, p)
	}
	for _, m := range mounts {
		p, err := securejoin.SecureJoin(b.newroot, m.Destination)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", m.Destination, err)
		}
		targets = append(targets, p)
	}
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	for _, dir := range stagePlan(b.newroot, targets, exists) {
		if b.ours[dir] || !b.needsUnderlay(dir) {
			continue
		}
		if err := b.makeUnderlay(dir); err != nil {
			return err
		}
	}
	return nil
}

// stagePlan returns the directories of the image, below or at root, in
// which mount points must be made for targets, the host paths of the mount
// points in the order they are mounted: for each target missing from the
// image and not below an earlier target, its deepest existing ancestor.
// A target below an earlier one is made, or refused, in what that earlier
// mount brings. The directories come shallowest first, each once: staging
// a directory re-binds its entries, and with them any staging below.
func stagePlan(root string, targets []string, exists func(string) bool) []string {
	var dirs []string
	for i, t := range targets {
		if slices.ContainsFunc(targets[:i], func(e string) bool { return within(t, e) }) || exists(t) {
			continue
		}
		anc := t
		for anc != root && within(anc, root) {
			anc = filepath.Dir(anc)
			if exists(anc) {
				break
			}
		}
		if within(anc, root) && !slices.Contains(dirs, anc) {
			dirs = append(dirs, anc)
		}
	}
	slices.SortStableFunc(dirs, func(a, b string) int {
		return strings.Count(a, "/") - strings.Count(b, "/")
	})
	return dirs
}

// foreignAt returns the innermost foreign mount that holds dir, if any.
func (b *builder) foreignAt(dir string) *foreignMount {
	var hit *foreignMount
	for i, f := range b.foreign {
		if within(dir, f.target) && (hit == nil || len(f.target) > len(hit.target)) {
			hit = &b.foreign[i]
		}
	}
	return hit
}

// makeUnderlay replaces dir, a read-only directory of the image, by a
// tmpfs that shows the same entries: each directory and file is bound back
// from the original, each symlink is recreated. New mount points can then
// be made in the tmpfs, and the image stays untouched.
func (b *builder) makeUnderlay(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cannot add a mount point under %s: %w", strings.TrimPrefix(dir, b.newroot), err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Mount("hpcrun", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=%o", st.Mode&0o7777)); err != nil {
		return &os.PathError{Op: "mount staging tmpfs", Path: dir, Err: err}
	}
	for _, e := range ents {
		src, dst := fdPath(fd)+"/"+e.Name(), filepath.Join(dir, e.Name())
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(target, dst)
			}
			if err != nil {
				return fmt.Errorf("stage %s: %w", dst, err)
			}
			continue
		case e.IsDir():
			err = unix.Mkdir(dst, 0o755)
		default:
			var nfd int
			nfd, err = unix.Open(dst, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(nfd)
			}
		}
		if err != nil {
			return &os.PathError{Op: "stage", Path: dst, Err: err}
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("stage %s: bind: %w", dst, err)
		}
	}
	b.ours[dir] = true
	b.underlay = append(b.underlay, dir)
	b.logf("staged %s in a tmpfs (%d entries)", strings.TrimPrefix(dir, b.newroot)+"/", len(ents))
	return nil
}

// setAttrs restricts a mount (read-only, nosuid, ...), and with
// recursive every mount below it too. mount_setattr (Linux 5.12) changes
// just the given bits, of all of them at once. Older kernels get a bind
// remount of each mount, found in /proc/self/mountinfo (see remount).
func setAttrs(path string, attrs uint64, recursive bool) error {
	if !fallback.Forced(fallback.MountSetattr) {
		flags := unix.AT_SYMLINK_NOFOLLOW
		if recursive {
			flags |= unix.AT_RECURSIVE
		}
		err := unix.MountSetattr(unix.AT_FDCWD, path, uint(flags), &unix.MountAttr{Attr_set: attrs})
		if err != unix.ENOSYS {
			return err
		}
	}
	if !recursive {
		return remount(path, attrs)
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	ms := mountsBelow(string(b), path)
	if len(ms) == 0 {
		// A path through a symlink would match none of mountinfo's.
		return fmt.Errorf("no mount at %s in /proc/self/mountinfo", path)
	}
	for _, m := range ms {
		if err := remountMount(m, attrs); err != nil {
			return fmt.Errorf("remount %s: %w", m.point, err)
		}
	}
	return nil
}

// mountInfo is a mount of /proc/self/mountinfo: its id and mount point.
type mountInfo struct {
	id    int
	point string
}

// mountsBelow returns the mounts of mountinfo at path or below it, in
// mountinfo's order, in which a mount comes after the one it is mounted
// on.
func mountsBelow(mountinfo, path string) []mountInfo {
	var out []mountInfo
	for line := range strings.Lines(mountinfo) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		id, err := strconv.Atoi(f[0])
		point := procs.UnescapeMountinfo(f[4])
		if err != nil || (point != path && !strings.HasPrefix(point, strings.TrimSuffix(path, "/")+"/")) {
			continue
		}
		out = append(out, mountInfo{id, point})
	}
	return out
}

// remountMount remounts mount m, if its mount point still reaches it: a
// mount that another one covers since is out of the job's reach, and its
// path names the other. The mount point is opened without following a
// symlink, and the mount that the descriptor is on (fdinfo's mnt_id, Linux
// 3.15) must be m.
func remountMount(m mountInfo, attrs uint64) error {
	fd, err := unix.Open(m.point, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return err
	}
	if id, ok := fdinfoMountID(string(b)); !ok || id != m.id {
		return nil
	}
	return remount(fdPath(fd), attrs)
}

// fdinfoMountID reads the mnt_id line of a /proc/self/fdinfo file.
func fdinfoMountID(fdinfo string) (int, bool) {
	for line := range strings.Lines(fdinfo) {
		if v, ok := strings.CutPrefix(line, "mnt_id:"); ok {
			id, err := strconv.Atoi(strings.TrimSpace(v))
			return id, err == nil
		}
	}
	return 0, false
}

// remount adds attrs to the mount at path with a bind remount. Such a
// remount sets every flag anew, and in a user namespace the kernel refuses
// (EPERM) to clear a flag that the mount had when it came into the
// namespace (nosuid, nodev, noexec, the atime flags, read-only): so it
// repeats the flags the mount has. Without an atime flag the remount
// keeps the mount's atime mode.
func remount(path string, attrs uint64) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return err
	}
	ms := uintptr(unix.MS_REMOUNT | unix.MS_BIND)
	ms |= uintptr(sfs.Flags) & (unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC |
		unix.ST_NOATIME | unix.ST_NODIRATIME | unix.ST_RELATIME)
	for _, f := range []struct {
		attr uint64
		ms   uintptr
	}{
		{unix.MOUNT_ATTR_RDONLY, unix.MS_RDONLY}, {unix.MOUNT_ATTR_NOSUID, unix.MS_NOSUID},
		{unix.MOUNT_ATTR_NODEV, unix.MS_NODEV}, {unix.MOUNT_ATTR_NOEXEC, unix.MS_NOEXEC},
	} {
		if attrs&f.attr != 0 {
			ms |= f.ms
		}
	}
	return unix.Mount("", path, "", ms, "")
}

// pivotRoot makes newroot the root and detaches the old one.
func pivotRoot(newroot string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/", Err: err}
	}
	defer unix.Close(oldroot)
	if err := unix.Chdir(newroot); err != nil {
		return &os.PathError{Op: "chdir", Path: newroot, Err: err}
	}
	// pivot_root(".", ".") stacks the old root on top of the new one, so no
	// put_old directory is needed in a read-only rootfs. It fails with
	// EINVAL when "." is not a mount point or / is shared; both were
	// taken care of above.
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.PathError{Op: "pivot_root", Path: newroot, Err: err}
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return &os.PathError{Op: "fchdir", Path: "old root", Err: err}
	}
	// Detach the old root with everything under it. The whole tree goes
	// at once, which the user namespace allows even for locked mounts.
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "detach old root", Path: "/", Err: err}
	}
	if err := unix.Chdir("/"); err != nil {
		return &os.PathError{Op: "chdir", Path: "/", Err: err}
	}
	return nil
}
