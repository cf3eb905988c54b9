// Package testregistry serves an OCI registry (go-containerregistry's
// pkg/registry) on 127.0.0.1 for tests, with a hook in front of it that a
// test sets to fail, slow down or inspect requests.
package testregistry

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
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

	mu   sync.Mutex
	hook Hook
}

// Start serves a registry until the test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	tr := &Registry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		hook := tr.hook
		tr.mu.Unlock()
		if hook != nil {
			hook(w, r, reg)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.Host = strings.TrimPrefix(srv.URL, "http://")
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
