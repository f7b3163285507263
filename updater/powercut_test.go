package updater

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

var errPowerCut = errors.New("power cut")

// TestPowerCutAtEveryStep cuts the power at every write of a whole update —
// each slot write and sync, each state save, each bootloader environment
// write of arm, commit and the bootloader's own counting — and checks that
// the device always boots a complete, verified image, loses nothing it had
// committed, and finishes the update after power returns.
func TestPowerCutAtEveryStep(t *testing.T) {
	setCheckpointEvery(t, 64<<10)

	img := image("1.1.0", 300<<10)
	// Two sweeps: the cut at the n-th device write, then at the n-th
	// state save (a save either happened whole or not at all).
	for _, sw := range cutSweeps {
		t.Run(sw.name, func(t *testing.T) {
			powerCutSweep(t, img, sw.atSave)
		})
	}
}

// cutSweeps are the two sweeps of the power cut tests: the cut at the
// n-th device write, then at the n-th state save.
var cutSweeps = []struct {
	name   string
	atSave bool
}{{"device writes", false}, {"state saves", true}}

// cutPowerAt makes the power go at d's n-th device write or, with
// atSave, at its n-th state save. It returns the hook that counts the
// saves, to set again on an updater started after a reboot.
func cutPowerAt(d *device, n int, atSave bool) func() error {
	saves := 0
	hook := func() error {
		if atSave && saves == n {
			d.pc.Cut()
		}
		saves++
		if d.pc.IsCut() {
			return errPowerCut
		}
		return nil
	}
	d.u.st.beforeSave = hook
	if !atSave {
		d.pc.CutAfter(n)
	}
	return hook
}

// confirmAfterPowerOn starts the process after cut n, as at power-on,
// and lets it confirm or roll back what the bootloader booted.
func confirmAfterPowerOn(t *testing.T, d *device, n int) {
	t.Helper()
	d.start()
	if err := d.u.Confirm(context.Background()); err != nil && !errors.Is(err, ErrRolledBack) {
		t.Fatalf("cut %d: confirm after power-on: %v", n, err)
	}
}

// finishAfterPowerOn lets the device finish (or redo) the update to
// version by itself after cut n.
func finishAfterPowerOn(t *testing.T, d *device, n int, version string) {
	t.Helper()
	for i := 0; i < 3 && d.installed() != version; i++ {
		if err := d.update(); err != nil && !errors.Is(err, ErrNoUpdate) {
			t.Fatalf("cut %d: update after power-on: %v", n, err)
		}
		if err := d.reboot(); err != nil {
			t.Fatalf("cut %d: confirm after power-on: %v", n, err)
		}
	}
}

func powerCutSweep(t *testing.T, img []byte, atSave bool) {
	for n := 0; ; n++ {
		repo := tuftest.New(t)
		repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
		repo.Publish()
		d := newDevice(t, repo)
		hook := cutPowerAt(d, n, atSave)

		// The update as it runs, until the power goes.
		err := d.update()
		if err == nil {
			if berr := d.boot.Reboot(); berr == nil {
				d.start()
				d.u.st.beforeSave = hook
				err = d.u.Confirm(context.Background())
			} else {
				err = berr
			}
		}
		if !d.pc.IsCut() {
			if err != nil {
				t.Fatalf("cut after %d writes never happened, and the update failed: %v", n, err)
			}
			if n < 5 {
				t.Fatalf("only %d cut points in a whole update: the test does not cut where it should", n)
			}
			t.Logf("power cut at each of %d points", n)
			return
		}

		// Power returns: the bootloader runs, the process starts.
		d.pc.Restore()
		booted := d.boot.Booted()
		switch booted {
		case "a":
		case "b":
			if !bytes.Equal(d.b.Bytes(), img) {
				t.Fatalf("cut %d: booted slot b, which does not hold the verified image", n)
			}
		default:
			t.Fatalf("cut %d: booted %q: the device does not boot", n, booted)
		}
		confirmAfterPowerOn(t, d, n)
		finishAfterPowerOn(t, d, n, "1.1.0")
		if got := d.installed(); got != "1.1.0" {
			st, _ := d.u.Status(context.Background())
			t.Fatalf("cut %d: installed %q after power-on, want 1.1.0; status %+v", n, got, st)
		}
		if !bytes.Equal(d.b.Bytes(), img) || d.boot.Booted() != "b" {
			t.Fatalf("cut %d: not running the verified image from b", n)
		}
	}
}
