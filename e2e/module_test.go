package e2e

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// lmodProfile is what a login shell runs to get Debian's Lmod (package
// lmod): the module command, and MODULEPATH and MANPATH as Debian sets them.
const lmodProfile = "/etc/profile.d/lmod.sh"

// moduleScript runs in bash as the test user: $1 is a MODULEPATH dir, $2
// the rootfs, $3 "unset" to load with MANPATH unset (Debian's profile sets
// it). It prints KEY=VALUE lines for the test to check.
const moduleScript = `
. ` + lmodProfile + `
[ "$3" = unset ] && unset MANPATH
echo "before=$(command -v hpcrun || echo none)"
module use "$1" || exit 101
module load hpcrun || exit 102
echo "path=$(command -v hpcrun)"
echo "version=$(hpcrun --version)"
echo "manpath=$MANPATH"
echo "manpage=$(man -w hpcrun-images 2>&1)"
echo "manls=$(man -w ls 2>&1)"
echo "loaded=$(module -t list 2>&1 | tr '\n' ' ')"
echo "whatis=$(module whatis hpcrun 2>&1 | tr '\n' ' ')"
echo "help=$(module help hpcrun 2>&1 | tr '\n' ' ')"
hpcrun --rootfs "$2" true
echo "container=$?"
module unload hpcrun || exit 103
echo "after=$(command -v hpcrun || echo none)"
echo "manpath_after=${MANPATH-UNSET}"
`

