package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hpcrun/hpcrun/internal/unpacker"
	"github.com/hpcrun/hpcrun/unpack"
	"github.com/hpcrun/hpcrun/unpack/store"
)

// OpenStore opens the image cache: dir, else the one the config and the
// node give, as for a run; with the settings it read.
func OpenStore(h Host, dir string) (*store.Store, *Settings, error) {
	st, err := LoadSettings(h, dir, "")
	if err != nil {
		return nil, nil, err
	}
	if dir, err = st.Cache(h); err != nil {
		return nil, nil, err
	}
	s, err := store.Open(dir)
	return s, st, err
}

// PullRequest is what hpcrun pull asks for.
type PullRequest struct {
	Ref      string // [docker://]REGISTRY/REPOSITORY[:TAG|@DIGEST]
	Cache    string // --cache
	Platform string // --platform; "" for this node's
	Output   string // -o: an OCI archive to write instead of unpacking
	Insecure bool   // --tls-verify=false, --insecure
	CAFile   string // --ca-file
}

// Pull fetches r.Ref from its registry into the cache, or with r.Output
// into an OCI archive, and says so on log.
func Pull(ctx context.Context, r PullRequest, h Host, log *Log) error {
	ref := r.Ref
	if !strings.HasPrefix(ref, unpack.RegistryPrefix) {
		ref = unpack.RegistryPrefix + ref
	}
	if _, err := unpack.Locate(ref); err != nil {
		return UsageError{err}
	}
	p := unpack.HostPlatform()
	if r.Platform != "" {
		var err error
		if p, err = unpack.ParsePlatform(r.Platform); err != nil {
			return UsageError{err}
		}
	}
	output := r.Output
	if output != "" {
		if !filepath.IsAbs(output) {
			output = filepath.Join(h.Cwd, output)
		}
		if fi, err := os.Stat(filepath.Dir(output)); err != nil || !fi.IsDir() {
			return usage("-o %s: its directory does not exist", output)
		}
	}
	s, st, err := OpenStore(h, r.Cache)
	if err != nil {
		return err
	}
	d, err := unpacker.Ensure(ctx, unpacker.Request{
		Ref: ref, Cache: s.Dir, Platform: p.String(), Progress: Progress(log, h), Stderr: log.W,
		Pull: true, Output: output, MaxSize: st.Conf.MaxImageSize.Value, Insecure: r.Insecure, CAFile: AbsPath(h, r.CAFile),
	})
	if err != nil {
		return err
	}
	name, short := strings.TrimPrefix(ref, unpack.RegistryPrefix), store.Digest(d).Short()
	if output != "" {
		log.Printf("pulled %s (%s) to %s", name, short, output)
	} else {
		log.Printf("pulled %s (%s) into %s", name, short, s.Dir)
	}
	return nil
}

// AbsPath is a path given on the command line made absolute; "" stays "".
func AbsPath(h Host, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(h.Cwd, p)
}

// LoginRequest is what hpcrun login asks for.
type LoginRequest struct {
	Registry      string
	Cache         string // where the unpacker runs from (see OpenStore)
	User          string // "" to ask at the terminal
	PasswordStdin bool
	Insecure      bool
	CAFile        string
}

// Login checks r's credentials against its registry and stores them, and
// says so on log.
func Login(ctx context.Context, r LoginRequest, h Host, log *Log) error {
	s, _, err := OpenStore(h, r.Cache)
	if err != nil {
		return err
	}
	args := []string{}
	if r.User != "" {
		args = append(args, "--username", r.User)
	}
	if r.PasswordStdin {
		args = append(args, "--password-stdin")
	}
	args = append(args, unpacker.TLSArgs(r.Insecure, AbsPath(h, r.CAFile))...)
	msg, err := unpacker.Login(ctx, s.Dir, append(args, "--", r.Registry), os.Stdin, log.W)
	if err != nil {
		return err
	}
	if msg == "" {
		return errors.New("login said nothing")
	}
	fmt.Fprintln(log.Out, msg)
	return nil
}
