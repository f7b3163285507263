package smp_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/smp"
)

// dropFirstReset drops the first reset packet (request or response) it
// sees.
func dropFirstReset() func([]byte) bool {
	var dropped atomic.Bool
	return func(p []byte) bool {
		h, _, err := smp.DecodePacket(p)
		if err != nil || h.Group != smp.GroupOS || h.ID != smp.CmdReset {
			return false
		}
		return dropped.CompareAndSwap(false, true)
	}
}

// TestResetLost: a lost reset request is sent again (the swap that was
// due did not happen); a lost reset response is not (sending it again
// would reset the trial away).
func TestResetLost(t *testing.T) {
	for _, dir := range []string{"request", "response"} {
		t.Run(dir, func(t *testing.T) {
			r := newRig(t, rigOptions{})
			l := newLink(t, r.addr, func(l *link) {
				if dir == "request" {
					l.dropUp = dropFirstReset()
				} else {
					l.dropDown = dropFirstReset()
				}
			})
			d := resumeDevice(t, l.pc.LocalAddr().String(), nil)
			v2 := image(20_000, 2, nil)
			stage(t, d, "b", v2)
			ctx := context.Background()
			if err := d.Arm(ctx, "b", 1); err != nil {
				t.Fatal(err)
			}
			boots := r.mcu.Boots()
			if err := d.Reset(ctx); err != nil {
				t.Fatal(err)
			}
			if got := r.mcu.Boots() - boots; got != 1 {
				t.Errorf("MCU booted %d times, want once", got)
			}
			wantStatus(t, d, slots.BootStatus{Booted: "b", Primary: "a", Trial: "b"})
			wantRunning(t, r.mcu, v2)
		})
	}
}
