package smp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/switchback-ota/switchback/slots"
)

// ErrUnknownImage is returned when the device runs an image on test that
// the gateway did not arm.
var ErrUnknownImage = errors.New("smp: device runs an image the gateway does not know")

// Status asks the device for its image state and reports it in slot
// names: Booted is the slot whose image runs; Primary the one MCUboot
// runs after the next reset unless a test is pending (the confirmed image,
// or, while a test image runs, the one it would revert to); Trial the slot
// pending for test or running unconfirmed. The first time the device
// runs a confirmed image the gateway does not know (its factory image),
// the image is adopted as the primary slot's.
func (d *Device) Status(ctx context.Context) (slots.BootStatus, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bs, _, err := d.status(ctx)
	return bs, err
}

// devImages is the device's image state at one instant.
type devImages struct{ p, s *ImageInfo }

func (d *Device) status(ctx context.Context) (slots.BootStatus, devImages, error) {
	list, err := d.c.ImageState(ctx)
	if err != nil {
		return slots.BootStatus{}, devImages{}, fmt.Errorf("smp: device %s: image state: %w", d.cfg.Name, err)
	}
	p, s := images(list)
	next, bs, err := deriveStatus(d.st, p, s)
	if err != nil {
		return bs, devImages{p, s}, fmt.Errorf("smp: device %s: %w", d.cfg.Name, err)
	}
	if !equalState(next, d.st) {
		d.log.Info("state reconciled with the device", "primary", next.Primary, "booted", bs.Booted)
		d.st = next
		if err := d.save(); err != nil {
			return bs, devImages{p, s}, err
		}
	}
	return bs, devImages{p, s}, nil
}

// deriveStatus maps the device's image state onto slot names. It returns
// the gateway state reconciled with the device (a factory image adopted,
// a commit the gateway did not record) and the status.
func deriveStatus(st devState, p, s *ImageInfo) (devState, slots.BootStatus, error) {
	next := st
	next.Slots = maps.Clone(st.Slots)
	if next.Slots == nil {
		next.Slots = map[string]slotRecord{}
	}
	if p == nil {
		return st, slots.BootStatus{}, errors.New("device reports no image in its primary slot")
	}
	bs := slots.BootStatus{Bad: slices.Clone(st.Bad)}
	if !p.Confirmed {
		// A test image runs: the trial armed last. MCUboot reverts to the
		// image in the secondary slot at the next reset.
		bs.Booted = st.Trial
		if bs.Booted == "" {
			bs.Booted = st.nameOf(p.Hash, "")
		}
		if bs.Booted == "" {
			return st, bs, fmt.Errorf("%w: image %x runs on test", ErrUnknownImage, p.Hash)
		}
		bs.Primary, bs.Trial = other(bs.Booted), bs.Booted
		if st.Trial == bs.Booted {
			bs.TriesLeft = st.Tries
		}
		return next, bs, nil
	}
	name := st.nameOf(p.Hash, st.Primary)
	if name == "" {
		// A confirmed image the gateway does not know: the factory image,
		// or one installed by other means. It is the primary now.
		name = st.Primary
		next.Slots[name] = slotRecord{Hash: hex.EncodeToString(p.Hash), Version: p.Version}
	}
	next.Primary = name
	if next.Trial == name {
		next.Trial, next.Tries = "", 0 // confirmed: committed on the device
	}
	bs.Booted, bs.Primary = name, name
	switch {
	case s != nil && s.Pending:
		bs.Trial = other(name)
		bs.TriesLeft = 1
		if st.Trial == bs.Trial {
			bs.TriesLeft = max(st.Tries, 1)
		}
	case next.Trial != "":
		// Armed once, and back on the primary: the trial ran out (or never
		// ran), for the caller to mark bad.
		bs.Trial = next.Trial
	}
	return next, bs, nil
}

func equalState(a, b devState) bool {
	return a.Primary == b.Primary && a.Trial == b.Trial && a.Tries == b.Tries && maps.Equal(a.Slots, b.Slots)
}

