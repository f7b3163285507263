package slotstest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

// A Slot implementation runs the conformance suite from its own tests.
func ExampleTestSlot() {
	// In a _test.go file of the implementation:
	_ = func(t *testing.T) {
		slotstest.TestSlot(t, func(t *testing.T) slots.Slot {
			return slotstest.NewMemSlot("b", 64<<20) // your slot here, made in t.TempDir()
		})
	}
	// Output:
}

// A trial boots once per try, then the primary runs again.
func ExampleFakeBoot() {
	ctx := context.Background()
	boot := slotstest.NewFakeBoot("a", "b")
	boot.Arm(ctx, "b", 2)
	for range 3 {
		boot.Reboot()
		st, _ := boot.Status(ctx)
		fmt.Printf("booted %s, trial %q, tries left %d\n", st.Booted, st.Trial, st.TriesLeft)
	}
	// Output:
	// booted b, trial "b", tries left 1
	// booted b, trial "b", tries left 0
	// booted a, trial "b", tries left 0
}

// A power cut loses what was written but not synced.
func ExamplePowerCut() {
	ctx := context.Background()
	pc := slotstest.NewPowerCut()
	slot := slotstest.NewMemSlot("b", 1<<20, slotstest.WithPowerCut(pc))
	w, _ := slot.Writer(ctx, 6)
	w.WriteAt([]byte("abc"), 0)
	w.Sync()
	pc.CutAfter(1)
	w.WriteAt([]byte("def"), 3) // the one write allowed
	err := w.Sync()             // the power goes off here
	fmt.Println(err)
	pc.Restore()
	fmt.Printf("%q\n", slot.Bytes())
	// Output:
	// slotstest: power cut
	// "abc\x00\x00\x00"
}
