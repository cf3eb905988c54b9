package unpack

import "testing"

func TestNormalizeRegistryRef(t *testing.T) {
	for in, want := range map[string]string{
		"python":                     "index.docker.io/library/python:latest",
		"python:3.12":                "index.docker.io/library/python:3.12",
		"docker.io/user/app":         "index.docker.io/user/app:latest",
		"ghcr.io/org/img:1.0":        "ghcr.io/org/img:1.0",
		"localhost/img":              "localhost/img:latest",
		"127.0.0.1:5000/a/b:c":       "127.0.0.1:5000/a/b:c",
		"img:tag@sha256:" + hex64:    "index.docker.io/library/img@sha256:" + hex64,
		"registry.example.org:443/x": "registry.example.org:443/x:latest",
	} {
		got, err := NormalizeRegistryRef(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRegistryRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Python", "a:b:c", "a@", "a@sha256", "/a", "a/", "a b", "a:-x"} {
		if got, err := NormalizeRegistryRef(bad); err == nil {
			t.Errorf("NormalizeRegistryRef(%q) = %q, want an error", bad, got)
		}
	}
	loc, err := Locate("docker://python:3.12")
	if err != nil || loc.Kind != Registry || loc.Key != "docker://index.docker.io/library/python:3.12" {
		t.Errorf("Locate(docker://python:3.12) = %+v, %v", loc, err)
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
