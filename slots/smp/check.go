package smp

import (
	"context"
	"encoding/hex"
	"fmt"
)

// ImageCheck is a health check (it satisfies health.HealthCheck) that
// passes when the device answers an SMP echo and its image state reports
// the image the gateway put in the running slot: the same SHA-256 TLV
// and the same version. It is the check to run before committing a trial
// of a device; an application check (a request to an application group,
// a sensor reading) goes beside it.
type ImageCheck struct{ d *Device }

// ImageCheck returns the device's image check.
func (d *Device) ImageCheck() ImageCheck { return ImageCheck{d} }

// Name identifies the check: "smp:<device>:image".
func (c ImageCheck) Name() string { return "smp:" + c.d.cfg.Name + ":image" }

// Check runs the check once.
func (c ImageCheck) Check(ctx context.Context) error {
	d := c.d
	const ping = "switchback"
	if got, err := d.c.Echo(ctx, ping); err != nil {
		return fmt.Errorf("smp: device %s does not answer: %w", d.cfg.Name, err)
	} else if got != ping {
		return fmt.Errorf("smp: device %s echoes %q to %q", d.cfg.Name, got, ping)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	bs, imgs, err := d.status(ctx)
	if err != nil {
		return err
	}
	want := d.st.Slots[bs.Booted]
	if got := hex.EncodeToString(imgs.p.Hash); got != want.Hash {
		return fmt.Errorf("%w: %s: slot %s runs image %.16s…, gateway installed %.16s…", ErrWrongImage, d.cfg.Name, bs.Booted, got, want.Hash)
	}
	if imgs.p.Version != want.Version {
		return fmt.Errorf("%w: %s: slot %s runs version %q, gateway installed %q", ErrWrongImage, d.cfg.Name, bs.Booted, imgs.p.Version, want.Version)
	}
	return nil
}
