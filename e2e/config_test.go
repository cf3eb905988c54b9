package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// writeConfig writes a config file readable by the test user.
func writeConfigFile(t *testing.T, path, text string) string {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The layers under a real run: the site file binds and passes what it
// says, the user's file and HPCRUN_* override it, a flag overrides them
// all, and hpcrun config says where each value came from.
func TestConfigLayers(t *testing.T) {
	needUserns(t)
	dir := tempDirOwned(t)
	scratch := tempDirOwnedIn(t, outerDir) // a "scratch filesystem" outside /tmp
	os.WriteFile(filepath.Join(scratch, "on-scratch"), []byte("yes\n"), 0o644)
	siteData := tempDirOwnedIn(t, outerDir)
	os.WriteFile(filepath.Join(siteData, "site-file"), []byte("site\n"), 0o644)
	site := writeConfigFile(t, filepath.Join(dir, "etc", "config.yaml"), `# the site's
scratch_dirs: [`+scratch+`, /no/such/scratch]
binds:
  - `+siteData+`:/site:ro
  - {src: /no/such/optional/dir}
env:
  pass: [LIC_*]
  deny: [SECRET_TOKEN]
network: none
`)
	writeConfigFile(t, filepath.Join(dir, "etc", "conf.d", "50-net.yaml"), "network: host\n")
	xdg := filepath.Join(dir, "xdg")
	writeConfigFile(t, filepath.Join(xdg, "hpcrun", "config.yaml"), "network: none\n")
	env := []string{"HPCRUN_CONFIG=" + site, "XDG_CONFIG_HOME=" + xdg, "LIC_SERVER=lic1", "SECRET_TOKEN=s3cret", "OTHER=o"}

	script := `cat ` + scratch + `/on-scratch /site/site-file; echo "lic=$LIC_SERVER other=$OTHER secret=$SECRET_TOKEN";
		touch /site/x 2>/dev/null && echo site-writable; echo "net=$(readlink /proc/self/ns/net)"`
	r := mustRun(t, opts{env: env}, "--rootfs", rootfsDir, "--cleanenv", "sh", "-c", script)
	out := r.stdout
	for _, want := range []string{"yes\nsite\n", "lic=lic1 other= secret=\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in the job's output; got %q", want, out)
		}
	}
	if strings.Contains(out, "net="+hostNetNS) {
		t.Errorf("the host's network, not the user's network: none over conf.d's host")
	}
	if strings.Contains(out, "site-writable") {
		t.Errorf("the site's :ro bind is writable")
	}

	// HPCRUN_NETWORK over the files, --net over everything.
	hostNet := append(env[:len(env):len(env)], "HPCRUN_NETWORK=host")
	r = mustRun(t, opts{env: hostNet}, "--rootfs", rootfsDir, "readlink", "/proc/self/ns/net")
	if strings.TrimSpace(r.stdout) != hostNetNS {
		t.Errorf("HPCRUN_NETWORK=host: not the host's network")
	}
	r = mustRun(t, opts{env: hostNet}, "--rootfs", rootfsDir, "--net", "none", "readlink", "/proc/self/ns/net")
	if strings.TrimSpace(r.stdout) == hostNetNS {
		t.Errorf("--net none under HPCRUN_NETWORK=host: the host's network")
	}

	// -v says which dirs were skipped and where the network came from.
	r = mustRun(t, opts{env: env}, "-v", "--rootfs", rootfsDir, "true")
	for _, want := range []string{"scratch dir /no/such/scratch", "bind /no/such/optional/dir", "network: none (" + filepath.Join(xdg, "hpcrun", "config.yaml") + ":1)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("-v: want %q in:\n%s", want, r.stderr)
		}
	}

	// hpcrun config: every value with its source.
	r = mustRun(t, opts{env: append(env, "HPCRUN_CACHE="+dir+"/cache")}, "config")
	for _, want := range []string{
		"network: none", "# " + filepath.Join(xdg, "hpcrun", "config.yaml") + ":1",
		"cache: " + dir + "/cache", "# HPCRUN_CACHE",
		"# " + site + ":3", "  - {src: " + siteData + ", dst: /site, ro: true, required: false}",
		"# " + site + ":7", "  - LIC_*",
		"allow_system_binds: true", "# read: " + site + ", " + filepath.Join(dir, "etc", "conf.d", "50-net.yaml"),
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("hpcrun config: want %q in:\n%s", want, r.stdout)
		}
	}
}

