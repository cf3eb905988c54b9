package source

import (
	"archive/tar"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
)

func ispecVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }

// archiveWriter writes the members of an OCI archive: plain files, owned
// by root, mode 0644, with a fixed mtime, so that the same image gives the
// same archive.
type archiveWriter struct {
	tw   *tar.Writer
	dirs map[string]bool
}

var archiveTime = time.Unix(0, 0)

func tarWriter(w io.Writer) *archiveWriter {
	return &archiveWriter{tw: tar.NewWriter(w), dirs: map[string]bool{}}
}

func (a *archiveWriter) dir(name string) error {
	if a.dirs[name] {
		return nil
	}
	a.dirs[name] = true
	return a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: archiveTime, Format: tar.FormatPAX})
}

func (a *archiveWriter) file(name string, data []byte) error {
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: archiveTime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := a.tw.Write(data)
	return err
}

// copy writes a blob under blobs/ALG/, reading r (a verifying reader) to
// its end so that its digest is checked.
func (a *archiveWriter) copy(name string, size int64, r io.Reader) error {
	if err := a.dir("blobs"); err != nil {
		return err
	}
	if err := a.dir(name[:len("blobs/sha256")]); err != nil {
		return err
	}
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: archiveTime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(a.tw, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: %d bytes, want %d", name, n, size)
	}
	// Read to EOF: the verifier checks the digest there.
	if _, err := r.Read(make([]byte, 1)); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("%s: longer than %d bytes", name, size)
		}
		return err
	}
	return nil
}

func (a *archiveWriter) close() error { return a.tw.Close() }
