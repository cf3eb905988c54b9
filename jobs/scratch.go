package jobs

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultScratch is the scratch dir when neither the config nor the job's
// environment gives a node-local one.
const DefaultScratch = "/var/tmp"

// Dir is what ChooseScratch needs to know about a directory.
type Dir struct {
	Exists, Writable bool
	Free             uint64 // bytes available to the caller
	FS               string // the filesystem's name: ext4, tmpfs, nfs, lustre, ...
	Local            bool   // the filesystem is on this node, not shared over the network
}

// Scratch is the node-local dir that holds hpcrun's cache, and why it was
// chosen.
type Scratch struct {
	Dir  string
	From string   // where the choice came from: a config file:line, HPCRUN_SCRATCH, $TMPDIR, default
	Why  []string // the candidates passed over, for -v
}

// ChooseScratch picks the node-local scratch dir: the configured one (the
// site's, the user's or HPCRUN_SCRATCH), else the job's $SLURM_TMPDIR or
// $TMPDIR when it is node-local, writable and outlives the job, else
// /var/tmp. A per-job dir (its path holds the job id) is passed over: it
// is removed when the job ends, and the next job would unpack again.
// A configured dir must be usable: an error says why it is not.
func ChooseScratch(c Config, j Job, probe func(string) Dir) (Scratch, error) {
	if c.Scratch.Value != "" {
		d := probe(c.Scratch.Value)
		switch {
		case !d.Exists:
			return Scratch{}, fmt.Errorf("the scratch dir %s (set in %s) does not exist on this node; create it, or set HPCRUN_CACHE to a node-local dir", c.Scratch.Value, c.Scratch.From)
		case !d.Writable:
			return Scratch{}, fmt.Errorf("the scratch dir %s (set in %s) is not writable; fix its permissions, or set HPCRUN_CACHE to a node-local dir you can write", c.Scratch.Value, c.Scratch.From)
		}
		return Scratch{Dir: c.Scratch.Value, From: c.Scratch.From}, nil
	}
	var why []string
	if t := j.TmpDir; t != "" {
		from := "$" + j.sourceOf("tmp dir")
		d := probe(t)
		switch {
		case !filepath.IsAbs(t):
			why = append(why, fmt.Sprintf("%s=%s is not an absolute path", from, t))
		case !d.Exists || !d.Writable:
			why = append(why, fmt.Sprintf("%s=%s is missing or not writable", from, t))
		case d.Free == 0:
			why = append(why, fmt.Sprintf("%s=%s is full", from, t))
		case !d.Local:
			why = append(why, fmt.Sprintf("%s=%s is on %s, not node-local", from, t, d.FS))
		case j.ID != "" && perJob(t, j.ID):
			why = append(why, fmt.Sprintf("%s=%s is the job's own, removed when it ends", from, t))
		default:
			return Scratch{Dir: filepath.Clean(t), From: from + " (node-local " + d.FS + ")"}, nil
		}
	}
	return Scratch{Dir: DefaultScratch, From: "default", Why: why}, nil
}

// sourceOf is the variable that gave a fact.
func (j Job) sourceOf(fact string) string {
	for _, s := range j.Sources {
		if s.Fact == fact {
			return s.From
		}
	}
	return "TMPDIR"
}

// perJob reports whether dir is named after the job: /tmp/slurm-313,
// /var/tmp/pbs.1234.server, /scratch/1234[5].server.
func perJob(dir, id string) bool {
	num := id
	if i := strings.IndexAny(num, ".["); i > 0 {
		num = num[:i]
	}
	for _, part := range strings.Split(filepath.Clean(dir), "/") {
		if id != num && strings.Contains(part, id) {
			return true
		}
		// The number alone, not as part of a longer one.
		for i := strings.Index(part, num); i >= 0; {
			end := i + len(num)
			if (i == 0 || !isDigit(part[i-1])) && (end == len(part) || !isDigit(part[end])) {
				return true
			}
			next := strings.Index(part[i+1:], num)
			if next < 0 {
				break
			}
			i += 1 + next
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

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
// the caller may create files in it, and its filesystem.
func ProbeDir(dir string) Dir {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Dir{}
	}
	d := Dir{Exists: true, Writable: unix.Access(dir, unix.W_OK|unix.X_OK) == nil, Free: st.Bavail * uint64(st.Bsize)}
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
