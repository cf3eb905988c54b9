package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/cmd/hpcrun/internal/first"
	"github.com/hpcrun/hpcrun/runtime"
)

func TestIsRunForm(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"spec", "--rootfs", "r"}, false},
		{[]string{"help"}, false},
		{[]string{"--help"}, false},
		{[]string{"--version"}, false},
		{[]string{"--rootfs", "r"}, false},
		{[]string{"python3", "x.py"}, true},
		{[]string{"--rootfs", "r", "python", "-u", "x.py", "--flag"}, true},
		{[]string{"--rootfs", "r", "spec"}, true},
		{[]string{"--rootfs=r", "-v", "help"}, true},
		{[]string{"--rootfs", "r", "--bind", "/a:/b", "--", "spec"}, true},
		{[]string{"--no-such-flag", "x"}, false},
		{[]string{"__complete", ""}, false},
		{[]string{"__complete", "--rootfs", "r", "sp"}, false},
		{[]string{"__completeNoDesc", "images", "--"}, false},
	}
	for _, tc := range tests {
		if got := isRunForm(tc.args); got != tc.want {
			t.Errorf("isRunForm(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	os.Mkdir(rootfs, 0o755)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"--rootfs", rootfs}, "no command given, and the image names none"},
		{"no image", []string{"true"}, "give --image REF or --rootfs DIR"},
		{"image and rootfs", []string{"--image", "x", "--rootfs", rootfs, "true"}, "cannot be used together"},
		{"missing image", []string{"--image", dir + "/nope.tar", "true"}, "nope.tar"},
		{"bad platform", []string{"--image", rootfs, "--platform", "a/b/c/d", "true"}, "platform"},
		{"missing rootfs", []string{"--rootfs", dir + "/nope", "true"}, "does not exist"},
		{"rootfs is a file", []string{"--rootfs", file, "true"}, "not a directory"},
		{"missing bind source", []string{"--rootfs", rootfs, "--bind", dir + "/nope:/x", "true"}, "bind source"},
		{"bad bind", []string{"--rootfs", rootfs, "--bind", "/a:/b:c:d", "true"}, `--bind: bad bind "/a:/b:c:d": too many`},
		{"relative bind dest", []string{"--rootfs", rootfs, "--bind", "/tmp:rel", "true"}, "absolute"},
		{"bad net", []string{"--rootfs", rootfs, "--net", "bridge", "true"}, `--net: unknown network mode "bridge"`},
		{"relative pwd", []string{"--rootfs", rootfs, "--pwd", "x", "true"}, "bad --pwd"},
		{"bad env", []string{"--rootfs", rootfs, "--env", "=x", "true"}, `--env: bad variable "=x": want NAME=VALUE`},
		{"missing env file", []string{"--rootfs", rootfs, "--env-file", dir + "/nope", "true"}, "--env-file"},
		{"-q and -v", []string{"-q", "-v", "--rootfs", rootfs, "true"}, "-v and -q cannot be used together"},
		{"-q and -v for spec", []string{"spec", "-q", "-v", "--rootfs", rootfs}, "-v and -q cannot be used together"},
		{"unknown flag", []string{"--frobnicate", "--rootfs", rootfs, "true"}, "unknown flag"},
		{"spec with --writable-tmpfs", []string{"spec", "--writable-tmpfs", "--rootfs", rootfs}, "--writable-tmpfs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := execute(tc.args, &stderr, nil)
			out := stderr.String()
			if code != 125 {
				t.Errorf("exit %d, want 125", code)
			}
			if !strings.HasPrefix(out, "hpcrun: ") || strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("stderr = %q, want one line with %q", out, tc.want)
			}
		})
	}
}

