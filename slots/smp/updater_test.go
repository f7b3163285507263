package smp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// TestUpdater plugs a Device into updater.Component as it is: the updater
// downloads and verifies a TUF target into slot b, Arm uploads it to the
// MCU, the restart hook resets the MCU, and Confirm commits after the
// image check. A release whose application crashes is reverted by MCUboot
// and blocklisted; one that fails the image check is marked bad, reverted
// and blocklisted.
func TestUpdater(t *testing.T) {
	ctx := context.Background()
	const hw = "mcu-a"
	repo := tuftest.New(t)
	r := newRig(t, rigOptions{mcu: smptest.Config{App: func(im *smp.Image) smptest.Behavior {
		b := smptest.Behavior{Crash: im.Version.Major == 3}
		if im.Version.Major == 4 {
			b.ReportHash = make([]byte, 32)
		}
		return b
	}}})
	u, err := updater.New(updater.Config{
		Hardware: hw, StateDir: t.TempDir(), TrustedRoot: repo.Root(),
		MetadataURL: repo.MetadataURL(), TargetsURL: repo.TargetsURL(),
		Components:     []updater.Component{{Name: "sensor", Slots: r.dev.Slots(), Boot: r.dev, FactoryVersion: "1.1.2"}},
		HealthChecks:   []health.HealthCheck{r.dev.ImageCheck()},
		Restart:        func(ctx context.Context, _ string) error { return r.dev.Reset(ctx) },
		ConfirmTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	install := func(major uint8, version string) {
		t.Helper()
		img := image(60_000, major, nil)
		path := "sensor/" + version + "/sensor.bin"
		repo.AddTarget(path, img, verify.Custom{Component: "sensor", Version: version, Hardware: []string{hw}})
		repo.Publish()
		ups, err := u.Check(ctx)
		if err != nil || len(ups) != 1 {
			t.Fatalf("Check: %v, %v", ups, err)
		}
		if err := u.Install(ctx, ups[0]); err != nil {
			t.Fatalf("Install %s: %v", version, err)
		}
	}

	install(2, "2.1.2")
	if err := u.Confirm(ctx); err != nil {
		t.Fatalf("Confirm 2.1.2: %v", err)
	}
	wantRunning(t, r.mcu, image(60_000, 2, nil))
	st, err := u.Status(ctx)
	if err != nil || st.Components[0].Installed != "2.1.2" {
		t.Fatalf("Status: %+v, %v", st, err)
	}

	install(3, "3.1.2") // crashes at start: MCUboot reverts
	if err := u.Confirm(ctx); !errors.Is(err, updater.ErrRolledBack) {
		t.Fatalf("Confirm 3.1.2: %v, want ErrRolledBack", err)
	}
	wantRunning(t, r.mcu, image(60_000, 2, nil))
	st, err = u.Status(ctx)
	if err != nil || st.Components[0].Installed != "2.1.2" || len(st.Blocklist) != 1 || st.Blocklist[0].Version != "3.1.2" {
		t.Fatalf("Status after the rollback: %+v, %v", st, err)
	}
	if ups, err := u.Check(ctx); !errors.Is(err, updater.ErrNoUpdate) {
		t.Errorf("Check after the rollback: %v, %v; want ErrNoUpdate (blocklisted)", ups, err)
	}

	install(4, "4.1.2") // runs, but reports another hash: the check fails
	if err := u.Confirm(ctx); !errors.Is(err, updater.ErrRolledBack) || !errors.Is(err, smp.ErrWrongImage) {
		t.Fatalf("Confirm 4.1.2: %v, want ErrRolledBack and ErrWrongImage", err)
	}
	wantRunning(t, r.mcu, image(60_000, 2, nil))
	st, err = u.Status(ctx)
	if err != nil || st.Components[0].Installed != "2.1.2" || len(st.Blocklist) != 2 {
		t.Fatalf("Status after the failed check: %+v, %v", st, err)
	}
}
