// Package siftest builds the SIF files and squashfs images that tests
// run: a squashfs made by mksquashfs (squashfs-tools, which
// scripts/test-deps.sh installs), wrapped in a SIF by the apptainer/sif
// library, as `apptainer build` does. Only tests link it.
package siftest

import (
	"bytes"
	"crypto"
	"os"
	"os/exec"
	"testing"

	"github.com/apptainer/sif/v2/pkg/sif"
)

// NeedMksquashfs skips the test when mksquashfs is missing, and fails it
// where the suite must run whole (HPCRUN_TEST_REQUIRE_USERNS=1, as CI
// sets, or as root, where scripts/test-deps.sh installs squashfs-tools).
func NeedMksquashfs(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		if os.Getenv("HPCRUN_TEST_REQUIRE_USERNS") == "1" || os.Geteuid() == 0 {
			t.Fatalf("mksquashfs is missing (%v): scripts/test-deps.sh installs Debian's squashfs-tools", err)
		}
		t.Skip("mksquashfs is not installed (scripts/test-deps.sh installs squashfs-tools)")
	}
}

// Squash makes a squashfs of dir at out, compressed with comp (gzip, xz,
// zstd, lz4, lzo), with mksquashfs's extra arguments (-p pseudo files,
// -noI to leave names uncompressed for Patch).
func Squash(t testing.TB, dir, out, comp string, extra ...string) {
	t.Helper()
	NeedMksquashfs(t)
	args := append([]string{dir, out, "-comp", comp, "-noappend", "-quiet", "-no-progress"}, extra...)
	if b, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs %v: %v\n%s", args, err, b)
	}
}

// Options says what SIF to build around a squashfs.
type Options struct {
	Arch   string     // the partition's architecture; "" is amd64
	FS     sif.FSType // the partition's filesystem type; 0 is squashfs
	Signed bool       // add a signature object, linked to the partition
	// NoSystem makes the squashfs a data partition, so that the SIF has
	// no system partition.
	NoSystem bool
}

// SIF wraps the squashfs at squash in a SIF file at out.
func SIF(t testing.TB, squash, out string, o Options) {
	t.Helper()
	data, err := os.ReadFile(squash)
	if err != nil {
		t.Fatal(err)
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	if o.FS == 0 {
		o.FS = sif.FsSquash
	}
	pt := sif.PartPrimSys
	if o.NoSystem {
		pt = sif.PartData
	}
	part, err := sif.NewDescriptorInput(sif.DataPartition, bytes.NewReader(data), sif.OptPartitionMetadata(o.FS, pt, o.Arch))
	if err != nil {
		t.Fatal(err)
	}
	dis := []sif.DescriptorInput{part}
	if o.Signed {
		sig, err := sif.NewDescriptorInput(sif.DataSignature, bytes.NewReader([]byte("-----BEGIN PGP SIGNED MESSAGE-----\n")),
			sif.OptLinkedID(1), sif.OptSignatureMetadata(crypto.SHA256, bytes.Repeat([]byte{0xab}, 20)))
		if err != nil {
			t.Fatal(err)
		}
		dis = append(dis, sig)
	}
	f, err := sif.CreateContainerAtPath(out, sif.OptCreateWithDescriptors(dis...), sif.OptCreateDeterministic())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
}

// Patch replaces old, which must occur once in the file, by repl, of the
// same length: how a test forges names mksquashfs would not write (with
// -noI the directory table holds them uncompressed).
func Patch(t testing.TB, file, old, repl string) {
	t.Helper()
	if len(old) != len(repl) {
		t.Fatalf("patch %q -> %q: lengths differ", old, repl)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte(old)); n != 1 {
		t.Fatalf("%s holds %q %d times, want once", file, old, n)
	}
	if err := os.WriteFile(file, bytes.Replace(b, []byte(old), []byte(repl), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}
