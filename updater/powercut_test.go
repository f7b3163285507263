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
	old := checkpointEvery
	checkpointEvery = 64 << 10
	t.Cleanup(func() { checkpointEvery = old })

	img := image("1.1.0", 300<<10)
	// Two sweeps: the cut at the n-th device write, then at the n-th
	// state save (a save either happened whole or not at all).
	for _, atSave := range []bool{false, true} {
		t.Run(map[bool]string{false: "device writes", true: "state saves"}[atSave], func(t *testing.T) {
			powerCutSweep(t, img, atSave)
		})
	}
}

func powerCutSweep(t *testing.T, img []byte, atSave bool) {
	for n := 0; ; n++ {
		repo := tuftest.New(t)
		repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
		repo.Publish()
		d := newDevice(t, repo)
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
		d.start()
		if err := d.u.Confirm(context.Background()); err != nil && !errors.Is(err, ErrRolledBack) {
			t.Fatalf("cut %d: confirm after power-on: %v", n, err)
		}
		// The device finishes (or redoes) the update by itself.
		for range 3 {
			if d.installed() == "1.1.0" {
				break
			}
			if err := d.update(); err != nil && !errors.Is(err, ErrNoUpdate) {
				t.Fatalf("cut %d: update after power-on: %v", n, err)
			}
			if err := d.reboot(); err != nil {
				t.Fatalf("cut %d: confirm after power-on: %v", n, err)
			}
		}
		if got := d.installed(); got != "1.1.0" {
			st, _ := d.u.Status(context.Background())
			t.Fatalf("cut %d: installed %q after power-on, want 1.1.0; status %+v", n, got, st)
		}
		if !bytes.Equal(d.b.Bytes(), img) || d.boot.Booted() != "b" {
			t.Fatalf("cut %d: not running the verified image from b", n)
		}
	}
}
