package launch

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHints: the one line for each Apptainer habit, and none where the
// words mean what hpcrun takes them for.
func TestHints(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "py3.sif")
	layout := filepath.Join(dir, "layout")
	bundle := filepath.Join(dir, "bundle")
	for _, d := range []string{layout, bundle} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{img, filepath.Join(layout, "index.json"), filepath.Join(bundle, "config.json")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	for _, tc := range []struct {
		name, got, want string
	}{
		{"exec IMG CMD", errText(ExecHint(img, []string{"python3", "-V"})),
			img + " is an image, not a running container; to run a command in it: hpcrun --image " + img + " python3 -V"},
		{"run IMG", errText(RunHint(dir, []string{img})),
			"hpcrun run runs an OCI bundle, and " + img + " is an image; to run the image's own command: hpcrun --image " + img + " --run"},
		{"run IMG ARGS", errText(RunHint(dir, []string{img, "a", "b"})),
			"hpcrun run runs an OCI bundle, and " + img + " is an image; to run the image's own command: hpcrun --image " + img + " --run a b"},
		{"run LAYOUT", errText(RunHint(dir, []string{layout})),
			"hpcrun run runs an OCI bundle, and " + layout + " is an image; to run the image's own command: hpcrun --image " + layout + " --run"},
		{"run ID, a container", errText(RunHint(dir, []string{"job1"})), ""},
		{"run ID in a bundle, a file of that name there", errText(RunHint(bundle, []string{img})), ""},
		{"run a plain directory", errText(RunHint(dir, []string{bundle})), ""},
		{"shell IMG", errText(ShellHint([]string{img})), "hpcrun shell takes the image as a flag: hpcrun shell --image " + img},
		{"shell docker://", errText(ShellHint([]string{"docker://python:3"})), "hpcrun shell takes the image as a flag: hpcrun shell --image docker://python:3"},
		{"shell CMD", errText(ShellHint([]string{"ls", "-l"})), "hpcrun shell runs no command; to run one: hpcrun --image REF ls -l"},
		{"shell", errText(ShellHint(nil)), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
}

// TestFlagAfterCmd: a failed job with one of hpcrun's flags after CMD
// gets a warning; a job that succeeded, or a flag that is not hpcrun's,
// none.
func TestFlagAfterCmd(t *testing.T) {
	isFlag := func(n string) bool { return n == "bind" || n == "env" || n == "help" }
	const warn = " came after the command, so the command got it, not hpcrun; put hpcrun's flags before CMD"
	for _, tc := range []struct {
		name string
		r    Request
		code int
		want string
	}{
		{"--bind after CMD, failed", Request{Args: []string{"python3", "x.py", "--bind", "/a"}}, 2, "--bind" + warn},
		{"--env=K=V", Request{Args: []string{"ls", "--env=A=1"}}, 1, "--env=A=1" + warn},
		{"-B", Request{Args: []string{"ls", "-B", "/a"}}, 127, "-B" + warn},
		{"succeeded", Request{Args: []string{"python3", "--bind"}}, 0, ""},
		{"CMD itself", Request{Args: []string{"--bind"}}, 127, ""},
		{"--run: every ARG", Request{Run: true, Args: []string{"--bind"}}, 1, "--bind" + warn},
		{"not hpcrun's", Request{Args: []string{"ls", "--color", "-e"}}, 2, ""},
		{"--help", Request{Args: []string{"tool", "--help"}}, 2, ""},
		{"after --", Request{Args: []string{"tool", "--", "x"}}, 2, ""},
	} {
		if got := FlagAfterCmd(&tc.r, tc.code, isFlag); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
