package attacks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// freeze runs one indefinite-freeze attack on role: role's versions expire
// a day after they are signed, every other role in ten years. After the
// device refreshed its trusted metadata the attacker freezes the repository (a copy served
// from then on) while the publisher ships 1.2.0. Until role expires the
// device cannot tell (no update); from then on it must refuse the frozen
// metadata with ErrUntrusted and go-tuf's ErrExpiredMetadata, write
// nothing, and take the next honest release once it reaches the publisher
// again.
func freeze(t *testing.T, role string) {
	t.Helper()
	const life = 24 * time.Hour
	clk := newClock()
	r := tuftest.New(t, tuftest.WithClock(clk.Now), tuftest.WithExpiry(role, life))
	d := newDevice(t, r, func(c *updater.Config) { c.Now = clk.Now })
	d.trust()

	frozen := r.Mirror()
	release(r, "1.2.0")
	d.cfg = func(c *updater.Config) {
		c.Now = clk.Now
		c.MetadataURL = frozen.URL + "/metadata/"
		c.TargetsURL = frozen.URL + "/targets/"
	}
	d.start()
	before := d.snap()
	clk.Advance(life / 2)
	if _, err := d.u.Check(context.Background()); !errors.Is(err, updater.ErrNoUpdate) {
		t.Fatalf("Check of the frozen repository before %s expires: %v, want ErrNoUpdate", role, err)
	}
	clk.Advance(life/2 + time.Minute)
	err := d.update(context.Background())
	wantErr(t, "update from the frozen repository", err, verify.ErrUntrusted, &metadata.ErrExpiredMetadata{})
	d.assertRefused(before, noWrites)

	// The publisher renews role with the next release; the device reaches
	// it again.
	if role == repository.RoleRoot {
		must(t, r.Repository().Bump(repository.RoleRoot))
	}
	img := release(r, "1.3.0")
	d.cfg = func(c *updater.Config) { c.Now = clk.Now }
	d.start()
	d.mustUpdate("1.3.0", img)
}

// TestFreezeExpiredTimestamp: the server keeps serving a timestamp past
// its expiry.
func TestFreezeExpiredTimestamp(t *testing.T) {
	t.Parallel()
	freeze(t, repository.RoleTimestamp)
}

// TestFreezeExpiredSnapshot: the server keeps serving a snapshot past its
// expiry (with timestamps that are still fresh).
func TestFreezeExpiredSnapshot(t *testing.T) {
	t.Parallel()
	freeze(t, repository.RoleSnapshot)
}

// TestFreezeExpiredTargets: the server keeps serving targets past their
// expiry.
func TestFreezeExpiredTargets(t *testing.T) {
	t.Parallel()
	freeze(t, repository.RoleTargets)
}

// TestFreezeExpiredRoot: the server keeps serving a root past its expiry
// (a device must not go on trusting keys nobody renewed).
func TestFreezeExpiredRoot(t *testing.T) {
	t.Parallel()
	freeze(t, repository.RoleRoot)
}

// TestFreezeClockBeforeIssue: a device without a real-time clock boots in
// 1970, where metadata that expired long ago looks fresh. With
// Config.MinTime set (the build time), the device refuses to judge expiry
// at all: ErrClockUnset, before a request is sent and before a byte is
// written. Once the clock is set, the frozen metadata is refused as
// expired, and the next honest release is taken.
func TestFreezeClockBeforeIssue(t *testing.T) {
	t.Parallel()
	const life = 24 * time.Hour
	clk := newClock()
	built := clk.Now()
	r := tuftest.New(t, tuftest.WithClock(clk.Now), tuftest.WithExpiry(repository.RoleTimestamp, life))
	device := newClock()
	d := newDevice(t, r, func(c *updater.Config) {
		c.Now = device.Now
		c.MinTime = built
	})
	d.trust()

	// The repository is frozen (nothing published for months: its
	// timestamp expired long ago); the device restarts without a clock.
	clk.Advance(90 * 24 * time.Hour)
	device.Set(time.Unix(0, 0))
	d.start()
	before := d.snap()
	requests := r.Requests("")
	err := d.update(context.Background())
	wantErr(t, "update with the clock in 1970", err, verify.ErrClockUnset)
	if got := r.Requests(""); got != requests {
		t.Errorf("%d requests sent with an unset clock, want none", got-requests)
	}
	d.assertRefused(before, noWrites)
	// Confirm's server check fails the same way: a trial is never
	// committed on an unset clock (nothing is armed here, so Confirm
	// has nothing to do and must not fail).
	if err := d.u.Confirm(context.Background()); err != nil {
		t.Errorf("Confirm with nothing armed: %v", err)
	}

	// NTP sets the clock: the frozen metadata is now judged, and refused.
	device.Set(clk.Now())
	err = d.update(context.Background())
	wantErr(t, "update from the frozen repository", err, verify.ErrUntrusted, &metadata.ErrExpiredMetadata{})
	d.assertRefused(before, noWrites)

	img := release(r, "1.2.0")
	d.mustUpdate("1.2.0", img)
}
