package store

import (
	"strings"
	"testing"
)

func TestPick(t *testing.T) {
	a := Entry{Digest: Digest("sha256:abcdef0123" + strings.Repeat("0", 54)), Ref: "/scratch/py3.tar"}
	b := Entry{Digest: Digest("sha256:abcdef4567" + strings.Repeat("1", 54)), Ref: "/scratch/other.tar:v1"}
	c := Entry{Digest: Digest("sha256:1234567890" + strings.Repeat("2", 54)), Ref: "docker://localhost:5055/x:latest"}
	entries := []Entry{a, b, c}
	for _, tc := range []struct {
		name string
		want *Entry
		err  string
	}{
		{"/scratch/py3.tar", &a, ""},
		{"py3.tar", &a, ""}, // relative to the cwd, /scratch
		{"other.tar:v1", &b, ""},
		{a.Digest.String(), &a, ""},
		{"abcdef0", &a, ""},
		{"sha256:abcdef45", &b, ""},
		{"abcdef", nil, "names 2 cached images"},
		{"abcde", nil, "no cached image"}, // too short to be a digest
		{"", nil, "no cached image"},
		{"s", nil, "no cached image"},
		{"sha256", nil, "no cached image"},
		{"sha512:abcdef0123", nil, "no cached image"},
		{"docker://localhost:5055/x:latest", &c, ""},
		{"localhost:5055/x:latest", &c, ""}, // as pulled
		{"localhost:5055/x", &c, ""},        // the same reference
		{"localhost:5055/x:v2", nil, "no cached image"},
	} {
		got, err := Pick(entries, tc.name, "/scratch")
		switch {
		case tc.want != nil && (err != nil || got != *tc.want):
			t.Errorf("Pick(%q) = %v, %v; want %v", tc.name, got.Digest, err, tc.want.Digest)
		case tc.want == nil && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Pick(%q) = %v, %v; want an error with %q", tc.name, got.Digest, err, tc.err)
		}
	}
}