// Arm makes slot the trial: its staged image is parsed and checked,
// uploaded to the device's secondary slot unless the device holds it
// already, and marked for test. It runs at the next reset. MCUboot grants
// one start; tries beyond it are granted by [Device.Reset].
func (d *Device) Arm(ctx context.Context, slot string, tries int) error {
	if err := d.known(slot); err != nil {
		return err
	}
	if tries < 1 {
		return fmt.Errorf("smp: device %s: arm %s with %d tries: need at least one", d.cfg.Name, slot, tries)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	bs, imgs, err := d.status(ctx)
	if err != nil {
		return err
	}
	if slot == bs.Booted || slot == bs.Primary {
		return fmt.Errorf("smp: device %s: arm %s: %w", d.cfg.Name, slot, slots.ErrSlotActive)
	}
	im, err := d.slots[slices.Index(slotNames, slot)].parse()
	if err != nil {
		return fmt.Errorf("smp: device %s: arm %s: %w", d.cfg.Name, slot, err)
	}
	if d.cfg.PublicKey != nil {
		if err := im.VerifyEd25519(d.cfg.PublicKey); err != nil {
			return fmt.Errorf("smp: device %s: arm %s: %w", d.cfg.Name, slot, err)
		}
	}
	if imgs.s == nil || !bytes.Equal(imgs.s.Hash, im.Hash) {
		if err := d.upload(ctx, slot, im, imgs.s); err != nil {
			return err
		}
	}
	// Recorded before the test mark: a device never boots an image on
	// test that the state file does not name.
	d.st.Slots[slot] = slotRecord{Hash: hex.EncodeToString(im.Hash), Version: im.Version.String()}
	d.st.Trial, d.st.Tries = slot, tries
	d.st.Bad = slices.DeleteFunc(d.st.Bad, func(s string) bool { return s == slot })
	if err := d.save(); err != nil {
		return err
	}
	if _, err := d.c.ImageTest(ctx, im.Hash); err != nil {
		return fmt.Errorf("smp: device %s: mark %s for test: %w", d.cfg.Name, slot, err)
	}
	d.log.Info("armed", "slot", slot, "version", im.Version.String(), "tries", tries)
	return nil
}

// upload sends the staged image of slot to the device's secondary slot
// and checks that the device reports it there.
func (d *Device) upload(ctx context.Context, slot string, im *Image, sec *ImageInfo) error {
	if sec != nil && sec.Pending {
		// A different image waits for test: MCUboot has no way to cancel
		// that but to run it out (reset to test it, reset to revert it).
		if err := d.runOut(ctx); err != nil {
			return err
		}
	}
	buf, err := d.bufSize(ctx)
	if err != nil {
		return err
	}
	f, err := os.Open(d.slots[slices.Index(slotNames, slot)].path())
	if err != nil {
		return err
	}
	defer f.Close()
	sum, err := fileSHA256(f, im.Size)
	if err != nil {
		return err
	}
	d.log.Info("upload", "slot", slot, "bytes", im.Size, "buffer", buf)
	if err := d.c.Upload(ctx, f, im.Size, UploadOptions{BufSize: buf, SHA: sum, Progress: d.cfg.Progress}); err != nil {
		return fmt.Errorf("smp: device %s: %w", d.cfg.Name, err)
	}
	list, err := d.c.ImageState(ctx)
	if err != nil {
		return fmt.Errorf("smp: device %s: image state after upload: %w", d.cfg.Name, err)
	}
	if _, s := images(list); s == nil || !bytes.Equal(s.Hash, im.Hash) {
		return fmt.Errorf("%w: %s: secondary slot does not hold image %x after upload", ErrWrongImage, d.cfg.Name, im.Hash)
	}
	return nil
}

// bufSize is the device's SMP buffer size, asked once per boot of the
// device (new firmware may have other buffers).
func (d *Device) bufSize(ctx context.Context) (int, error) {
	if d.buf > 0 {
		return d.buf, nil
	}
	p, err := d.c.Params(ctx)
	if err != nil {
		return 0, fmt.Errorf("smp: device %s: MCUmgr parameters: %w", d.cfg.Name, err)
	}
	if p.BufSize < 64 {
		return 0, fmt.Errorf("smp: device %s: buffer of %d bytes is too small", d.cfg.Name, p.BufSize)
	}
	d.buf = int(p.BufSize)
	return d.buf, nil
}

// Commit confirms the image that runs in slot, after checking that the
// device reports the image the gateway put there.
func (d *Device) Commit(ctx context.Context, slot string) error {
	if err := d.known(slot); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	bs, imgs, err := d.status(ctx)
	if err != nil {
		return err
	}
	if slot != bs.Booted {
		return fmt.Errorf("smp: device %s: commit %s while %s runs: %w", d.cfg.Name, slot, bs.Booted, slots.ErrNotRunning)
	}
	if want := d.st.Slots[slot].Hash; want != hex.EncodeToString(imgs.p.Hash) {
		return fmt.Errorf("%w: %s: slot %s should run %.16s…, device reports %x", ErrWrongImage, d.cfg.Name, slot, want, imgs.p.Hash)
	}
	if !imgs.p.Confirmed {
		if _, err := d.c.ImageConfirm(ctx); err != nil {
			return fmt.Errorf("smp: device %s: confirm %s: %w", d.cfg.Name, slot, err)
		}
	}
	d.st.Primary = slot
	if d.st.Trial == slot {
		d.st.Trial, d.st.Tries = "", 0
	}
	d.st.Bad = slices.DeleteFunc(d.st.Bad, func(s string) bool { return s == slot })
	d.log.Info("committed", "slot", slot, "version", d.st.Slots[slot].Version)
	return d.save()
}

// MarkBad records slot as bad and ends its trial: a trial that runs is
// reverted by a reset; one still pending is run out (MCUboot cannot
// cancel a pending test: it is swapped in and swapped back). The
// committed image cannot be marked bad: MCUboot has nothing to go back to.
func (d *Device) MarkBad(ctx context.Context, slot string) error {
	if err := d.known(slot); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	bs, _, err := d.status(ctx)
	if err != nil {
		return err
	}
	if slot == bs.Primary && bs.Trial != slot {
		return fmt.Errorf("smp: device %s: mark %s bad: it is the committed image: %w", d.cfg.Name, slot, slots.ErrSlotActive)
	}
	if !slices.Contains(d.st.Bad, slot) {
		d.st.Bad = append(d.st.Bad, slot)
	}
	if d.st.Trial == slot {
		d.st.Trial, d.st.Tries = "", 0
	}
	if err := d.save(); err != nil {
		return err
	}
	d.log.Warn("marked bad", "slot", slot)
	switch {
	case bs.Trial == slot && bs.Booted == slot:
		return d.resetWait(ctx)
	case bs.Trial == slot:
		return d.runOut(ctx)
	}
	return nil
}

// runOut resets twice: MCUboot swaps the pending test image in, then
// back.
func (d *Device) runOut(ctx context.Context) error {
	if err := d.resetWait(ctx); err != nil {
		return err
	}
	return d.resetWait(ctx)
}

// Reset resets the device and waits until it answers again, after the
// swap MCUboot may do. A running, unconfirmed trial with tries left gets
// another start: MCUboot reverts it at this reset, so it is marked for
// test again and the device reset once more. A pending trial consumes a
// try.
func (d *Device) Reset(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	bs, imgs, err := d.status(ctx)
	if err != nil && d.cfg.PowerCycle == nil {
		return err
	}
	if err == nil && d.st.Trial != "" && bs.Trial == d.st.Trial {
		if bs.Booted == bs.Trial && d.st.Tries > 0 {
			return d.retry(ctx, imgs.p.Hash)
		}
		if bs.Booted != bs.Trial && d.st.Tries > 0 {
			d.st.Tries--
			if err := d.save(); err != nil {
				return err
			}
		}
	}
	return d.resetWait(ctx)
}

// retry grants a running trial one more start.
func (d *Device) retry(ctx context.Context, hash []byte) error {
	if err := d.resetWait(ctx); err != nil {
		return err
	}
	if _, err := d.c.ImageTest(ctx, hash); err != nil {
		return fmt.Errorf("smp: device %s: mark the trial for test again: %w", d.cfg.Name, err)
	}
	d.st.Tries--
	if err := d.save(); err != nil {
		return err
	}
	return d.resetWait(ctx)
}

// Reboot resets the device ([Device.Reset]) within its ResetTimeout: the
// simulated-bootloader hook of slotstest.TestBootControl.
func (d *Device) Reboot() error {
	return d.Reset(context.Background())
}

// resetWait asks the device to reset and waits until it answers again.
// A reset request is sent once (see Client.Reset); when a swap was due
// and the device answers with the same image state, the request was lost
// and is sent again.
func (d *Device) resetWait(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ResetTimeout)
	defer cancel()
	before, _ := d.c.ImageState(ctx)
	for attempt := 1; ; attempt++ {
		after, err := d.resetOnce(ctx)
		if err != nil {
			return err
		}
		if !swapDue(before) || !sameState(before, after) {
			return nil
		}
		if attempt == 3 {
			return fmt.Errorf("smp: device %s: a swap is due, but the device does not reset", d.cfg.Name)
		}
		d.log.Warn("device state unchanged after a reset: resetting again")
	}
}

