package grub_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/grub"
)

// Arm the other slot for three tries, and on the next boot commit it or
// roll back.
func Example() {
	ctx := context.Background()
	boot, err := grub.New("/boot/grub/grubenv", []string{"a", "b"})
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
