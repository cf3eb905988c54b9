package launch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hpcrun/hpcrun/unpack"
)

// Hints for the habits of Apptainer users, whose commands take the image
// where hpcrun's OCI verbs take a container or a bundle. Each is one line
// that says what to type instead.

// IsImageFile reports whether path names an image on disk, as Apptainer
// users pass one: what --image takes as an archive or an OCI layout
// (unpack.Locate's rule), by its path alone, not a root filesystem.
func IsImageFile(path string) bool {
	loc, err := unpack.Locate(path)
	return err == nil && loc.Tag == "" && (loc.Kind == unpack.Archive || loc.Kind == unpack.Layout)
}

// ExecHint is the error for `hpcrun exec IMG CMD`, where IMG names no
// container but an image: exec enters a running container.
func ExecHint(image string, args []string) error {
	return fmt.Errorf("%s is an image, not a running container; to run a command in it: hpcrun --image %s %s",
		image, image, strings.Join(args, " "))
}

// RunHint is the error for `hpcrun run IMG [ARGS]`, runc's verb, which
// runs a bundle; nil when arg is not an image file or a bundle is there.
func RunHint(bundle string, args []string) error {
	if len(args) == 0 || !IsImageFile(args[0]) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err == nil {
		return nil
	}
	line := "hpcrun --image " + args[0] + " --run"
	if len(args) > 1 {
		line += " " + strings.Join(args[1:], " ")
	}
	return fmt.Errorf("hpcrun run runs an OCI bundle, and %s is an image; to run the image's own command: %s", args[0], line)
}

// ShellHint is the error for `hpcrun shell IMG`, the image given as
// apptainer shell takes it; nil for none.
func ShellHint(args []string) error {
	if len(args) == 0 {
		return nil
	}
	if IsImageFile(args[0]) || strings.HasPrefix(args[0], "docker://") {
		return UsageError{fmt.Errorf("hpcrun shell takes the image as a flag: hpcrun shell --image %s", args[0])}
	}
	return UsageError{fmt.Errorf("hpcrun shell runs no command; to run one: hpcrun --image REF %s", strings.Join(args, " "))}
}

// FlagAfterCmd is the warning for a failed job whose ARGS hold one of
// hpcrun's flags: flag parsing stops at CMD, so CMD got it. isFlag says
// whether a long name is one of hpcrun's run flags; -B is the one short
// form looked for, the others being too common in programs' own flags.
// "" for none, and always when the job succeeded.
func FlagAfterCmd(r *Request, code int, isFlag func(string) bool) string {
	if code == 0 || len(r.Args) == 0 {
		return ""
	}
	args := r.Args[1:]
	if r.Run || r.Entrypoint != nil {
		args = r.Args
	}
	for _, a := range args {
		name, ok := strings.CutPrefix(a, "--")
		name, _, _ = strings.Cut(name, "=")
		if ok && name != "help" && name != "version" && isFlag(name) || a == "-B" {
			return fmt.Sprintf("%s came after the command, so the command got it, not hpcrun; put hpcrun's flags before CMD", a)
		}
	}
	return ""
}