// Each bad config, forbidden bind or unusable scratch dir: one line, exit
// 125, and nothing left behind.
func TestConfigErrors(t *testing.T) {
	needUserns(t)
	dir := tempDirOwned(t)
	bad := func(name, text string) []string {
		return []string{"HPCRUN_CONFIG=" + writeConfigFile(t, filepath.Join(dir, name, "config.yaml"), text)}
	}
	unwritable := filepath.Join(dir, "ro-scratch")
	os.Mkdir(unwritable, 0o755) // root's: the test user cannot write it
	image := busyboxImage(t)
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"unknown key", bad("a", "network: host\ncahce: /x\n"), []string{"--rootfs", rootfsDir, "true"}, filepath.Join(dir, "a", "config.yaml") + `:2: unknown key "cahce"`},
		{"type error", bad("b", "binds: /x\n"), []string{"--rootfs", rootfsDir, "true"}, filepath.Join(dir, "b", "config.yaml") + ":1: binds: want a list of binds"},
		{"syntax error", bad("c", "env:\n  pass: [A\n"), []string{"--rootfs", rootfsDir, "true"}, filepath.Join(dir, "c", "config.yaml") + ":2: "},
		{"bad conf.d file", append(bad("d", "network: host\n"), "X=1"), []string{"config"}, ""},
		{"user sets site policy", []string{"XDG_CONFIG_HOME=" + filepath.Dir(filepath.Dir(writeConfigFile(t, filepath.Join(dir, "u", "hpcrun", "config.yaml"), "allow_system_binds: true\n")))},
			[]string{"--rootfs", rootfsDir, "true"}, "allow_system_binds is the site's to set"},
		{"bad HPCRUN_ variable", []string{"HPCRUN_NETWORK=bridge"}, []string{"--rootfs", rootfsDir, "true"}, "HPCRUN_NETWORK=bridge: want host or none"},
		{"missing HPCRUN_CONFIG", []string{"HPCRUN_CONFIG=" + filepath.Join(dir, "nope.yaml")}, []string{"--rootfs", rootfsDir, "true"}, "nope.yaml"},
		{"forbidden bind", bad("e", "allow_system_binds: false\n"), []string{"--rootfs", rootfsDir, "--bind", "/usr/share:/mnt", "true"},
			"bind of /usr/share refused: the site config (" + filepath.Join(dir, "e", "config.yaml") + ":1) forbids binding the host's system dirs (/usr)"},
		{"forbidden bind from HPCRUN_BINDS", append(bad("f", "allow_system_binds: false\n"), "HPCRUN_BINDS=/etc"), []string{"--rootfs", rootfsDir, "true"},
			"HPCRUN_BINDS: bind of /etc refused"},
		{"missing required bind", bad("g", "binds:\n  - {src: /no/such/dir, required: true}\n"), []string{"--rootfs", rootfsDir, "true"},
			"the bind /no/such/dir required by " + filepath.Join(dir, "g", "config.yaml") + ":2 does not exist on this node"},
		{"unwritable scratch", bad("h", "scratch: "+unwritable+"\n"), []string{"--image", image, "true"},
			"the scratch dir " + unwritable + " (set in " + filepath.Join(dir, "h", "config.yaml") + ":1) is not writable"},
		{"missing scratch", []string{"HPCRUN_SCRATCH=" + filepath.Join(dir, "gone")}, []string{"images"}, "(set in HPCRUN_SCRATCH) does not exist"},
	}
	// A bad file in conf.d is found too.
	writeConfigFile(t, filepath.Join(dir, "d", "conf.d", "10-x.yaml"), "scratch_dirs: [relative]\n")
	cases[3].want = filepath.Join(dir, "d", "conf.d", "10-x.yaml") + `:1: scratch_dirs: want an absolute path, got "relative"`
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, opts{env: tc.env}, tc.args...)
			assertOneErrorLine(t, r)
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want %q in %q", tc.want, r.stderr)
			}
		})
	}
	// The site's own binds of system dirs still work under the policy.
	site := bad("i", "allow_system_binds: false\nbinds: [/usr/share:/host-share:ro]\n")
	mustRun(t, opts{env: site}, "--rootfs", rootfsDir, "test", "-d", "/host-share")
}

// A full scratch dir: the cold start fails with one line that names it,
// and leaves no partial unpack behind.
func TestScratchFull(t *testing.T) {
	needUserns(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := tempDirOwned(t)
	full := filepath.Join(dir, "full")
	os.Mkdir(full, 0o755)
	if err := syscall.Mount("tmpfs", full, "tmpfs", 0, "size=256k,mode=0755,uid="+strconv.Itoa(testUID)); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(full, syscall.MNT_DETACH) })
	image := busyboxImage(t)
	r := run(t, opts{env: []string{"HPCRUN_SCRATCH=" + full}}, "--image", image, "true")
	assertOneErrorLine(t, r)
	if !strings.Contains(r.stderr, "no space left") || !strings.Contains(r.stderr, full) {
		t.Errorf("want the full dir %s named: %q", full, r.stderr)
	}
	images, tmp := cacheEntries(t, filepath.Join(full, "hpcrun-"+strconv.Itoa(testUID)))
	if len(images)+len(tmp) != 0 {
		t.Errorf("left in the full cache: images %q, tmp %q", images, tmp)
	}
}

