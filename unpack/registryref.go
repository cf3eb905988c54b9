package unpack

import (
	"fmt"
	"strings"
)

// RegistryPrefix marks an --image reference that names an image in a
// registry: docker://python:3.12, docker://ghcr.io/org/img@sha256:...
const RegistryPrefix = "docker://"

// dockerHub is the registry of a reference that names none, as Docker and
// go-containerregistry spell it.
const dockerHub = "index.docker.io"

// NormalizeRegistryRef spells a registry reference (without docker://) in
// full, as go-containerregistry's name.Reference.Name does: registry,
// repository, then :TAG or @DIGEST. A name without a registry is Docker
// Hub's ("python" is index.docker.io/library/python:latest); one without
// a tag or digest gets "latest". Both hpcrun's warm start and the puller
// key the cache with it, so the two must agree (a test checks that).
func NormalizeRegistryRef(ref string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("image reference %q: %s; write it as [REGISTRY/]REPOSITORY[:TAG|@DIGEST], e.g. python:3.12 or ghcr.io/org/image:1.0", ref, why)
	}
	if ref == "" {
		return bad("empty")
	}
	name, dgst, hasDigest := strings.Cut(ref, "@")
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, tag = name[:i], name[i+1:]
		if !validTag(tag) {
			return bad(fmt.Sprintf("invalid tag %q", tag))
		}
	}
	if hasDigest {
		alg, hex, ok := strings.Cut(dgst, ":")
		if !ok || alg == "" || hex == "" || strings.ContainsAny(dgst, "/@ ") {
			return bad(fmt.Sprintf("invalid digest %q", dgst))
		}
	}
	registry, repo := dockerHub, name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		if first := name[:i]; strings.ContainsAny(first, ".:") || first == "localhost" {
			registry, repo = first, name[i+1:]
		}
	}
	if registry == "docker.io" {
		registry = dockerHub
	}
	if registry == dockerHub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	if !validRepo(repo) {
		return bad(fmt.Sprintf("invalid repository %q (lower-case letters, digits and . _ - / only)", repo))
	}
	if strings.ContainsAny(registry, "/@ ") {
		return bad(fmt.Sprintf("invalid registry %q", registry))
	}
	out := registry + "/" + repo
	switch {
	case hasDigest:
		// go-containerregistry drops a tag given with a digest.
		return out + "@" + dgst, nil
	case tag != "":
		return out + ":" + tag, nil
	}
	return out + ":latest", nil
}

func validTag(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func validRepo(r string) bool {
	if r == "" || len(r) > 255 || strings.HasPrefix(r, "/") || strings.HasSuffix(r, "/") || strings.Contains(r, "//") {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for _, comp := range strings.Split(r, "/") {
		// Each component starts and ends with a letter or digit.
		if !alnum(comp[0]) || !alnum(comp[len(comp)-1]) {
			return false
		}
		for i := 0; i < len(comp); i++ {
			if c := comp[i]; !alnum(c) && c != '_' && c != '.' && c != '-' {
				return false
			}
		}
	}
	return true
}
