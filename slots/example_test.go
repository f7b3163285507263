//go:build !windows

package slots_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/slots"
)

// An application binary updated in place: the new version is written into
// the slot that is not running, armed for three starts, and committed once
// it has started.
func ExampleNewFile() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "gateway")
	os.WriteFile(bin, []byte("gateway 1.0"), 0o755) // the factory install

	f, err := slots.NewFile(bin) // bin becomes a symlink to slot a
	if err != nil {
		log.Fatal(err)
	}
	st, _ := f.Status(ctx)
	next := f.Slots()[1] // the slot that is not running: b
	fmt.Println("running", st.Booted, "writing", next.Name())

	img := []byte("gateway 2.0") // in real use: streamed and verified
	w, err := next.Writer(ctx, int64(len(img)))
	if err != nil {
		log.Fatal(err)
	}
	w.WriteAt(img, 0)
	w.Sync()
	w.Close()

	if err := f.Arm(ctx, next.Name(), 3); err != nil { // swaps the symlink
		log.Fatal(err)
	}
	// Before each start of the application (its start guard):
	st, _ = f.CountStart(ctx)
	b, _ := os.ReadFile(bin)
	fmt.Printf("starting %q from %s, %d tries left\n", b, st.Booted, st.TriesLeft)
	// Once the health checks pass:
	f.Commit(ctx, st.Booted)
	st, _ = f.Status(ctx)
	fmt.Println("primary", st.Primary)
	// Output:
	// running a writing b
	// starting "gateway 2.0" from b, 2 tries left
	// primary b
}

// A release directory updated from a tar archive, and rolled back when the
// new release fails its health checks.
func ExampleNewDir() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	current := filepath.Join(dir, "current")
	os.Mkdir(current, 0o755)
	os.WriteFile(filepath.Join(current, "VERSION"), []byte("1.0"), 0o644)

	d, err := slots.NewDir(current, slots.WithUnpackLimits(slots.UnpackLimits{MaxTotalSize: 1 << 30}))
	if err != nil {
		log.Fatal(err)
	}

	var archive bytes.Buffer // tar, tar.gz or tar.zst
	tw := tar.NewWriter(&archive)
	tw.WriteHeader(&tar.Header{Name: "VERSION", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("2.0"))
	tw.Close()

	next := d.Slots()[1]
	w, _ := next.Writer(ctx, int64(archive.Len()))
	w.WriteAt(archive.Bytes(), 0)
	w.Sync()
	w.Close()

	if err := d.Arm(ctx, next.Name(), 2); err != nil { // unpacks, then swaps
		log.Fatal(err)
	}
	v, _ := os.ReadFile(filepath.Join(current, "VERSION"))
	fmt.Printf("trial runs %s\n", v)

	d.MarkBad(ctx, next.Name()) // health checks failed: roll back
	v, _ = os.ReadFile(filepath.Join(current, "VERSION"))
	st, _ := d.Status(ctx)
	fmt.Printf("back to %s on slot %s, bad %v\n", v, st.Booted, st.Bad)
	// Output:
	// trial runs 2.0
	// back to 1.0 on slot a, bad [b]
}
