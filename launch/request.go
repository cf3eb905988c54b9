package launch

import (
	"errors"
	"fmt"
)

// Request is what the command line asks of a job: hpcrun's run flags,
// and the command. The field comments name the flags.
type Request struct {
	Image    string   // --image REF
	Rootfs   string   // --rootfs DIR
	Platform string   // --platform OS/ARCH[/VARIANT]
	Cache    string   // --cache DIR
	Insecure bool     // --tls-verify=false, --insecure: a docker:// registry's certificate is not checked
	CAFile   string   // --ca-file FILE: CAs for a docker:// registry
	Args     []string // CMD ARGS; with Run or Entrypoint, the ARGS of the image's command
	// Entrypoint is --entrypoint CMD, in place of the image's Entrypoint;
	// nil when not given.
	Entrypoint *string
	Run        bool // --run: Args go to the image's Entrypoint
	Shell      bool // hpcrun shell: the user's shell, at a prompt that says where it is

	Binds         []string // --bind SRC[:DST[:ro]] or comma lists of them, in order
	NoHome        bool     // --no-home
	Home          string   // --home SRC[:DST]
	Contain       bool     // --contain
	ContainAll    bool     // --containall
	Pwd           string   // --pwd DIR
	WritableTmpfs bool     // --writable-tmpfs
	Net           string   // --net MODE; "" for the config's
	Fakeroot      bool     // --fakeroot
	CleanEnv      bool     // --cleanenv
	Env           []string // --env K=V or K
	EnvFiles      []string // --env-file FILE
	GPU, ROCm     bool     // --gpu, --rocm
	// NewKeyring is --new-keyring when it was given (=false included),
	// else nil for the config's.
	NewKeyring *bool

	Name      string // --name N
	Detach    bool   // --detach
	JoinTag   string // --join-tag TAG
	JoinCount int    // --join-count N
	NoJoin    bool   // --no-join

	Restore string // --restore DIR: a checkpoint's, restored as the job
}

// UsageError is a request that contradicts itself or names a bad value:
// the command line is wrong, not the node or the image.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Message is err's line as hpcrun prints it: a usage error points to the
// help.
func Message(err error) string {
	if errors.As(err, new(UsageError)) {
		return err.Error() + " (see hpcrun --help)"
	}
	return err.Error()
}

func usage(format string, args ...any) error {
	return UsageError{fmt.Errorf(format, args...)}
}

// check refuses flags that cannot go together.
func (r *Request) check() error {
	switch {
	case r.Image != "" && r.Rootfs != "":
		return UsageError{errors.New("--image and --rootfs cannot be used together")}
	case r.Image == "" && r.Rootfs == "":
		return UsageError{errors.New("no image: give --image REF or --rootfs DIR")}
	}
	return r.conflicts()
}

// conflicts refuses flags that contradict each other.
func (r *Request) conflicts() error {
	switch {
	case r.GPU && r.ROCm:
		return UsageError{errors.New("--gpu and --rocm cannot be used together")}
	case r.Entrypoint != nil && *r.Entrypoint == "":
		return UsageError{errors.New("--entrypoint needs a command; to run without the image's Entrypoint, give CMD after the flags")}
	case r.NoHome && r.Home != "":
		return UsageError{errors.New("--no-home and --home cannot be used together")}
	case r.Shell && (r.Run || r.Entrypoint != nil):
		return UsageError{errors.New("hpcrun shell runs your shell: drop --run and --entrypoint")}
	}
	return nil
}
