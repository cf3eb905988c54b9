package jobs

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Candidates are the node-local dirs that the default cache may live in,
// in the order tried when the config names none (see ChooseScratch).
//
// Why a fixed list, and not $TMPDIR: every process of a user on a node
// must find the same cache, and TMPDIR differs between them (Slurm 22.05
// sets TMPDIR=/tmp for a step's task 0 only; a login shell has none), so
// the tasks of one step would each unpack the image into a cache of their
// own. Why /var/tmp first: it outlives a reboot, is on disk rather than in
// the memory a job needs (/tmp is often a tmpfs), and temp cleaners age
// it more slowly (systemd's defaults: 30 days against 10). /tmp is the
// fallback where /var/tmp is noexec, missing or read-only.
var Candidates = []string{"/var/tmp", "/tmp"}

// Dir is what ChooseScratch needs to know about a directory.
type Dir struct {
	Exists, Writable bool
	Free             uint64 // bytes available to the caller
	FS               string // the filesystem's name: ext4, tmpfs, nfs, lustre, ...
	Local            bool   // the filesystem is on this node, not shared over the network
	NoExec           bool   // mounted noexec: nothing unpacked there can run
}

// Scratch is the node-local dir that holds hpcrun's cache, and why it was
// chosen.
type Scratch struct {
	Dir  string
	From string   // where the choice came from: a config file:line, HPCRUN_SCRATCH, the candidates
	Why  []string // the candidates passed over, each with why, for -v
}

// ChooseScratch picks the node-local scratch dir: the configured one (the
// site's, the user's or HPCRUN_SCRATCH), else the first of Candidates
// that exists, is node-local, allows exec and is writable. It reads no
// environment on purpose: the answer must be the same for every process
// of the user on the node (see Candidates). A configured dir must be
// usable, and an error says why it is not; so does one when no candidate
// is.
func ChooseScratch(c Config, probe func(string) Dir) (Scratch, error) {
	if v := c.Scratch.Value; v != "" {
		d := probe(v)
		set := fmt.Sprintf("the scratch dir %s (set in %s)", v, c.Scratch.From)
		switch {
		case !d.Exists:
			return Scratch{}, fmt.Errorf("%s does not exist on this node; create it, or give --cache (or HPCRUN_CACHE) a node-local dir", set)
		case d.NoExec:
			return Scratch{}, fmt.Errorf("%s is on a filesystem mounted noexec, where no unpacked image can run; set scratch: to a node-local dir that allows exec, or give --cache (or HPCRUN_CACHE) one", set)
		case !d.Writable:
			return Scratch{}, fmt.Errorf("%s is not writable; fix its permissions, or give --cache (or HPCRUN_CACHE) a node-local dir you can write", set)
		}
		return Scratch{Dir: v, From: c.Scratch.From}, nil
	}
	var why []string
	for _, dir := range Candidates {
		d := probe(dir)
		if reason := unusable(d); reason != "" {
			why = append(why, dir+" "+reason)
			continue
		}
		return Scratch{Dir: dir, From: "the first usable of " + strings.Join(Candidates, ", ") + ": node-local " + d.FS + ", exec allowed, writable", Why: why}, nil
	}
	return Scratch{}, fmt.Errorf("no node-local dir for the image cache: %s; set cache: or scratch: in the site config (%s) to a node-local dir that allows exec, or give --cache DIR (or HPCRUN_CACHE)",
		strings.Join(why, ", "), SiteConfig)
}

// unusable says why a candidate cannot hold the default cache; "" when
// it can.
func unusable(d Dir) string {
	switch {
	case !d.Exists:
		return "does not exist"
	case !d.Local:
		return "is on " + d.FS + ", not node-local"
	case d.NoExec:
		return "is mounted noexec"
	case !d.Writable:
		return "is not writable"
	}
	return ""
}

// CheckCache refuses a cache dir (given by --cache, HPCRUN_CACHE or the
// config: from says which) on a filesystem mounted noexec: an image
// unpacked there fails with "not executable" (126), and a user namespace
// cannot lift a noexec that the host locked. It probes dir, else its
// nearest existing parent, as the cache is made on first use.
func CheckCache(dir, from string, probe func(string) Dir) error {
	p := filepath.Clean(dir)
	d := probe(p)
	for !d.Exists && p != "/" {
		p = filepath.Dir(p)
		d = probe(p)
	}
	if d.NoExec {
		return fmt.Errorf("the cache %s (from %s) is on a filesystem mounted noexec, where no unpacked image can run; give --cache (or HPCRUN_CACHE) a node-local dir that allows exec", dir, from)
	}
	return nil
}

// CacheIn is the default cache in a scratch dir: hpcrun-UID. Under /tmp
// it shares that dir with the container state's default, hpcrun-UID/run.
func CacheIn(scratch string, uid int) string {
	return filepath.Join(scratch, "hpcrun-"+strconv.Itoa(uid))
}

// networkFS are the statfs magic numbers of filesystems shared between
// nodes.
var networkFS = map[int64]string{
	0x6969:     "nfs",
	0x0bd00bd0: "lustre",
	0x47504653: "gpfs",
	0x19830326: "beegfs",
	0xff534d42: "cifs",
	0xfe534d42: "smb2",
	0x517b:     "smb",
	0x00c36400: "ceph",
	0xaad7aaea: "panfs",
	0x5346414f: "afs",
	0x6b414653: "afs",
	0x01021997: "9p",
	0x20030528: "orangefs",
	0x65735546: "fuse",
	0x013111a8: "ibrix",
	0x73757245: "coda",
	0x564c:     "ncp",
	0x7461636f: "ocfs2",
	0x01161970: "gfs2",
}

// localFS names some node-local filesystems, for -v.
var localFS = map[int64]string{
	0xef53:     "ext4",
	0x58465342: "xfs",
	0x9123683e: "btrfs",
	0x01021994: "tmpfs",
	0x2fc12fc1: "zfs",
	0x794c7630: "overlayfs",
	0xf2f52010: "f2fs",
}

// ProbeDir looks at a directory on this node: whether it exists, whether
// the caller may create files in it, its filesystem and whether that is
// mounted noexec.
func ProbeDir(dir string) Dir {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Dir{}
	}
	d := Dir{
		Exists:   true,
		Writable: unix.Access(dir, unix.W_OK|unix.X_OK) == nil,
		Free:     st.Bavail * uint64(st.Bsize),
		NoExec:   st.Flags&unix.ST_NOEXEC != 0,
	}
	t := int64(uint32(st.Type))
	if name, ok := networkFS[t]; ok {
		d.FS = name
		return d
	}
	d.Local = true
	d.FS = localFS[t]
	if d.FS == "" {
		d.FS = fmt.Sprintf("filesystem 0x%x", t)
	}
	return d
}