// resetOnce sends one reset request (or cycles the power when the device
// does not answer) and waits for the device's image state.
func (d *Device) resetOnce(ctx context.Context) ([]ImageInfo, error) {
	d.buf = 0
	err := d.c.Reset(ctx)
	if errors.Is(err, ErrNoResponse) && d.cfg.PowerCycle != nil {
		d.log.Warn("no answer to reset: power cycling")
		err = d.cfg.PowerCycle(ctx)
	}
	if err != nil && !errors.Is(err, ErrNoResponse) {
		return nil, fmt.Errorf("smp: device %s: reset: %w", d.cfg.Name, err)
	}
	select {
	case <-time.After(d.cfg.ResetGrace):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return d.waitAnswer(ctx)
}

// swapDue reports whether MCUboot swaps at the next reset: an image is
// pending, or a test image runs unconfirmed.
func swapDue(list []ImageInfo) bool {
	p, s := images(list)
	return p != nil && !p.Confirmed || s != nil && s.Pending
}

func sameState(a, b []ImageInfo) bool {
	return slices.EqualFunc(a, b, func(x, y ImageInfo) bool {
		return x.Slot == y.Slot && bytes.Equal(x.Hash, y.Hash) && x.Pending == y.Pending && x.Confirmed == y.Confirmed
	})
}

// waitAnswer polls the device until it answers an image state request.
func (d *Device) waitAnswer(ctx context.Context) ([]ImageInfo, error) {
	poll := min(d.c.timeout, 250*time.Millisecond)
	for {
		pctx, cancel := context.WithTimeout(ctx, poll)
		list, err := d.c.ImageState(pctx)
		cancel()
		if err == nil {
			return list, nil
		}
		var de *DeviceError
		if errors.As(err, &de) {
			return nil, fmt.Errorf("smp: device %s: after reset: %w", d.cfg.Name, err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("smp: device %s: no answer after reset: %w (last: %w)", d.cfg.Name, ctx.Err(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ slots.BootControl = (*Device)(nil)
