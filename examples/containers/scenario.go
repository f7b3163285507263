package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/updater"
)

func (d *demo) scenario(ctx context.Context) error {
	steps := []func(context.Context) error{d.step1, d.step2, d.step3, d.step4, d.fullPull}
	for _, s := range steps {
		if err := s(ctx); err != nil {
			return err
		}
	}
	d.tr.say("done: every step behaved as described")
	return nil
}

// expectRunning fails unless the container runs version want.
func (d *demo) expectRunning(ctx context.Context, want string) error {
	got, err := d.running(ctx)
	if err != nil || got != want {
		return fmt.Errorf("%w: running %q (%v), want %q", errStep, got, err, want)
	}
	d.tr.say("device: the container runs app %s and answers its check", got)
	return nil
}

func (d *demo) step1(ctx context.Context) error {
	d.tr.say("--- 1. v1: installed, started with runc, healthy, committed")
	if err := d.release(ctx, "v1", "1.0.0", healthyCmd); err != nil {
		return err
	}
	if ierr, cerr := d.cycle(ctx); ierr != nil || cerr != nil {
		return fmt.Errorf("v1: install %v, confirm %v", ierr, cerr)
	}
	p := d.comp.LastPull()
	d.tr.say("device: pulled %d bytes for an image of %d bytes (nothing was on the device)", p.Fetched, p.ImageSize)
	return d.expectRunning(ctx, "1.0.0")
}

func (d *demo) step2(ctx context.Context) error {
	d.tr.say("--- 2. v2 changes one layer")
	if err := d.release(ctx, "v2", "2.0.0", healthyCmd); err != nil {
		return err
	}
	if ierr, cerr := d.cycle(ctx); ierr != nil || cerr != nil {
		return fmt.Errorf("v2: install %v, confirm %v", ierr, cerr)
	}
	p := d.comp.LastPull()
	d.tr.say("device: moved %d bytes for an image of %d bytes (%.2f%%): %d blobs were already here",
		p.Fetched, p.ImageSize, 100*float64(p.Fetched)/float64(p.ImageSize), p.Reused)
	return d.expectRunning(ctx, "2.0.0")
}

func (d *demo) step3(ctx context.Context) error {
	d.tr.say("--- 3. v3: signed, then its layer swapped in the registry")
	if err := d.release(ctx, "v3", "3.0.0", healthyCmd); err != nil {
		return err
	}
	layer, err := d.topLayer(ctx, "v3")
	if err != nil {
		return err
	}
	if err := d.reg.SwapBlob(layer); err != nil {
		return err
	}
	ierr, _ := d.cycle(ctx)
	if ierr == nil {
		return fmt.Errorf("%w: v3 with a swapped layer was installed", errStep)
	}
	d.tr.say("device: refused: %v", ierr)
	return d.expectRunning(ctx, "2.0.0")
}

func (d *demo) step4(ctx context.Context) error {
	d.tr.say("--- 4. v4 crashes on start")
	if err := d.repo.RemoveTarget("app/3.0.0/manifest.json"); err != nil {
		return err
	}
	if err := d.release(ctx, "v4", "4.0.0", crashCmd); err != nil {
		return err
	}
	if _, cerr := d.cycle(ctx); !errors.Is(cerr, updater.ErrRolledBack) {
		return fmt.Errorf("%w: v4 confirm: %v, want a rollback", errStep, cerr)
	}
	d.tr.say("device: v4 failed its check and was rolled back")
	if err := d.expectRunning(ctx, "2.0.0"); err != nil {
		return err
	}
	u, err := d.updater()
	if err != nil {
		return err
	}
	defer u.Close()
	if _, err := u.Check(ctx); !errors.Is(err, updater.ErrNoUpdate) {
		return fmt.Errorf("%w: after the rollback Check says %v, want no update (v4 blocklisted)", errStep, err)
	}
	d.tr.say("device: v4 is blocklisted: the next check finds nothing to install")
	return nil
}

// fullPull copies v2 into an empty store with skopeo, for comparison.
func (d *demo) fullPull(ctx context.Context) error {
	dst := filepath.Join(d.work, "skopeo-v2")
	if err := d.reg.SkopeoCopy(ctx, imageRepo, "v2", dst); err != nil {
		return err
	}
	d.tr.say("compare: skopeo copy of v2 into an empty store moved %d bytes (blobs %d)", dirSize(dst), dirSize(filepath.Join(dst, "blobs")))
	return nil
}

// dirSize sums the sizes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