// make install-files puts the built binary, the man pages, the completion
// scripts, the example config and both modulefiles under a PREFIX; the test
// user loads each modulefile with Debian's Lmod, which reads Tcl modulefiles
// too, runs a container with the hpcrun it put on PATH, and unloads it; make
// uninstall leaves the prefix empty. A DESTDIR install writes PREFIX's
// paths, not DESTDIR's, into the modulefiles.
func TestModuleLoad(t *testing.T) {
	t.Parallel()
	needUserns(t)
	needTool(t, lmodProfile, "lmod")
	needTool(t, "/usr/bin/man", "man-db")
	version := builtVersion(t)
	gen := genDocs(t)

	// Installed by us (root, when we are), loaded by the test user.
	scratch, err := os.MkdirTemp(baseDir, "module-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	if err := os.Chmod(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(scratch, "prefix")
	makeRun(t, "install-files", "PREFIX="+prefix, "BIN="+binPath, "GEN="+gen, "VERSION="+version)

	lua := filepath.Join("share/lmod/modulefiles/hpcrun", version+".lua")
	tcl := filepath.Join("share/modulefiles/hpcrun", version)
	if got, want := filesUnder(t, prefix), installedFiles(t, version); !slices.Equal(got, want) {
		t.Fatalf("make install-files PREFIX=%s wrote %q, want %q", prefix, got, want)
	}
	for _, f := range []string{lua, tcl} {
		b, err := os.ReadFile(filepath.Join(prefix, f))
		if err != nil {
			t.Fatal(err)
		}
		if s := string(b); strings.Contains(s, "@") || !strings.Contains(s, prefix+"/bin") ||
			!strings.Contains(s, prefix+"/share/man") {
			t.Errorf("%s: want %s/bin and %s/share/man and no @PLACEHOLDER@ left:\n%s", f, prefix, prefix, s)
		}
	}

	for _, tree := range []string{"share/lmod/modulefiles", "share/modulefiles"} {
		for _, manpath := range []string{"set", "unset"} {
			t.Run(strings.ReplaceAll(tree, "/", "_")+"/MANPATH_"+manpath, func(t *testing.T) {
				checkModuleLoad(t, filepath.Join(prefix, tree), prefix, version, manpath)
			})
		}
	}

	makeRun(t, "uninstall", "PREFIX="+prefix, "VERSION="+version)
	if got := filesUnder(t, prefix); len(got) != 0 {
		t.Errorf("make uninstall left %q in %s", got, prefix)
	}
	if ents, err := os.ReadDir(prefix); err != nil || len(ents) != 0 {
		t.Errorf("make uninstall: want %s empty, got %v, %v", prefix, ents, err)
	}

	// Staged: DESTDIR is where the files go, PREFIX what is in them.
	stage := filepath.Join(scratch, "stage")
	const final = "/opt/hpcrun-e2e"
	makeRun(t, "install-files", "DESTDIR="+stage, "PREFIX="+final, "BIN="+binPath, "GEN="+gen, "MODVERSION=1.0")
	staged := filepath.Join(stage, final)
	if got, want := filesUnder(t, staged), installedFiles(t, "1.0"); !slices.Equal(got, want) {
		t.Fatalf("make install-files DESTDIR=%s PREFIX=%s wrote %q, want %q", stage, final, got, want)
	}
	for _, f := range []string{"share/lmod/modulefiles/hpcrun/1.0.lua", "share/modulefiles/hpcrun/1.0"} {
		b, err := os.ReadFile(filepath.Join(staged, f))
		if err != nil {
			t.Fatal(err)
		}
		if s := string(b); strings.Contains(s, stage) || !strings.Contains(s, final+"/bin") {
			t.Errorf("%s: want %s/bin in it and not DESTDIR (%s):\n%s", f, final, stage, s)
		}
	}
	makeRun(t, "uninstall", "DESTDIR="+stage, "PREFIX="+final, "MODVERSION=1.0")
	if ents, err := os.ReadDir(staged); err != nil || len(ents) != 0 {
		t.Errorf("make uninstall DESTDIR=%s: want %s empty, got %v, %v", stage, staged, ents, err)
	}
}

// checkModuleLoad has the test user load hpcrun from the modulefile tree
// modulepath with Lmod, and checks that it puts prefix's hpcrun on PATH and
// its man pages on MANPATH, keeping the system's ("set": MANPATH as Debian's
// profile sets it; "unset": no MANPATH), runs a container, and takes both
// away again.
func checkModuleLoad(t *testing.T, modulepath, prefix, version, manpath string) {
	t.Helper()
	o := opts{dir: tempDirOwned(t), env: []string{"HOME=" + tempDirOwned(t)}, timeout: time.Minute}
	r := runRaw(o, "bash", "--noprofile", "--norc", "-c", moduleScript, "bash", modulepath, rootfsDir, manpath)
	if r.err != nil || r.code != 0 {
		t.Fatalf("module load hpcrun from %s: %s", modulepath, r)
	}
	kv := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = v
		}
	}
	check := func(key string, ok bool, want string) {
		t.Helper()
		if !ok {
			t.Errorf("%s = %q, want %s\n%s", key, kv[key], want, r)
		}
	}
	check("before", kv["before"] == "none", "no hpcrun on PATH before the load")
	check("path", kv["path"] == filepath.Join(prefix, "bin/hpcrun"), "the installed hpcrun")
	check("version", kv["version"] == "hpcrun "+version, "hpcrun "+version)
	check("manpath", strings.Split(kv["manpath"], ":")[0] == filepath.Join(prefix, "share/man"),
		"PREFIX/share/man first")
	check("manpage", kv["manpage"] == filepath.Join(prefix, "share/man/man1/hpcrun-images.1"),
		"man finds the installed hpcrun-images(1)")
	check("manls", strings.HasPrefix(kv["manls"], "/usr/share/man/"), "man still finds the system's ls(1)")
	if manpath == "unset" {
		check("manpath", kv["manpath"] == filepath.Join(prefix, "share/man")+":",
			"PREFIX/share/man: (a trailing colon for the system's path)")
	}
	check("loaded", strings.Contains(kv["loaded"], "hpcrun/"+version), "hpcrun/"+version+" loaded")
	check("whatis", strings.Contains(kv["whatis"], "Usage: ") &&
		strings.Contains(kv["whatis"], "/etc/hpcrun/config.yaml"), "a usage line and the site config")
	check("help", strings.Contains(kv["help"], "Usage:") &&
		strings.Contains(kv["help"], "/etc/hpcrun/config.yaml") && strings.Contains(kv["help"], prefix),
		"usage, the site config and the prefix")
	check("container", kv["container"] == "0", "0 from hpcrun --rootfs R true")
	check("after", kv["after"] == "none", "no hpcrun on PATH after the unload")
	check("manpath_after", !strings.Contains(kv["manpath_after"], prefix), "PREFIX gone from MANPATH")
	if manpath == "unset" {
		check("manpath_after", kv["manpath_after"] == "UNSET", "MANPATH unset again")
	}
}

// makeRun runs make in the repository with our own credentials.
func makeRun(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-s"}, args...)...)
	cmd.Dir = repoPath(".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// filesUnder lists the non-directories under root, relative to it, sorted.
func filesUnder(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	sort.Strings(files)
	return files
}
