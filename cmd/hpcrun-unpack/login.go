package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sys/unix"

	"github.com/hpcrun/hpcrun/internal/atomicfile"
	"github.com/hpcrun/hpcrun/unpack/source"

	"github.com/hpcrun/hpcrun/internal/termsafe"
)

// runLogin checks a user name and password (or token) against a registry
// and stores them where pulls look first: $REGISTRY_AUTH_FILE when set,
// else docker's config.json ($DOCKER_CONFIG, else ~/.docker), in the
// {"auths": {REGISTRY: {"auth": base64(user:password)}}} form that docker,
// podman and skopeo read too, mode 0600. Other entries are kept.
func runLogin(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stdout, "error: %s\n", termsafe.Line(err.Error()))
		return exitFailure
	}
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.String("username", "", "the user name")
	fromStdin := fs.Bool("password-stdin", false, "read the password or token from stdin")
	var tc source.TLS
	tlsFlags(fs, &tc)
	if err := fs.Parse(args); err != nil {
		return fail(fmt.Errorf("login: %w", err))
	}
	if fs.NArg() != 1 {
		return fail(errors.New("usage: hpcrun login [-u USER] [--password-stdin] REGISTRY"))
	}
	reg, err := registryArg(fs.Arg(0), tc.Insecure)
	if err != nil {
		return fail(fmt.Errorf("login: %w", err))
	}
	var tty *os.File
	if *user == "" || !*fromStdin {
		if tty, err = os.OpenFile("/dev/tty", os.O_RDWR, 0); err != nil {
			return fail(errors.New("login: no terminal to ask on; give -u USER and --password-stdin"))
		}
		defer tty.Close()
	}
	if *user == "" {
		fmt.Fprint(tty, "Username: ")
		line, err := bufio.NewReader(tty).ReadString('\n')
		if err != nil {
			return fail(fmt.Errorf("login: read the user name: %w", err))
		}
		*user = strings.TrimSpace(line)
	}
	var password string
	if *fromStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return fail(fmt.Errorf("login: read the password: %w", err))
		}
		password = strings.TrimRight(string(b), "\r\n")
	} else if password, err = askPassword(tty); err != nil {
		return fail(fmt.Errorf("login: read the password: %w", err))
	}
	if *user == "" || password == "" {
		return fail(errors.New("login: an empty user name or password"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := checkLogin(ctx, reg, *user, password, tc); err != nil {
		return fail(err)
	}
	file, err := storeLogin(reg.RegistryStr(), *user, password)
	if err != nil {
		return fail(fmt.Errorf("login: store the credentials: %w", err))
	}
	fmt.Fprintf(stdout, "logged in to %s as %s; credentials in %s\n", reg.RegistryStr(), *user, file)
	return 0
}

// checkLogin makes an authenticated request to the registry's API root.
func checkLogin(ctx context.Context, reg name.Registry, user, password string, tc source.TLS) error {
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	base, err := source.RegistryTransport(tc)
	if err != nil {
		return err
	}
	rt, err := transport.NewWithContext(ctx, reg, auth, base, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return fmt.Errorf("login to %s: the registry refused the user name or password (HTTP %d)", reg.RegistryStr(), te.StatusCode)
		}
		return fmt.Errorf("login to %s: %w", reg.RegistryStr(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", reg.Scheme(), reg.RegistryStr()), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("login to %s: %w", reg.RegistryStr(), err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("login to %s: the registry refused the user name or password (HTTP %d)", reg.RegistryStr(), resp.StatusCode)
	}
	return fmt.Errorf("login to %s: the registry answered HTTP %d", reg.RegistryStr(), resp.StatusCode)
}

// registryArg reads the REGISTRY of login and logout: a host[:port],
// with or without https://; docker.io is Docker Hub.
func registryArg(arg string, insecure bool) (name.Registry, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(arg, "https://"), "http://"), "/")
	if host == "docker.io" || host == "registry-1.docker.io" {
		host = name.DefaultRegistry
	}
	opts := []name.Option{name.StrictValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return reg, fmt.Errorf("registry %q: %w", arg, err)
	}
	return reg, nil
}

// runLogout removes the credentials that login stored for a registry.
func runLogout(args []string, stdout io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stdout, "error: %s\n", termsafe.Line(err.Error()))
		return exitFailure
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) != 1 {
		return fail(errors.New("usage: hpcrun logout REGISTRY"))
	}
	reg, err := registryArg(args[0], false)
	if err != nil {
		return fail(fmt.Errorf("logout: %w", err))
	}
	file, found, err := editLogins(reg.RegistryStr(), nil)
	switch {
	case err != nil:
		return fail(fmt.Errorf("logout: %w", err))
	case !found:
		return fail(fmt.Errorf("logout: no credentials for %s in %s", reg.RegistryStr(), file))
	}
	fmt.Fprintf(stdout, "removed the credentials for %s from %s\n", reg.RegistryStr(), file)
	return 0
}

// loginFile is where login writes.
func loginFile() (string, error) {
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		return p, nil
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

func storeLogin(registry, user, password string) (string, error) {
	entry, _ := json.Marshal(map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))})
	file, _, err := editLogins(registry, entry)
	return file, err
}

// editLogins sets registry's entry in the login file's "auths" to entry,
// or removes it when entry is nil, keeping everything else; found says
// whether there was one. Nothing is written when nothing changes.
func editLogins(registry string, entry json.RawMessage) (file string, found bool, err error) {
	if file, err = loginFile(); err != nil {
		return "", false, err
	}
	key := registry
	if registry == name.DefaultRegistry {
		key = authn.DefaultAuthKey // what docker writes for Docker Hub
	}
	conf := map[string]json.RawMessage{}
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &conf); err != nil {
			return file, false, fmt.Errorf("%s: invalid JSON (%v); fix or remove it", file, err)
		}
	case errors.Is(err, os.ErrNotExist) && entry == nil:
		return file, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return file, false, err
	}
	auths := map[string]json.RawMessage{}
	if raw, ok := conf["auths"]; ok {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return file, false, fmt.Errorf("%s: \"auths\" is not an object", file)
		}
	}
	_, found = auths[key]
	if entry == nil {
		if !found {
			return file, false, nil
		}
		delete(auths, key)
	} else {
		auths[key] = entry
	}
	conf["auths"], _ = json.Marshal(auths)
	out, err := json.MarshalIndent(conf, "", "\t")
	if err != nil {
		return file, found, err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return file, found, err
	}
	if err := atomicfile.Write(file, append(out, '\n'), 0o600); err != nil {
		return file, found, err
	}
	return file, found, nil
}

// askPassword reads a line from the terminal with echo off.
func askPassword(tty *os.File) (string, error) {
	fmt.Fprint(tty, "Password: ")
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(tty).ReadString('\n')
	unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprintln(tty)
	return strings.TrimRight(line, "\r\n"), err
}
