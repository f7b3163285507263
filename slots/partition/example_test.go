package partition_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/partition"
)

// Write an image into the B partition, named by its GPT label, and read it
// back. The running slot is refused.
func Example() {
	ctx := context.Background()
	slot, err := partition.New(partition.Config{Name: "b", Device: "PARTLABEL=rootfs_b"})
	if err != nil {
		log.Fatal(err)
	}
	var image io.Reader // the verified download
	const size = 512 << 20
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
