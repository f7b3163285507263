package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestGateway runs the example's scenario and checks its outcomes: the
// gateway updates itself, the edge devices update from the relay with the
// uplink cut, sensor-a firmware reaches the sensor-a MCUs only and crosses
// the network once, the crashing firmware is reverted and blocklisted on
// each MCU, and a tampering relay is refused.
func TestGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("gateway: %v\ntranscript:\n%s", err, out.String())
	}
	for _, want := range []string{
		"gateway: updated itself from the cloud: app 1.1.0 committed",
		"edge-1: app 1.1.0 committed, fetched from the relay with the uplink down",
		"edge-2: app 1.1.0 committed, fetched from the relay with the uplink down",
		"MCUs run: sensor-a1 1.1.0, sensor-a2 1.1.0, sensor-b1 1.0.0",
		"the sensor-a image crossed the network once for 2 MCUs",
		"blocklisted sensor-fw 1.2.0 on sensor-a1",
		"blocklisted sensor-fw 1.2.0 on sensor-a2",
		"sensor-fw 1.2.0 is not retried",
		"edge-1: tampered app 1.2.0 refused",
		"done: every step behaved as described",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, out.String())
		}
	}
}
