package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// needTool fails the test when path is missing and we are root (CI, where
// scripts/test-deps.sh installs pkg), else skips it.
func needTool(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if requireUserns || os.Geteuid() == 0 {
			t.Fatalf("%s is missing (%v): scripts/test-deps.sh installs Debian's %s", path, err, pkg)
		}
		t.Skipf("%s is missing (%v); sudo apt-get install %s", path, err, pkg)
	}
}

// builtVersion is the version that make build stamped into binPath.
func builtVersion(t *testing.T) string {
	t.Helper()
	r := runRaw(opts{}, binPath, "--version")
	version, ok := strings.CutPrefix(strings.TrimSpace(r.stdout), "hpcrun ")
	if r.code != 0 || !ok || version == "" {
		t.Fatalf("hpcrun --version: %s", r)
	}
	return version
}

var (
	genOnce sync.Once
	genDir  string
	genErr  string
)

// genDocs runs make docs once for the tests that install, and returns the
// directory of the man pages and completion scripts (make's GEN).
func genDocs(t *testing.T) string {
	t.Helper()
	version := builtVersion(t)
	genOnce.Do(func() {
		dir := filepath.Join(baseDir, "gen")
		cmd := exec.Command("make", "-s", "docs", "GEN="+filepath.Join(dir, "share"),
			"GENDOCS="+filepath.Join(dir, "hpcrun-gendocs"), "VERSION="+version)
		cmd.Dir = repoPath(".")
		if out, err := cmd.CombinedOutput(); err != nil {
			genErr = "make docs: " + err.Error() + "\n" + string(out)
			return
		}
		// The test user reads them from here, as from an install.
		if err := exec.Command("chmod", "-R", "a+rX", dir).Run(); err != nil {
			genErr = "chmod: " + err.Error()
			return
		}
		genDir = filepath.Join(dir, "share")
	})
	if genErr != "" {
		t.Fatal(genErr)
	}
	return genDir
}

// manPages are the pages that make docs must write: hpcrun.1, and one for
// every command that --help lists but help, at every level
// (hpcrun-images.1, hpcrun-completion-bash.1, ...).
func manPages(t *testing.T) []string {
	t.Helper()
	var pages []string
	var walk func(path []string)
	walk = func(path []string) {
		pages = append(pages, strings.Join(append([]string{"hpcrun"}, path...), "-")+".1")
		r := runRaw(opts{}, binPath, append(slices.Clone(path), "--help")...)
		if r.code != 0 {
			t.Fatalf("hpcrun --help: %s", r)
		}
		_, list, ok := strings.Cut(r.stdout, "\nAvailable Commands:\n")
		if !ok {
			return
		}
		list, _, _ = strings.Cut(list, "\n\n")
		for _, l := range strings.Split(list, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] != "help" {
				walk(append(slices.Clone(path), f[0]))
			}
		}
	}
	walk(nil)
	if len(pages) < 10 {
		t.Fatalf("--help lists too few commands: %q", pages)
	}
	return pages
}

// installedFiles is what make install writes under PREFIX, with MODVERSION
// modversion and the defaults for the other dirs, sorted.
func installedFiles(t *testing.T, modversion string) []string {
	t.Helper()
	files := []string{
		"bin/hpcrun",
		"share/bash-completion/completions/hpcrun",
		"share/doc/hpcrun/config.yaml.example",
		"share/fish/vendor_completions.d/hpcrun.fish",
		"share/lmod/modulefiles/hpcrun/" + modversion + ".lua",
		"share/modulefiles/hpcrun/" + modversion,
		"share/zsh/site-functions/_hpcrun",
	}
	for _, p := range manPages(t) {
		files = append(files, "share/man/man1/"+p)
	}
	slices.Sort(files)
	return files
}

