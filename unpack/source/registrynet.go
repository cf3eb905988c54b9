package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Deadlines on every socket step of a registry request. A compute node
// often has no route out, and a firewall that drops packets rather than
// refusing them leaves a connect waiting for the kernel's SYN retries
// (about two minutes) or Go's default dial timeout (30 s, twice: the
// registry is pinged over https and http). A job should fail in seconds
// with a line that says what to do instead.
const (
	// ConnectTimeout bounds one TCP connect to a registry.
	ConnectTimeout = 5 * time.Second
	// tlsTimeout bounds the TLS handshake.
	tlsTimeout = 10 * time.Second
	// ioTimeout bounds each read and write on an open connection, and the
	// wait for a response's headers: a stalled download fails, and can be
	// resumed, rather than hanging the job.
	ioTimeout = 60 * time.Second
)

// TLS is how a registry's certificate is checked. The system's CAs are
// trusted, or only those in $SSL_CERT_FILE (and $SSL_CERT_DIR) when set,
// as Go reads them.
type TLS struct {
	// Insecure skips the check, and lets a registry be reached over plain
	// HTTP (--tls-verify=false, --insecure).
	Insecure bool
	// CAFile is a PEM file of CAs trusted besides the system's (--ca-file).
	CAFile string
}

// RegistryTransport is http.DefaultTransport with those deadlines, checking
// certificates as tc says.
func RegistryTransport(tc TLS) (http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	switch {
	case tc.Insecure:
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	case tc.CAFile != "":
		pem, err := os.ReadFile(tc.CAFile)
		if err != nil {
			return nil, newError(ErrInvalid, "--ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, newError(ErrInvalid, "--ca-file %s: no PEM certificate in it", tc.CAFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	d := &net.Dialer{Timeout: ConnectTimeout, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &deadlineConn{Conn: c}, nil
	}
	t.TLSHandshakeTimeout = tlsTimeout
	t.ResponseHeaderTimeout = ioTimeout
	return t, nil
}

// deadlineConn gives each Read and Write ioTimeout to make progress.
type deadlineConn struct{ net.Conn }

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// unreachable says, in one line, that the registry reg could not be
// reached and what to do on a node without network; nil when err is no
// failure to connect.
func unreachable(reg string, err error) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return nil
	}
	why := op.Err.Error()
	var ne net.Error
	if errors.As(op, &ne) && ne.Timeout() {
		why = fmt.Sprintf("no answer in %v", ConnectTimeout)
	}
	if op.Addr != nil && op.Addr.String() != reg {
		why = op.Addr.String() + ": " + why
	}
	return newError(ErrRegistry, "cannot reach registry %s (%s); this node may have no network: "+
		"pull the image where there is (hpcrun pull docker://REF -o IMAGE.tar) and run --image IMAGE.tar, or use an image archive",
		reg, why)
}

// untrusted says, in one line, that the registry reg's certificate failed
// the check, and what to do; nil when err is no such failure.
func untrusted(reg string, err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var why string
	switch {
	case errors.As(err, &ua):
		why = "it is signed by an authority this node does not trust (self-signed?)"
	case errors.As(err, &he):
		why = "it is not for the name " + he.Host
	case errors.As(err, &ci):
		why = "it is not valid (expired, or not yet valid)"
	default:
		return nil
	}
	return newError(ErrRegistry, "registry %s: its TLS certificate was refused: %s; give its CA with --ca-file FILE "+
		"(or SSL_CERT_FILE, which replaces the system's CAs), or, on a network you trust, --tls-verify=false", reg, why)
}

// oneLineError is err with its lines joined (oneLine), still wrapping it.
type oneLineError struct{ err error }

func (e oneLineError) Error() string { return oneLine(e.err.Error()) }
func (e oneLineError) Unwrap() error { return e.err }

// oneLine joins the lines of a message (a registry's error body, errors
// joined by the registry client) with "; ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
