package smp_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots/smp"
)

// TestClientVersions talks to the MCU in SMP version 1 and 2, and gets
// its errors as DeviceErrors either way.
func TestClientVersions(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, legacy := range []bool{false, true} {
		u, err := smp.NewUDP(smp.UDPConfig{Addr: r.addr, Plain: true})
		if err != nil {
			t.Fatal(err)
		}
		c := smp.NewClient(u, smp.ClientConfig{Timeout: 200 * time.Millisecond, LegacySMP: legacy})
		ctx := context.Background()
		if got, err := c.Echo(ctx, "hi"); err != nil || got != "hi" {
			t.Errorf("legacy %v: Echo = %q, %v", legacy, got, err)
		}
		if _, err := c.ImageTest(ctx, []byte{1, 2, 3}); !smp.IsRC(err, smp.RCNoEnt) {
			t.Errorf("legacy %v: ImageTest of an unknown hash: %v, want rc %d", legacy, err, smp.RCNoEnt)
		}
		p, err := c.Params(ctx)
		if err != nil || p.BufSize != 384 || p.BufCount != 4 {
			t.Errorf("legacy %v: Params = %+v, %v", legacy, p, err)
		}
		c.Close()
	}
}
