package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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

// RegistryTransport is http.DefaultTransport with those deadlines.
func RegistryTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
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
	return t
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