// The scheduler's variables pass with --cleanenv; -v says where each job
// fact came from; the job's node-local $TMPDIR is bound, but neither it
// nor a per-job PBS $TMPDIR moves the cache, which is the same for every
// process of the user on the node.
func TestSchedulerFacts(t *testing.T) {
	needUserns(t)
	tmp := tempDirOwnedIn(t, outerDir)
	slurm := []string{"SLURM_JOB_ID=313", "SLURM_STEP_ID=0", "SLURM_PROCID=1", "SLURM_LOCALID=1", "SLURM_NODEID=0",
		"SLURM_STEP_TASKS_PER_NODE=2", "SLURMD_NODENAME=n1", "PMIX_RANK=1", "OMPI_COMM_WORLD_SIZE=2", "PMI_FD=9",
		"SLURM_SUBMIT_DIR=" + workDir, "TMPDIR=" + tmp, "NOT_SCHEDULER=x"}
	// --no-join: the facts say a task of two on the node, whose partner
	// never comes (the group would wait join_timeout for it).
	r := mustRun(t, opts{env: slurm}, "-v", "--no-join", "--cleanenv", "--rootfs", rootfsDir, "sh", "-c", "env | sort; test -d $TMPDIR && echo tmpdir-visible")
	env := parseEnv(r.stdout)
	for _, kv := range slurm {
		k, v, _ := strings.Cut(kv, "=")
		if k == "NOT_SCHEDULER" || k == "TMPDIR" {
			continue
		}
		if env[k] != v {
			t.Errorf("%s = %q inside with --cleanenv, want %q", k, env[k], v)
		}
	}
	if _, ok := env["NOT_SCHEDULER"]; ok || !strings.Contains(r.stdout, "tmpdir-visible") {
		t.Errorf("--cleanenv passed NOT_SCHEDULER, or $TMPDIR %s is not visible:\n%s", tmp, r.stdout)
	}
	for _, want := range []string{"scheduler: slurm", "job job id: 313 (from SLURM_JOB_ID)", "job step: 0 (from SLURM_STEP_ID)",
		"job local rank: 1 (from SLURM_LOCALID)", "job local size: 2 (from SLURM_STEP_TASKS_PER_NODE, SLURM_NODEID)",
		"job tmp dir: " + tmp + " (from TMPDIR)", "job submit dir: " + workDir + " (from SLURM_SUBMIT_DIR)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("-v: want %q in:\n%s", want, r.stderr)
		}
	}

	// The cache does not go to $TMPDIR, which Slurm sets for some tasks
	// of a step only...
	r = mustRun(t, opts{env: slurm}, "config")
	if want := "cache: /var/tmp/hpcrun-" + strconv.Itoa(testUID); !strings.Contains(r.stdout, want) {
		t.Errorf("want %q in hpcrun config:\n%s", want, r.stdout)
	}
	// ...nor to PBS Pro's per-job one.
	pbsTmp := filepath.Join(tmp, "pbs.4242.server")
	os.Mkdir(pbsTmp, 0o755)
	os.Chown(pbsTmp, testUID, testGID)
	aux := tempDirOwnedIn(t, outerDir) // PBS's /var/spool/pbs/aux, not otherwise visible
	nodefile := filepath.Join(aux, "4242.server")
	os.WriteFile(nodefile, []byte("node7\nnode7\n"), 0o644)
	pbs := []string{"PBS_JOBID=4242.server", "PBS_ENVIRONMENT=PBS_BATCH", "PBS_O_WORKDIR=" + workDir, "TMPDIR=" + pbsTmp,
		"PBS_NODEFILE=" + nodefile}
	r = mustRun(t, opts{env: pbs}, "config")
	for _, want := range []string{"# scheduler: pbs (pbspro)", "cache: /var/tmp/hpcrun-", "the first usable of /var/tmp, /tmp"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("PBS: want %q in hpcrun config:\n%s", want, r.stdout)
		}
	}
	r = mustRun(t, opts{env: pbs}, "--cleanenv", "--rootfs", rootfsDir, "sh", "-c",
		"echo $PBS_JOBID; touch $TMPDIR/x && echo tmpdir-writable; cat $PBS_NODEFILE; echo >> $PBS_NODEFILE || echo nodefile-ro")
	if r.stdout != "4242.server\ntmpdir-writable\nnode7\nnode7\nnodefile-ro\n" {
		t.Errorf("PBS job inside: %q", r.stdout)
	}
}
