package smptest_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// waitSettled waits until the MCU runs or has lost power.
func waitSettled(t *testing.T, m *smptest.MCU) (running bool) {
	t.Helper()
	for deadline := time.Now().Add(settleTimeout); time.Now().Before(deadline); {
		if _, _, ok := m.Running(); ok {
			return true
		}
		if !m.Powered() {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("MCU neither runs nor is off: %q", m.Events())
	return false
}

// TestSwapPowerCut cuts the power at every flash operation of a test swap
// and of a revert swap. After power on, MCUboot finishes the swap it was
// doing: the test image runs unconfirmed (or, for a revert, the old image
// runs confirmed), both images whole.
func TestSwapPowerCut(t *testing.T) {
	v1 := smptest.BuildImage(body(9_000, 1), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1}})
	v2 := smptest.BuildImage(body(11_000, 2), smptest.ImageOptions{Version: smp.ImageVersion{Major: 2}})
	ctx := context.Background()
	for _, phase := range []string{"test", "revert"} {
		t.Run(phase, func(t *testing.T) {
			for n := 0; ; n++ {
				m, c := newMCU(t, smptest.Config{Factory: v1, Logf: func(string, ...any) {}})
				upload(t, c, v2)
				if _, err := c.ImageTest(ctx, state(t, c)[1].Hash); err != nil {
					t.Fatal(err)
				}
				if phase == "revert" {
					if err := c.Reset(ctx); err != nil {
						t.Fatal(err)
					}
					waitSettled(t, m)
				}
				m.CutAfter(n)
				if err := c.Reset(ctx); err != nil {
					t.Fatal(err)
				}
				done := waitSettled(t, m)
				if !done {
					m.PowerOn()
					if !waitSettled(t, m) {
						t.Fatalf("cut after %d operations: MCU does not start again: %q", n, m.Events())
					}
				}
				s := state(t, c)
				want0, want1 := "2.0.0", "1.0.0"
				if phase == "revert" {
					want0, want1 = want1, want0
				}
				if s[0].Version != want0 || s[0].Confirmed != (phase == "revert") || s[1].Version != want1 || s[1].Pending {
					t.Fatalf("cut after %d operations of the %s swap: state %+v; events %q", n, phase, s, m.Events())
				}
				m.Close()
				if done {
					t.Logf("%s swap: cut at each of its %d flash operations", phase, n)
					return
				}
			}
		})
	}
}