// make install-files DESTDIR=D PREFIX=/opt/hpcrun writes, under D, the
// binary, a man page for every command that --help lists, the completion
// scripts where bash-completion, zsh and fish look under a prefix, the
// modulefiles and the example config, and nothing else; the pages render
// without a warning, the scripts parse and complete hpcrun's commands from
// where they are; make uninstall removes every file.
func TestInstall(t *testing.T) {
	t.Parallel()
	needTool(t, "/usr/bin/man", "man-db")
	gen := genDocs(t)
	stage, err := os.MkdirTemp(baseDir, "install-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stage) })
	if err := os.Chmod(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	const prefix = "/opt/hpcrun"
	root := filepath.Join(stage, prefix)
	share := filepath.Join(root, "share")
	makeRun(t, "install-files", "DESTDIR="+stage, "PREFIX="+prefix, "BIN="+binPath, "GEN="+gen, "MODVERSION=1.0")
	if got, want := filesUnder(t, root), installedFiles(t, "1.0"); !slices.Equal(got, want) {
		t.Fatalf("make install-files DESTDIR=%s PREFIX=%s wrote %q, want %q", stage, prefix, got, want)
	}

	t.Run("man", func(t *testing.T) {
		for _, p := range manPages(t) {
			r := runRaw(opts{env: []string{"MANWIDTH=80", "LC_ALL=C.UTF-8"}}, "man", "--warnings", "-l",
				filepath.Join(share, "man/man1", p))
			if r.err != nil || r.code != 0 || r.stderr != "" {
				t.Errorf("man -l %s: %s", p, r)
				continue
			}
			want := []string{"NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "EXAMPLE"}
			if p == "hpcrun.1" {
				want = append(want, "ENVIRONMENT", "FILES")
			}
			for _, want := range want {
				if !strings.Contains(r.stdout, "\n"+want+"\n") {
					t.Errorf("%s has no %s section:\n%s", p, want, r.stdout)
				}
			}
			if strings.Contains(strings.ToLower(r.stdout), "powershell") {
				t.Errorf("%s speaks of powershell", p)
			}
		}
		// OPTIONS name each flag's argument, as --help does.
		r := runRaw(opts{env: []string{"MANWIDTH=200", "LC_ALL=C"}}, "man", "-l", filepath.Join(share, "man/man1/hpcrun.1"))
		for _, want := range []string{"--image REF", "--bind SRC[:DST[:ro]]", "HPCRUN_CACHE", "/etc/hpcrun/conf.d/*.yaml", "/var/tmp/hpcrun-$UID"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("hpcrun.1 has no %q:\n%s", want, r.stdout)
			}
		}
		if _, err := os.Stat(filepath.Join(share, "man/man1/hpcrun-completion-powershell.1")); err == nil {
			t.Error("make docs wrote a powershell page")
		}
	})
	example, err := os.ReadFile(repoPath("examples/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(share, "doc/hpcrun/config.yaml.example")); err != nil || string(b) != string(example) {
		t.Errorf("config.yaml.example is not examples/config.yaml: %v", err)
	}

	// Each shell finds the script where make install put it, and asks the
	// installed hpcrun what may follow "hpcrun im": images.
	path := "PATH=" + filepath.Join(root, "bin") + ":/usr/bin:/bin"
	complete := func(t *testing.T, shell string, args ...string) {
		t.Helper()
		o := opts{env: []string{path, "XDG_DATA_DIRS=" + share, "HOME=" + tempDirOwned(t)}}
		r := runRaw(o, shell, args...)
		if r.err != nil || r.code != 0 || !strings.Contains(r.stdout, "images") || strings.Contains(r.stdout, "create") {
			t.Errorf("completion of \"hpcrun im\" in %s: want images alone: %s", shell, r)
		}
	}
	t.Run("bash", func(t *testing.T) {
		const bashCompletion = "/usr/share/bash-completion/bash_completion"
		needTool(t, bashCompletion, "bash-completion")
		script := filepath.Join(share, "bash-completion/completions/hpcrun")
		if r := runRaw(opts{}, "bash", "-n", script); r.code != 0 {
			t.Fatalf("bash -n: %s", r)
		}
		complete(t, "bash", "--noprofile", "--norc", "-c", `. `+bashCompletion+`
__load_completion hpcrun || exit 1
COMP_WORDS=(hpcrun im) COMP_CWORD=1 COMP_LINE="hpcrun im" COMP_POINT=9
__start_hpcrun hpcrun im hpcrun 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"`)
	})
	t.Run("zsh", func(t *testing.T) {
		needTool(t, "/usr/bin/zsh", "zsh")
		dir := filepath.Join(share, "zsh/site-functions")
		if r := runRaw(opts{}, "zsh", "-n", filepath.Join(dir, "_hpcrun")); r.code != 0 {
			t.Fatalf("zsh -n: %s", r)
		}
		// compinit finds the #compdef line in the dir on fpath.
		r := runRaw(opts{env: []string{"HOME=" + tempDirOwned(t)}}, "zsh", "-fc",
			`fpath=($1 $fpath); autoload -Uz compinit; compinit -u -D; print -r -- ${_comps[hpcrun]}`, "zsh", dir)
		if r.code != 0 || strings.TrimSpace(r.stdout) != "_hpcrun" {
			t.Errorf("zsh's compinit does not take _hpcrun for hpcrun: %s", r)
		}
	})
	t.Run("fish", func(t *testing.T) {
		needTool(t, "/usr/bin/fish", "fish")
		if r := runRaw(opts{}, "fish", "-n", filepath.Join(share, "fish/vendor_completions.d/hpcrun.fish")); r.code != 0 {
			t.Fatalf("fish -n: %s", r)
		}
		complete(t, "fish", "-c", `complete -C "hpcrun im"`)
	})

	makeRun(t, "uninstall", "DESTDIR="+stage, "PREFIX="+prefix, "MODVERSION=1.0")
	if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
		t.Errorf("make uninstall: want %s empty, got %v, %v", root, ents, err)
	}
}

// make dist builds a tarball that works wherever it is unpacked: its
// hpcrun runs, and its modulefiles, loaded from the tarball's own trees,
// through symlinks from a site's module tree, or after the whole tree has
// moved, put that hpcrun and its man pages on the test user's paths.
func TestDist(t *testing.T) {
	t.Parallel()
	needUserns(t)
	needTool(t, lmodProfile, "lmod")
	needTool(t, "/usr/bin/man", "man-db")
	scratch, err := os.MkdirTemp(baseDir, "dist-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(scratch) })
	if err := os.Chmod(scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	const version = "9.8.7-e2e"
	out := filepath.Join(scratch, "out")
	os.Mkdir(filepath.Join(scratch, "bin"), 0o755)
	makeRun(t, "dist", "VERSION="+version, "DISTDIR="+out, "BIN="+filepath.Join(scratch, "bin/hpcrun"),
		"GEN="+filepath.Join(scratch, "gen"), "GENDOCS="+filepath.Join(scratch, "hpcrun-gendocs"))
	arch, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	name := "hpcrun-" + version + "-linux-" + strings.TrimSpace(string(arch))
	if got := filesUnder(t, out); !slices.Equal(got, []string{name + ".tar.gz"}) {
		t.Fatalf("make dist left %q in DISTDIR, want only %s.tar.gz", got, name)
	}

	unpacked := filepath.Join(scratch, "unpacked")
	os.Mkdir(unpacked, 0o755)
	if b, err := exec.Command("tar", "-xzf", filepath.Join(out, name+".tar.gz"), "-C", unpacked).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, b)
	}
	top := filepath.Join(unpacked, name)
	want := append(installedFiles(t, version), "README.md", "docs/admin-guide.md", "docs/oci-conformance.md", "docs/switching.md", "docs/user-guide.md")
	slices.Sort(want)
	if got := filesUnder(t, top); !slices.Equal(got, want) {
		t.Fatalf("the tarball holds %q, want %q", got, want)
	}
	if r := runRaw(opts{}, filepath.Join(top, "bin/hpcrun"), "--version"); r.code != 0 || r.stdout != "hpcrun "+version+"\n" {
		t.Fatalf("bin/hpcrun --version from the tarball: %s", r)
	}

	for _, tree := range []string{"share/lmod/modulefiles", "share/modulefiles"} {
		checkModuleLoad(t, filepath.Join(top, tree), top, version, "set")
	}
	// A site's module tree that links to the tarball's modulefiles: the
	// Lua one linked as a file, the Tcl one's dir linked, relatively.
	site := filepath.Join(scratch, "site")
	os.MkdirAll(filepath.Join(site, "lmod/hpcrun"), 0o755)
	os.MkdirAll(filepath.Join(site, "tcl"), 0o755)
	if err := os.Symlink(filepath.Join(top, "share/lmod/modulefiles/hpcrun", version+".lua"),
		filepath.Join(site, "lmod/hpcrun", version+".lua")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("../../unpacked", name, "share/modulefiles/hpcrun"), filepath.Join(site, "tcl/hpcrun")); err != nil {
		t.Fatal(err)
	}
	for _, tree := range []string{"lmod", "tcl"} {
		checkModuleLoad(t, filepath.Join(site, tree), top, version, "set")
	}
	// Moved whole, it still works from where it is now.
	moved := filepath.Join(scratch, "moved")
	if err := os.Rename(top, moved); err != nil {
		t.Fatal(err)
	}
	for _, tree := range []string{"share/lmod/modulefiles", "share/modulefiles"} {
		checkModuleLoad(t, filepath.Join(moved, tree), moved, version, "set")
	}
}
