package oci

import (
	"context"
	"errors"
	"testing"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/verify"
)

// TestSlotConformance: the manifest slots keep the Slot contract. The
// BootControl suite does not apply: it arms slots holding arbitrary bytes,
// which Component.Arm refuses (they are not a signed manifest).
func TestSlotConformance(t *testing.T) {
	slotstest.TestSlot(t, func(t *testing.T) slots.Slot {
		c, err := New(Config{Dir: t.TempDir(), Hardware: "board-a", Resolve: staticResolver(verify.OCI{Repository: "x"})})
		if err != nil {
			t.Fatal(err)
		}
		return c.Slots()[1]
	})
}

// TestArmRefusesRunningSlot: the running slot is never armed (or
// unpacked over).
func TestArmRefusesRunningSlot(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir(), Hardware: "board-a", Resolve: staticResolver(verify.OCI{Repository: "x"})})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Arm(context.Background(), "a", 3); !errors.Is(err, slots.ErrSlotActive) {
		t.Fatalf("Arm of the running slot: %v, want ErrSlotActive", err)
	}
}
