package updater

import (
	"context"
	"slices"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

// TestEventsBeforeRestart: the application sees "armed" before Restart
// replaces its process. Since events were queued (delivered outside the
// lock), Restart ran before they were delivered and the QEMU agent's
// transcript lost its "armed" line.
func TestEventsBeforeRestart(t *testing.T) {
	repo := tuftest.New(t)
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 64<<10), custom("1.1.0"))
	repo.Publish()
	d := newDevice(t, repo)
	var armedSeen []bool
	d.cfg = func(c *Config) {
		c.Restart = func(context.Context, string) error {
			armedSeen = append(armedSeen, slices.Contains(d.states(), StateArmed))
			return nil
		}
	}
	d.start()
	if err := d.u.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(armedSeen) != 1 || !armedSeen[0] {
		t.Fatalf("Restart called %d time(s); armed event delivered before it: %v", len(armedSeen), armedSeen)
	}
}
