package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rmi of a pulled image removes the blobs that only it uses, and the index
// that led to it alone; a layer that another manifest names stays, as do
// that manifest's own blobs.
func TestRemoveBlobs(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put := func(content string) Digest {
		t.Helper()
		sum := sha256.Sum256([]byte(content))
		d := Digest("sha256:" + hex.EncodeToString(sum[:]))
		p := s.blobPath(d)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	manifest := func(config Digest, layers ...Digest) Digest {
		var ls []string
		for _, l := range layers {
			ls = append(ls, fmt.Sprintf(`{"digest":%q}`, l))
		}
		return put(fmt.Sprintf(`{"config":{"digest":%q},"layers":[%s]}`, config, strings.Join(ls, ",")))
	}
	ca, cb := put(`{"config":{"Cmd":["a"]}}`), put(`{"config":{"Cmd":["b"]}}`) // as image configs are
	l1, l2, l3 := put("layer 1"), put("layer 2 shared"), put("layer 3")
	a := manifest(ca, l1, l2)
	b := manifest(cb, l2, l3)
	other := put(`{"manifests":[{"digest":"sha256:` + strings.Repeat("9", 64) + `"}]}`)
	ia := put(fmt.Sprintf(`{"manifests":[{"digest":%q},{"digest":"sha256:%s"}]}`, a, strings.Repeat("8", 64)))
	ib := put(fmt.Sprintf(`{"manifests":[{"digest":%q},{"digest":%q}]}`, a, b))

	if got, want := s.blobsSize(a), size(t, s.blobPath(ca))+int64(len("layer 1")+len("layer 2 shared"))+size(t, s.blobPath(a)); got != want {
		t.Errorf("blobsSize(a) = %d, want %d", got, want)
	}
	if s.blobsSize(Digest("sha256:"+strings.Repeat("7", 64))) != 0 {
		t.Error("an image that was not pulled has blobs")
	}
	s.removeBlobs(a)
	for d, want := range map[Digest]bool{a: false, ca: false, l1: false, ia: false,
		l2: true, b: true, cb: true, l3: true, ib: true, other: true} {
		if _, err := os.Stat(s.blobPath(d)); (err == nil) != want {
			t.Errorf("blob %s: present %v, want %v", d.Short(), err == nil, want)
		}
	}
}

func size(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