func TestNotJobsListsEverySubcommand(t *testing.T) {
	root := newRootCommand(nil)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if !first.IsSubcommandOrHelp(c.Name()) {
			t.Errorf("subcommand %q is missing from notJobs: hpcrun would clone an init for it", c.Name())
		}
	}
	// And the other way: classify takes a listed word for a subcommand,
	// so `hpcrun WORD` of a stale entry would be an unknown command.
	for _, w := range first.Words() {
		if strings.HasPrefix(w, "-") || strings.HasPrefix(w, "__") {
			continue // flags, and cobra's and gendocs' hidden commands
		}
		if c, _, err := root.Find([]string{w}); err != nil || c == root {
			t.Errorf("notJobs lists %q, which is no subcommand", w)
		}
	}
	for _, args := range [][]string{{"spec"}, {"help"}, {"--help"}, {"--version"}, nil} {
		if first.MayRunJob(args) {
			t.Errorf("MayRunJob(%q) = true", args)
		}
	}
	if !first.MayRunJob([]string{"--rootfs", "r", "true"}) || !first.MayRunJob([]string{"python3"}) ||
		!first.MayRunJob([]string{"-v", "--rootfs", "r", "true"}) {
		t.Error("MayRunJob misses a job")
	}
	for _, args := range [][]string{
		{"--root", "/r", "run", "--bundle", "b", "id"}, {"--root=/r", "state", "id"}, {"--log", "l", "--debug", "kill", "id"},
		{"-q", "exec", "id", "true"}, {"--root", "/r"},
	} {
		if first.MayRunJob(args) {
			t.Errorf("MayRunJob(%q) = true: a verb after global flags", args)
		}
	}
}

// hpcrun starts twice per job (the command and the container's init), and
// every package it links adds its initialisation to both: the unpacker's
// dependencies belong to cmd/hpcrun-unpack only.
func TestLeanDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, heavy := range []string{
			"github.com/opencontainers/umoci", "github.com/opencontainers/image-spec", "github.com/opencontainers/go-digest",
			"github.com/klauspost/", "google.golang.org/protobuf", "github.com/sirupsen/logrus", "github.com/apex/log",
			"github.com/hpcrun/hpcrun/unpack/cache", "github.com/hpcrun/hpcrun/unpack/source", "github.com/hpcrun/hpcrun/unpack/inspect",
			"github.com/apptainer/sif", "github.com/diskfs/",
		} {
			if strings.HasPrefix(pkg, heavy) {
				t.Errorf("hpcrun links %s; keep it in cmd/hpcrun-unpack", pkg)
			}
		}
	}
}

