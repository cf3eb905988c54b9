// Package testregistry serves an OCI registry (go-containerregistry's
// pkg/registry) on 127.0.0.1 for tests, with a hook in front of it that a
// test sets to fail, slow down or inspect requests.
package testregistry

import (
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Hook sees each request before the registry; next is the registry.
type Hook func(w http.ResponseWriter, r *http.Request, next http.Handler)

// Registry is a running test registry.
type Registry struct {
	Host string // 127.0.0.1:PORT
	// Of a registry served over HTTPS (StartTLS): a PEM file of its
	// certificate, and a client that trusts it.
	CAFile string
	Client *http.Client

	mu   sync.Mutex
	hook Hook
}

// Start serves a registry over plain HTTP until the test ends.
func Start(t testing.TB) *Registry { return start(t, false) }

// StartTLS serves a registry over HTTPS, with a self-signed certificate
// for 127.0.0.1, until the test ends. CAFile then holds the certificate.
func StartTLS(t testing.TB) *Registry { return start(t, true) }

func start(t testing.TB, withTLS bool) *Registry {
	t.Helper()
	tr := &Registry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		hook := tr.hook
		tr.mu.Unlock()
		if hook != nil {
			hook(w, r, reg)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	if !withTLS {
		srv.Start()
		t.Cleanup(srv.Close)
		tr.Host = strings.TrimPrefix(srv.URL, "http://")
		return tr
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr.Host = strings.TrimPrefix(srv.URL, "https://")
	tr.Client = srv.Client()
	tr.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(tr.CAFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	return tr
}

// SetHook puts h in front of the registry; nil takes it away.
func (tr *Registry) SetHook(h Hook) {
	tr.mu.Lock()
	tr.hook = h
	tr.mu.Unlock()
}

// BasicAuth is a hook that wants user and password.
func BasicAuth(user, password string) Hook {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}
}
