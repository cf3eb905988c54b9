package launch

import (
	"errors"
	"fmt"
)

// Request is what the command line asks of a job: hpcrun's run flags,
// and the command. The field comments name the flags.
type Request struct {
	Image    string // --image REF
	Rootfs   string // --rootfs DIR
	Platform string // --platform OS/ARCH[/VARIANT]
	Cache    string // --cache DIR
	Insecure bool   // --tls-verify=false, --insecure: a docker:// registry's certificate is not checked
	CAFile   string // --ca-file FILE: CAs for a docker:// registry
	Args     []string

	Binds         []string // --bind SRC[:DST[:ro]], in order
	NoHome        bool     // --no-home
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
}

// UsageError is a request that contradicts itself or names a bad value:
// the command line is wrong, not the node or the image.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

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
	case r.GPU && r.ROCm:
		return UsageError{errors.New("--gpu and --rocm cannot be used together")}
	}
	return nil
}
