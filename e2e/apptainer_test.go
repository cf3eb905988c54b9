package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What Apptainer users reach for: hpcrun shell, run semantics,
// containment, and the hints for their habits. As the test user, with
// --image and the default cache.

// hpcrun shell: the shell reads stdin without a terminal; every job can
// tell it runs in hpcrun, and in which image.
func TestShellCommand(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	r := mustRun(t, opts{stdin: "echo container=$HPCRUN_CONTAINER image=$HPCRUN_IMAGE shell=$0\npython3 -c 'print(6*7)'\ncat /run/.containerenv\n"},
		"shell", "--image", img)
	want := []string{"container=1 image=" + img + " shell=/bin/bash", "42", `engine="hpcrun"`, `name="1"`, `image="` + img + `"`}
	if got := lines(r.stdout); len(got) < len(want) || strings.Join(got[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Errorf("hpcrun shell: got %q, want %q first\n%s", got, want, r)
	}
	// A plain run has the marks too, its --name in them, and cannot
	// change the file.
	t.Cleanup(func() { run(t, opts{}, "delete", "marks-"+t.Name()) })
	r = run(t, opts{}, "--image", img, "--name", "marks-"+t.Name(), "sh", "-c",
		`echo $HPCRUN_CONTAINER; grep name= /run/.containerenv; echo x >/run/.containerenv`)
	if got := lines(r.stdout); r.code == 0 || len(got) != 2 || got[0] != "marks-"+t.Name() || got[1] != `name="marks-`+t.Name()+`"` {
		t.Errorf("a named run's marks: %s", r)
	}
}

// At a terminal, hpcrun shell is interactive, and its prompt says where it is.
func TestShellAtTerminal(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*defaultCmdTimeout)
	defer cancel()
	term := startOnTerminal(t, command(ctx, opts{env: []string{"TERM=dumb", "PS1=host$ "}}, binPath, "shell", "--image", img))
	prompt := "(hpcrun " + filepath.Base(img) + ") " + testUser + "@"
	term.waitFor(prompt)
	term.say("echo in-$HPCRUN_CONTAINER\n")
	term.waitFor("in-1\r\n")
	term.say("exit 7\n")
	if code, err := term.wait(); code != 7 {
		t.Errorf("exit %d (%v), want the shell's 7: %q", code, err, term.out.String())
	}
}

// Run semantics: CMD replaces Entrypoint and Cmd; --run gives ARGS to the
// Entrypoint; --entrypoint replaces it.
func TestRunSemantics(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := busyboxImage(t, `MKIMAGE_ENTRYPOINT=["echo","ep"]`, `MKIMAGE_CMD=["default"]`)
	py := pythonImage(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"Entrypoint and Cmd", []string{"--image", img}, "ep default"},
		{"CMD replaces both", []string{"--image", img, "echo", "mine"}, "mine"},
		{"--run: ARGS to the Entrypoint", []string{"--image", img, "--run", "a", "b"}, "ep a b"},
		{"--run, no ARGS", []string{"--image", img, "--run"}, "ep default"},
		{"--entrypoint with ARGS after --", []string{"--image", img, "--entrypoint", "sh", "--", "-c", "echo over $0", "z"}, "over z"},
		{"--entrypoint alone drops Cmd", []string{"--image", img, "--entrypoint", "pwd", "--pwd", "/etc"}, "/etc"},
		{"--run, an image without Entrypoint", []string{"--image", py, "--run", "python3", "-c", "print('cmd')"}, "cmd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, opts{}, tc.args...)
			if strings.TrimSpace(r.stdout) != tc.want {
				t.Errorf("want %q: %s", tc.want, r)
			}
		})
	}
}

