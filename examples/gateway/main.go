// Command gateway shows a gateway updating the devices behind it, in one
// process, with no root and no network beyond 127.0.0.1.
//
// The cloud is a signed TUF repository served on 127.0.0.1. The gateway
// updates its own application from it, runs a verified relay (HTTPS with
// its own CA) and updates three simulated MCUs over SMP on DTLS: two of
// kind sensor-a, one of kind sensor-b, all following the release line
// "sensor-fw". Two Linux edge devices run ordinary updaters whose only
// mirror is the relay, the gateway CA pinned. The transcript shows:
//
//  1. the gateway updates itself (app 1.1.0, committed);
//  2. the uplink is cut; the edge devices still update from the relay;
//  3. sensor-fw 1.1.0 for sensor-a reaches the two sensor-a MCUs, read
//     once from the relay, and never the sensor-b MCU;
//  4. sensor-fw 1.2.0 crashes at start: MCUboot reverts it, and it is
//     blocklisted on each MCU that tried it;
//  5. a relay serving a tampered file is refused by the edge device.
//
// It exits 0 only if every step behaved as described. Run it with:
//
//	go run ./examples/gateway
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gateway example FAILED:", err)
		os.Exit(1)
	}
}

// transcript prints timed lines.
type transcript struct {
	mu    sync.Mutex // events arrive from the updaters' goroutines
	w     io.Writer
	start time.Time
}

func (t *transcript) say(format string, a ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "[%6.2fs] %s\n", time.Since(t.start).Seconds(), fmt.Sprintf(format, a...))
}

func run(ctx context.Context, out io.Writer) error {
	tr := &transcript{w: out, start: time.Now()}
	work, err := os.MkdirTemp("", "switchback-gateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	w, err := newWorld(ctx, tr, work)
	if err != nil {
		return err
	}
	defer w.close()
	for _, step := range []func(context.Context) error{
		w.gatewayUpdatesItself,
		w.edgeDevicesUpdateWithUplinkDown,
		w.mcusOfKindAUpdate,
		w.crashingFirmwareReverted,
		w.tamperedRelayRefused,
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	tr.say("done: every step behaved as described")
	return nil
}