// Go initializes packages in dependency order and, among the ready ones,
// by import path; a dependency added to package runtime or to package
// early can move a heavy package ahead of them, and every job start pays
// for it twice. The order is fixed when the binary is linked, and Go's
// trace of package initialization (GODEBUG=inittrace=1) shows it: nothing
// of the command line's (cobra, pflag, yaml, regexp, text/template, net)
// comes before package early, which clones the init, nor before package
// stage, from which the re-executed init starts.
func TestInitOrder(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hpcrun")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--help")
	cmd.Env = []string{"GODEBUG=inittrace=1", "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hpcrun --help: %v\n%s", err, out)
	}
	var order []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "init" {
			order = append(order, strings.ReplaceAll(f[1], "%2e", "."))
		}
	}
	// Package first, which clones a job's init, comes before the
	// standard library beyond the runtime's own packages.
	i := slices.Index(order, "github.com/hpcrun/hpcrun/cmd/hpcrun/internal/first")
	if i < 0 {
		t.Fatalf("no init of package first in the trace:\n%s", out)
	}
	for _, p := range order[:i] {
		if p != "runtime" && !strings.HasPrefix(p, "internal/") && !strings.HasPrefix(p, "runtime/") &&
			p != "math" && p != "crypto/internal/fips140deps/cpu" && p != "github.com/hpcrun/hpcrun/runtime/initclone/rawclone" {
			t.Errorf("%s is initialized before package first", p)
		}
	}
	// rawclone reads the open files limit before package syscall raises it.
	if r, s := slices.Index(order, "github.com/hpcrun/hpcrun/runtime/initclone/rawclone"), slices.Index(order, "syscall"); r < 0 || s < r {
		t.Errorf("rawclone is initialized at %d, package syscall at %d: rawclone must come first", r, s)
	}
	heavy := []string{"github.com/spf13/cobra", "github.com/spf13/pflag", "gopkg.in/yaml.v3", "regexp", "text/template", "net",
		"github.com/hpcrun/hpcrun/jobs", "github.com/hpcrun/hpcrun/launch", "github.com/hpcrun/hpcrun/gpu"}
	for _, until := range []string{"github.com/hpcrun/hpcrun/cmd/hpcrun/internal/early", "github.com/hpcrun/hpcrun/cmd/hpcrun/internal/stage"} {
		i := slices.Index(order, until)
		if i < 0 {
			t.Fatalf("no init of %s in the trace:\n%s", until, out)
		}
		for _, p := range order[:i] {
			for _, h := range heavy {
				if p == h || strings.HasPrefix(p, h+"/") {
					t.Errorf("%s is initialized before %s", p, until)
				}
			}
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]unix.Signal{"TERM": unix.SIGTERM, "SIGTERM": unix.SIGTERM, "usr1": unix.SIGUSR1, "9": unix.SIGKILL} {
		got, err := runtime.ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("runtime.ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "NOPE", "SIG"} {
		if _, err := runtime.ParseSignal(bad); err == nil {
			t.Errorf("runtime.ParseSignal(%q) succeeded", bad)
		}
	}
}

func TestIsRunFormWithGlobalFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--root", "/x", "create", "--bundle", "b", "id"}, false},
		{[]string{"--root", "/x", "state", "id"}, false},
		{[]string{"--rootfs", "r", "create"}, true},
		{[]string{"--image", "i.tar", "state"}, true},
		{[]string{"python3", "x.py"}, true},
		{[]string{"-v", "--rootfs", "r", "true"}, true},
	} {
		if got := isRunForm(tc.args); got != tc.want {
			t.Errorf("isRunForm(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// TestScanFlagsAgreesWithPflag checks scanFlags, which reads flags from
// their definitions alone, against a real parse of the same words by a
// copy of the run command's flag set, on hand-picked and generated
// command lines.
func TestScanFlagsAgreesWithPflag(t *testing.T) {
	run, _, _ := newRunCommand(nil)
	parse := func(args []string) (map[string]bool, []string, bool) {
		probe, _, _ := newRunCommand(nil)
		fs := pflag.NewFlagSet("probe", pflag.ContinueOnError)
		fs.AddFlagSet(probe.Flags())
		fs.AddFlagSet(probe.PersistentFlags())
		fs.SetInterspersed(false)
		fs.SetOutput(io.Discard)
		fs.Usage = func() {}
		if fs.Parse(args) != nil {
			return nil, nil, false
		}
		changed := map[string]bool{}
		fs.Visit(func(f *pflag.Flag) { changed[f.Name] = true })
		return changed, fs.Args(), true
	}
	words := []string{"--rootfs", "r", "--rootfs=r", "--image", "i.tar", "-B", "/a:/b", "-B/a", "-B=/a", "-v", "-vq", "-qv",
		"-ve", "-vB", "-e", "--cleanenv", "--cleanenv=false", "-v=false", "--", "-", "true", "spec", "--help", "-h",
		"--version", "--no-such", "-Z", "---x", "--=x", "--bind", "--env", "A=1", "-test.v", "-dv", "--gpu", "x"}
	cases := [][]string{
		nil, {"--rootfs"}, {"-B"}, {"-vB"}, {"--rootfs", "r", "-vqB", "/a", "true"}, {"-B/a:/b", "-v", "--", "spec"},
		{"--rootfs=r", "-e", "--bind=/x", "sh", "-c", "x"}, {"-test.v", "--rootfs", "r", "x"},
	}
	// Every sequence of up to three words, and longer ones made from them.
	for _, a := range words {
		cases = append(cases, []string{a})
		for _, b := range words {
			cases = append(cases, []string{a, b})
			for _, c := range words {
				cases = append(cases, []string{a, b, c}, []string{"-v", a, b, c, "true"})
			}
		}
	}
	for _, args := range cases {
		wantChanged, wantRest, wantOK := parse(args)
		changed, rest, ok := scanFlags(run, args)
		if ok != wantOK || (ok && (!mapsEqual(changed, wantChanged) || !slices.Equal(rest, wantRest))) {
			t.Errorf("scanFlags(%q) = %v, %q, %v; pflag: %v, %q, %v", args, changed, rest, ok, wantChanged, wantRest, wantOK)
		}
	}
	// Nothing was set on the command that was read.
	run.Flags().Visit(func(f *pflag.Flag) { t.Errorf("scanFlags set --%s", f.Name) })
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