// --contain, --containall, --home, -B lists, -e and HPCRUNENV_.
func TestContainment(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	shared := tempDirOwned(t) // under /tmp on the host
	os.WriteFile(filepath.Join(shared, "host-file"), []byte("x"), 0o644)
	mark := filepath.Join(homeDir, ".contain-"+filepath.Base(shared))
	if err := os.WriteFile(mark, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(mark) })
	sub := tempDirOwnedIn(t, homeDir)
	seen := `for p in "$@"; do test -e "$p" && echo "seen $p"; done; echo "pwd $(pwd)"; echo "home $HOME $(ls -A "$HOME" | wc -l)"`

	t.Run("--contain at $HOME", func(t *testing.T) {
		r := mustRun(t, opts{dir: homeDir}, "--image", img, "--contain", "sh", "-c", seen, "sh", filepath.Join(shared, "host-file"), mark)
		if want := "pwd " + homeDir + "\nhome " + homeDir + " 0\n"; r.stdout != want || r.stderr != "" {
			t.Errorf("want only %q: %s", want, r)
		}
	})
	t.Run("--contain below $HOME", func(t *testing.T) {
		r := mustRun(t, opts{dir: sub}, "--image", img, "--contain", "sh", "-c", seen, "sh", sub)
		if want := "pwd " + homeDir + "\nhome " + homeDir + " 0\n"; r.stdout != want || !strings.Contains(r.stderr, "which --contain leaves out") {
			t.Errorf("want %q and a warning: %s", want, r)
		}
	})
	t.Run("--contain outside $HOME: the cwd bound, private /tmp", func(t *testing.T) {
		r := mustRun(t, opts{dir: shared}, "--image", img, "--contain", "sh", "-c",
			seen+`; touch /var/tmp/private-$$ && echo wrote`, "sh", filepath.Join(shared, "host-file"))
		want := "seen " + filepath.Join(shared, "host-file") + "\npwd " + shared + "\nhome " + homeDir + " 0\nwrote\n"
		if r.stdout != want {
			t.Errorf("want %q: %s", want, r)
		}
	})
	t.Run("--containall", func(t *testing.T) {
		host, err := os.Readlink("/proc/self/ns/ipc")
		if err != nil {
			t.Fatal(err)
		}
		r := mustRun(t, opts{dir: shared, env: []string{"FOO=host", "HPCRUNENV_BAR=set"}}, "--image", img, "--containall", "sh", "-c",
			`echo "foo=$FOO bar=$BAR"; readlink /proc/self/ns/ipc; ls -A /dev/shm | wc -l`)
		if got := lines(r.stdout); len(got) != 3 || got[0] != "foo= bar=set" || got[1] == host || got[2] != "0" {
			t.Errorf("want no FOO, BAR set, an IPC namespace other than %s and an empty /dev/shm: %s", host, r)
		}
	})
	t.Run("--home SRC:DST", func(t *testing.T) {
		r := mustRun(t, opts{dir: shared}, "--image", img, "--home", shared+":/home/me", "sh", "-c",
			`echo "$HOME"; cat ~/host-file; echo; getent passwd "$(id -u)" | cut -d: -f6`)
		if want := "/home/me\nx\n/home/me\n"; r.stdout != want {
			t.Errorf("want %q: %s", want, r)
		}
	})
	t.Run("-B lists, -e, HPCRUNENV_", func(t *testing.T) {
		r := mustRun(t, opts{dir: shared, env: []string{"FOO=host", "HPCRUNENV_FOO=over"}}, "--image", img, "-e",
			"-B", filepath.Join(shared, "host-file")+":/a,"+shared+":/b:ro", "sh", "-c",
			`cat /a; echo; ls /b; echo "foo=$FOO"; touch /b/new 2>/dev/null || echo read-only`)
		if want := "x\nhost-file\nfoo=over\nread-only\n"; r.stdout != want {
			t.Errorf("want %q: %s", want, r)
		}
	})
	t.Run("--home missing", func(t *testing.T) {
		r := run(t, opts{}, "--image", img, "--home", filepath.Join(shared, "none"), "true")
		if r.code != 125 || r.stderr != "hpcrun: --home: "+filepath.Join(shared, "none")+" does not exist; create it first\n" {
			t.Errorf("want one line, exit 125: %s", r)
		}
	})
}

// The habits of Apptainer users get one line that says what to type.
func TestApptainerHints(t *testing.T) {
	t.Parallel()
	needUserns(t)
	img := pythonImage(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"exec IMG CMD", []string{"exec", img, "python3", "-V"},
			"hpcrun: " + img + " is an image, not a running container; to run a command in it: hpcrun --image " + img + " python3 -V\n"},
		{"run IMG ARGS", []string{"run", img, "a"},
			"hpcrun: hpcrun run runs an OCI bundle, and " + img + " is an image; to run the image's own command: hpcrun --image " + img + " --run a\n"},
		{"shell IMG", []string{"shell", img},
			"hpcrun: hpcrun shell takes the image as a flag: hpcrun shell --image " + img + " (see hpcrun --help)\n"},
		{"shell without --image", []string{"shell"},
			"hpcrun: no image: give --image REF or --rootfs DIR (see hpcrun --help)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, opts{}, tc.args...)
			if r.code != 125 || r.stderr != tc.want || r.stdout != "" {
				t.Errorf("want exit 125 and %q: %s", tc.want, r)
			}
		})
	}
	t.Run("flags after CMD", func(t *testing.T) {
		r := run(t, opts{}, "--image", img, "python3", "-c", "import sys; sys.exit(3)", "--bind", "/x")
		want := "hpcrun: warning: --bind came after the command, so the command got it, not hpcrun; put hpcrun's flags before CMD\n"
		if r.code != 3 || r.stderr != want {
			t.Errorf("want exit 3 and %q: %s", want, r)
		}
		if r := mustRun(t, opts{}, "--image", img, "python3", "-c", "pass", "--bind", "/x"); r.stderr != "" {
			t.Errorf("a job that succeeded gets no warning: %s", r)
		}
	})
}
