package updater

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/internal/tuftest"
)

// TestAllowDowngradeDoesNotAlternate: with 1.2.0 installed and 1.1.0 and
// 1.2.0 published, AllowDowngrade must not take 1.1.0 (devices alternated
// between the two at every poll); once 1.2.0 is pulled, it does.
func TestAllowDowngradeDoesNotAlternate(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	d.cfg = func(c *Config) { c.AllowDowngrade = true }
	d.start()
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 4096), custom("1.1.0"))
	repo.AddTarget("rootfs/1.2.0.img", image("1.2.0", 4096), custom("1.2.0"))
	repo.Publish()
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := d.reboot(); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if got := d.installed(); got != "1.2.0" {
		t.Fatalf("installed = %q, want 1.2.0", got)
	}
	if ups, err := d.u.Check(context.Background()); !errors.Is(err, ErrNoUpdate) {
		t.Fatalf("Check with 1.2.0 installed and published = %v, %v; want ErrNoUpdate", ups, err)
	}
	repo.RemoveTarget("rootfs/1.2.0.img")
	repo.Publish()
	ups, err := d.u.Check(context.Background())
	if err != nil || len(ups) != 1 || ups[0].To != "1.1.0" {
		t.Fatalf("Check after 1.2.0 was pulled = %v, %v; want 1.1.0", ups, err)
	}
}

// TestConfirmAbandonsHungHealthCheck: a health check that ignores its
// context must not hang Confirm: at ConfirmTimeout it counts as failed and
// the trial is rolled back.
func TestConfirmAbandonsHungHealthCheck(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 4096), custom("1.1.0"))
	repo.Publish()
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	d.cfg = func(c *Config) {
		c.ConfirmTimeout = 50 * time.Millisecond
		c.HealthChecks = append(c.HealthChecks, health.Func("hung", func(context.Context) error {
			<-release // ignores its context
			return nil
		}))
	}
	done := make(chan error, 1)
	go func() { done <- d.reboot() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Confirm still waits for a health check that ignores its context")
	}
	if !errors.Is(err, ErrRolledBack) || !errors.Is(err, ErrHealth) {
		t.Fatalf("Confirm = %v, want ErrRolledBack and ErrHealth", err)
	}
	if bs, _ := d.boot.Status(context.Background()); bs.Primary != "a" {
		t.Errorf("after the hung check: %+v, want a primary", bs)
	}
}
