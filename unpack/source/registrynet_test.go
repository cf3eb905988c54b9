package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hpcrun/hpcrun/internal/testregistry"
	"github.com/hpcrun/hpcrun/unpack"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestUnreachable(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5999}
	dial := func(err error, a net.Addr) error {
		return fmt.Errorf(`Get "https://r/v2/": %w`, &net.OpError{Op: "dial", Net: "tcp", Addr: a, Err: err})
	}
	tests := []struct {
		name, reg string
		err       error
		want      string // "" for no such error
	}{
		{"a dropped connect", "127.0.0.1:5999", dial(timeoutErr{}, addr), "cannot reach registry 127.0.0.1:5999 (no answer in 5s); this node may have no network: pull the image where there is"},
		{"refused", "127.0.0.1:5999", dial(os.NewSyscallError("connect", syscall.ECONNREFUSED), addr), "cannot reach registry 127.0.0.1:5999 (connect: connection refused)"},
		{"a name's address", "reg.example:5000", dial(timeoutErr{}, addr), "cannot reach registry reg.example:5000 (127.0.0.1:5999: no answer in 5s)"},
		{"no DNS", "reg.example", dial(&net.DNSError{Err: "no such host", Name: "reg.example"}, nil), "cannot reach registry reg.example (lookup reg.example: no such host)"},
		{"both schemes", "127.0.0.1:5999", errors.Join(dial(timeoutErr{}, addr), dial(timeoutErr{}, addr)), "cannot reach registry 127.0.0.1:5999 (no answer in 5s)"},
		{"a read, not a connect", "r", &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}, ""},
		{"no network error", "r", errors.New("HTTP 500"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unreachable(tt.reg, tt.err)
			switch {
			case tt.want == "" && got != nil:
				t.Errorf("unreachable = %v, want nil", got)
			case tt.want != "" && (got == nil || !strings.Contains(got.Error(), tt.want) || strings.Contains(got.Error(), "\n")):
				t.Errorf("unreachable = %v, want one line with %q", got, tt.want)
			case got != nil && !errors.Is(got, ErrRegistry):
				t.Errorf("unreachable = %v, not an ErrRegistry", got)
			}
		})
	}
}

// Every connection of the transport has deadlines: the handshake and the
// response's headers are bounded, and a read that gets nothing times out.
func TestRegistryTransportDeadlines(t *testing.T) {
	rt, err := RegistryTransport(TLS{})
	if err != nil {
		t.Fatal(err)
	}
	tr := rt.(*http.Transport)
	if tr.TLSHandshakeTimeout != tlsTimeout || tr.ResponseHeaderTimeout != ioTimeout {
		t.Errorf("TLS handshake timeout %v, response header timeout %v", tr.TLSHandshakeTimeout, tr.ResponseHeaderTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := tr.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*deadlineConn); !ok {
		t.Fatalf("the transport dials a %T, with no deadline on reads", c)
	}
}

// A registry whose certificate this node does not trust (self-signed): one
// line that says why and what to do, no raw error chain; --ca-file with its
// certificate, or --tls-verify=false, reach it.
func TestRegistrySelfSigned(t *testing.T) {
	reg := testregistry.StartTLS(t)
	ref, err := name.ParseReference(reg.Host + "/test/tls:v1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(1<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(reg.Client.Transport)); err != nil {
		t.Fatal(err)
	}
	open := func(tc TLS) error {
		src, err := OpenRegistry(context.Background(), reg.Host+"/test/tls:v1", t.TempDir(), RegistryOptions{TLS: tc})
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = src.Resolve(unpack.HostPlatform())
		return err
	}
	err = open(TLS{})
	if err == nil || !errors.Is(err, ErrRegistry) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), `\n`) ||
		!strings.Contains(err.Error(), "self-signed") || !strings.Contains(err.Error(), "--ca-file") ||
		!strings.Contains(err.Error(), "--tls-verify=false") {
		t.Errorf("untrusted registry: want one line with the fix, got %q", err)
	}
	if err := open(TLS{CAFile: reg.CAFile}); err != nil {
		t.Errorf("with --ca-file: %v", err)
	}
	if err := open(TLS{Insecure: true}); err != nil {
		t.Errorf("with --tls-verify=false: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	os.WriteFile(notPEM, []byte("hello\n"), 0o644)
	for _, f := range []string{notPEM, filepath.Join(t.TempDir(), "missing.pem")} {
		if err := open(TLS{CAFile: f}); err == nil || !strings.Contains(err.Error(), "--ca-file") {
			t.Errorf("--ca-file %s: %v", f, err)
		}
	}
}
