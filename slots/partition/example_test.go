package partition_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/partition"
)

// Write an image into the B partition and verify it. The running slot is
// refused. On a device the partition is named by its GPT label
// (Device: "PARTLABEL=rootfs_b") and the running slot is read from
// /proc/cmdline; here a regular file in a temporary directory stands in
// for the 8 MiB partition, on a system booted from slot a.
func Example() {
	dir, err := os.MkdirTemp("", "partition-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rootfsB := filepath.Join(dir, "rootfs_b.img") // PARTLABEL=rootfs_b
	if err := os.WriteFile(rootfsB, nil, 0o644); err != nil {
		log.Fatal(err)
	}
	cmdline := filepath.Join(dir, "cmdline") // /proc/cmdline
	if err := os.WriteFile(cmdline, []byte("root=PARTLABEL=rootfs_a ro switchback.slot=a\n"), 0o644); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	slot, err := partition.New(partition.Config{Name: "b", Device: rootfsB, Size: 8 << 20, CmdlinePath: cmdline})
	if err != nil {
		log.Fatal(err)
	}
	const size = 3 << 20
	image := io.LimitReader(bytes.NewReader(bytes.Repeat([]byte("switchback"), size/10+1)), size) // the verified download
	w, err := slot.Writer(ctx, size)
	if errors.Is(err, slots.ErrSlotActive) {
		log.Fatal("b is running: write a")
	}
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	buf := make([]byte, slot.BlockSize())
	h := sha256.New()
	for off := int64(0); off < size; {
		n, err := io.ReadFull(image, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			log.Fatal(err)
		}
		h.Write(buf[:n])
		if _, err := w.WriteAt(buf[:n], off); err != nil {
			log.Fatal(err)
		}
		off += int64(n)
	}
	if err := w.Sync(); err != nil {
		log.Fatal(err)
	}
	if err := slot.Verify(ctx, size, sha256.New(), h.Sum(nil)); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("slot %s holds a verified %d MiB image\n", slot.Name(), size>>20)
	// Output: slot b holds a verified 3 MiB image
}

// Parse the kernel command line to find the booted slot.
func ExampleParseCmdline() {
	cl, err := partition.ParseCmdline(`root=PARTUUID=0fc63daf-02 ro switchback.slot=b switchback.canary=5e1f quiet`)
	if err != nil {
		log.Fatal(err)
	}
	slot, _ := cl.Get("switchback.slot")
	root, _ := cl.Get("root")
	spec, _ := partition.ParseRoot(root)
	fmt.Println(slot, spec.Kind, spec.Value)
	// Output: b partuuid 0fc63daf-02
}
