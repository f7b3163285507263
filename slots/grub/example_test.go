package grub_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/grub"
)

// Arm the other slot for three tries, and on the next boot commit it or
// roll back. On a device the paths are the defaults (/boot/grub/grubenv,
// /proc/cmdline, /run/switchback); here files in a temporary directory
// stand in for them, as on a fresh install booted from slot a.
func Example() {
	dir, err := os.MkdirTemp("", "grub-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	grubenv := filepath.Join(dir, "grubenv") // /boot/grub/grubenv
	if err := grub.CreateEnv(grubenv); err != nil {
		log.Fatal(err)
	}
	cmdline := filepath.Join(dir, "cmdline") // what switchback.cfg passed the kernel
	if err := os.WriteFile(cmdline, []byte("root=PARTLABEL=rootfs_a ro switchback.slot=a switchback.canary= quiet\n"), 0o644); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	boot, err := grub.New(grubenv, []string{"a", "b"},
		grub.WithCmdline(cmdline), grub.WithRuntimeDir(filepath.Join(dir, "run")))
	if err != nil {
		log.Fatal(err)
	}
	if err := boot.CheckCanary(ctx); errors.Is(err, slots.ErrMismatch) {
		log.Fatal(err) // says what is misconfigured
	}
	st, err := boot.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	switch {
	case st.Trial != "" && st.Booted == st.Trial:
		// Running the trial: commit once healthy.
		err = boot.Commit(ctx, st.Booted)
	case st.Trial != "":
		// The bootloader fell back: record it.
		err = boot.MarkBad(ctx, st.Trial)
	default:
		other := "b"
		if st.Booted == "b" {
			other = "a"
		}
		// ... write and verify the image in the other slot, then:
		err = boot.Arm(ctx, other, 3)
	}
	if err != nil {
		log.Fatal(err)
	}
	st, err = boot.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("booted %s, primary %s, trial %s with %d tries\n", st.Booted, st.Primary, st.Trial, st.TriesLeft)
	// Output: booted a, primary a, trial b with 3 tries
}

// Edit a grubenv block in memory, as grub-editenv would.
func ExampleEnv() {
	env, err := grub.NewEnv(grub.BlockSize)
	if err != nil {
		log.Fatal(err)
	}
	if err := env.Set("sb_primary", "a"); err != nil {
		log.Fatal(err)
	}
	if err := env.Set("note", "two\nlines"); err != nil {
		log.Fatal(err)
	}
	b := env.Encode()
	fmt.Printf("%d bytes\n%s", len(b), b[:len(grub.Header)+29])
	// Output:
	// 1024 bytes
	// # GRUB Environment Block
	// sb_primary=a
	// note=two\
	// lines
}
