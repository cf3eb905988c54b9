// Command mksif wraps a squashfs in a SIF file, as its primary system
// partition, the way `apptainer build` lays one out: what bench/sifcold.sh
// needs to build a SIF without Apptainer.
//
// Usage:
//
//	mksif [-arch ARCH] SQUASHFS OUT.sif
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/apptainer/sif/v2/pkg/sif"
)

func main() {
	arch := flag.String("arch", runtime.GOARCH, "the partition's architecture")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: mksif [-arch ARCH] SQUASHFS OUT.sif")
		os.Exit(2)
	}
	if err := mksif(flag.Arg(0), flag.Arg(1), *arch); err != nil {
		fmt.Fprintf(os.Stderr, "mksif: %v\n", err)
		os.Exit(1)
	}
}

func mksif(squash, out, arch string) error {
	f, err := os.Open(squash)
	if err != nil {
		return err
	}
	defer f.Close()
	part, err := sif.NewDescriptorInput(sif.DataPartition, f, sif.OptPartitionMetadata(sif.FsSquash, sif.PartPrimSys, arch))
	if err != nil {
		return err
	}
	img, err := sif.CreateContainerAtPath(out, sif.OptCreateWithDescriptors(part))
	if err != nil {
		return err
	}
	return img.UnloadContainer()
}
