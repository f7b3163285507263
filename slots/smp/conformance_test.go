package smp_test

import (
	"testing"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

func TestSlotConformance(t *testing.T) {
	slotstest.TestSlot(t, func(t *testing.T) slots.Slot {
		r := newRig(t, rigOptions{slotSize: 4 << 20})
		s, err := r.dev.Slot("b")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestBootControlConformance runs the whole suite: the trial tests boot
// through slotstest.Rebooter (Device.Reboot resets the simulated MCU,
// whose MCUboot swaps). Slot b holds an image, so that Arm has one to
// upload.
func TestBootControlConformance(t *testing.T) {
	slotstest.TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
		r := newRig(t, rigOptions{})
		stage(t, r.dev, "b", image(30_000, 2, nil))
		return r.dev, []string{"a", "b"}
	})
}
