package updater

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// Install downloads up into a slot that is not running, verifies every
// byte against the signed target, and arms a trial of it. Nothing is
// activated unless verification passed. An interrupted Install of the same
// release resumes where it stopped. After a successful Install the new
// version starts on the next restart, and Confirm decides there whether it
// stays: Install calls Config.Restart, or, when it is nil (or fails),
// returns an error wrapping ErrRestartRequired with the trial armed.
func (u *Updater) Install(ctx context.Context, up Update) error {
	if err := u.locked(func() error { return u.install(ctx, up) }); err != nil {
		return err
	}
	return u.restart(ctx, up.Component)
}

// restart asks Config.Restart to start the version the boot control now
// selects. It is called without the lock, after the events of the step
// that asked for it were delivered: an application sees "armed" (or
// "rolled back") before its process is replaced. Without one, or when it fails, the caller gets an error
// wrapping ErrRestartRequired: the restart is theirs to do.
func (u *Updater) restart(ctx context.Context, comp string) error {
	if u.cfg.Restart == nil {
		u.log.Info("restart required", "component", comp)
		return fmt.Errorf("%w (component %s)", ErrRestartRequired, comp)
	}
	if err := u.cfg.Restart(ctx, comp); err != nil {
		return fmt.Errorf("updater: restart %s: %w: %w", comp, ErrRestartRequired, err)
	}
	return nil
}

// install runs the path of one update up to the armed trial: resolve the
// target against the trusted metadata, record the pending install, transfer
// and verify it, then arm the slot.
func (u *Updater) install(ctx context.Context, up Update) (err error) {
	c, ok := u.comp[up.Component]
	if !ok {
		return fmt.Errorf("updater: install: unknown component %q", up.Component)
	}
	if err := u.checkStorage(); err != nil {
		return fmt.Errorf("updater: install: %w", err)
	}
	t, err := u.trustedTarget(ctx, c, up)
	if err != nil {
		return err
	}
	up.To = t.Custom.Version
	slot, bs, err := u.targetSlot(ctx, c)
	if err != nil {
		return err
	}
	pd, err := u.beginPending(c, slot, t)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			u.emit(ErrorEvent{Component: c.Name, Op: "install", Err: err})
		}
	}()
	// A transfer verified by an earlier process, or resumed from bytes an
	// earlier run wrote, trusts a slot that may have changed since.
	resumed := pd.Phase == PhaseVerified
	if pd.Phase == PhaseDownloading {
		if err := u.download(ctx, c, slot, t, pd, bs); err != nil {
			return err
		}
		resumed = pd.resumed
	}
	if resumed || u.cfg.ReadBack {
		if err := u.readBackSlot(ctx, c, slot, t, pd); err != nil {
			return err
		}
	}
	return u.arm(ctx, c, slot, t, pd)
}

// readBackSlot reads the whole image back from the slot and checks it
// against the image digest before the slot is armed. A mismatch is the
// device's storage, not the release: nothing is counted against the
// release, and the transfer starts over from byte zero at the next Install.
func (u *Updater) readBackSlot(ctx context.Context, c *Component, slot slots.Slot, t verify.Target, pd *pending) error {
	err := readBack(ctx, slot, t, pd.Length)
	if err == nil {
		return nil
	}
	if !errors.Is(err, verify.ErrVerification) && !errors.Is(err, slots.ErrEmpty) {
		// The slot could not be read: the next Install reads it again.
		return fmt.Errorf("updater: install %s %s: %w", c.Name, t.Custom.Version, err)
	}
	pd.Phase, pd.Method = PhaseDownloading, ""
	pd.resetTransfer()
	cs := u.st.component(c.Name)
	sc := cs.Slots[slot.Name()]
	sc.Complete = false
	cs.Slots[slot.Name()] = sc
	if serr := u.st.save(); serr != nil {
		return serr
	}
	err = fmt.Errorf("updater: install %s %s: %w: %w", c.Name, t.Custom.Version, ErrSlotChanged, err)
	u.changed(c.Name, StateVerified, StateFailed, t.Custom.Version, t.Path, err.Error())
	return err
}

// trustedTarget returns the trusted copy of up.Target, after applying the
// selection rules again: Install never takes the caller's word for a
// target's hashes or custom metadata.
func (u *Updater) trustedTarget(ctx context.Context, c *Component, up Update) (verify.Target, error) {
	t := up.Target
	sha := t.SHA256()
	if sha == "" {
		return t, fmt.Errorf("updater: install %s: target %s lists no sha256: %w", c.Name, t.Path, verify.ErrVerification)
	}
	if u.st.blockedFor(c.Name)(sha) {
		return t, fmt.Errorf("updater: install %s %s: release is blocklisted after an earlier failure", c.Name, up.To)
	}
	if u.trusted[t.Path] != sha {
		// Not from the last refresh (or none yet): ask the trusted
		// metadata again rather than take the caller's word for it.
		if _, err := u.check(ctx); err != nil && !errors.Is(err, ErrNoUpdate) && !errors.Is(err, verify.ErrIncompatible) {
			return t, fmt.Errorf("updater: install %s: %w", c.Name, err)
		}
		if u.trusted[t.Path] != sha {
			return t, fmt.Errorf("updater: install %s: target %s (sha256 %s) is not in the trusted metadata: %w", c.Name, t.Path, sha, verify.ErrVerification)
		}
	}
	for _, tt := range u.targets {
		if tt.Path == t.Path && tt.SHA256() == sha {
			t = tt
			break
		}
	}
	// A local file (InstallFile) keeps its file:// URL.
	if strings.HasPrefix(up.Target.URL, "file://") {
		t.URL = up.Target.URL
	}
	if t.Custom.Component != c.release() {
		return t, fmt.Errorf("updater: install %s: target %s is for component %q: %w", c.Name, t.Path, t.Custom.Component, verify.ErrIncompatible)
	}
	if _, err := verify.Select([]verify.Target{t}, u.policy(c, u.st.component(c.Name).Installed)); err != nil {
		return t, fmt.Errorf("updater: install %s %s: %w", c.Name, t.Custom.Version, err)
	}
	return t, nil
}

// targetSlot picks the slot to write, refusing while a trial is armed.
func (u *Updater) targetSlot(ctx context.Context, c *Component) (slots.Slot, slots.BootStatus, error) {
	cs := u.st.component(c.Name)
	pd := cs.Pending
	if pd != nil && pd.Phase == PhaseArmed {
		return nil, slots.BootStatus{}, fmt.Errorf("updater: install %s: %w (%s in slot %s)", c.Name, ErrTrialPending, pd.Version, pd.Slot)
	}
	bs, err := c.Boot.Status(ctx)
	if err != nil {
		return nil, bs, fmt.Errorf("updater: install %s: boot status: %w", c.Name, err)
	}
	if bs.Trial != "" && bs.TriesLeft > 0 && !(pd != nil && pd.Phase == PhaseVerified && pd.Slot == bs.Trial) {
		return nil, bs, fmt.Errorf("updater: install %s: %w (boot control has slot %s armed)", c.Name, ErrTrialPending, bs.Trial)
	}
	slot, err := inactive(c, bs)
	if err != nil {
		return nil, bs, fmt.Errorf("updater: install: %w", err)
	}
	return slot, bs, nil
}

// beginPending records durably, before the slot is touched, that its
// content is about to change: a crash from here on never leaves the state
// claiming the old content. An interrupted install of the same target into
// the same slot keeps its pending record, and so resumes.
func (u *Updater) beginPending(c *Component, slot slots.Slot, t verify.Target) (*pending, error) {
	cs := u.st.component(c.Name)
	sha := t.SHA256()
	imageLen := imageLength(t)
	pd := cs.Pending
	if pd == nil || pd.TargetSHA256 != sha || pd.Slot != slot.Name() {
		pd = &pending{Phase: PhaseDownloading, Slot: slot.Name(), TargetPath: t.Path, TargetSHA256: sha,
			Version: t.Custom.Version, Length: imageLen, Started: u.now()}
	}
	cs.Pending = pd
	prev := cs.Slots[slot.Name()]
	was := prev.Was
	if prev.Complete {
		was = prev.Image
	}
	cs.Slots[slot.Name()] = slotContent{TargetSHA256: sha, Version: t.Custom.Version, Length: imageLen, Image: imageSHA(t), Was: was}
	if err := u.st.save(); err != nil {
		return nil, err
	}
	return pd, nil
}

// download transfers and verifies the target into the slot, then records
// the slot as holding it, complete.
func (u *Updater) download(ctx context.Context, c *Component, slot slots.Slot, t verify.Target, pd *pending, bs slots.BootStatus) error {
	version := t.Custom.Version
	u.changed(c.Name, StateIdle, StateDownloading, version, t.Path, "")
	t, err := u.staged(ctx, c, t)
	if err != nil {
		if errors.Is(err, verify.ErrVerification) {
			u.transitFailed(c, t, err)
		}
		return fmt.Errorf("updater: install %s %s: %w", c.Name, version, err)
	}
	if err := u.transferMirrors(ctx, c, slot, t, pd, bs); err != nil {
		err = fmt.Errorf("updater: install %s %s: %w", c.Name, version, err)
		switch {
		case errors.Is(err, slots.ErrBadImage):
			u.badImage(c, t, err)
		case errors.Is(err, verify.ErrVerification):
			u.transitFailed(c, t, err)
		}
		return err
	}
	u.st.clearBackoff(t.SHA256())
	if pd.Method == methodFull {
		u.storeIndex(ctx, t)
	}
	pd.Phase = PhaseVerified
	pd.Offset, pd.HashState = pd.Length, nil
	cs := u.st.component(c.Name)
	cs.Slots[slot.Name()] = slotContent{TargetSHA256: t.SHA256(), Version: version, Length: imageLength(t), Complete: true, Image: imageSHA(t)}
	if err := u.st.save(); err != nil {
		return err
	}
	u.pruneIndexes()
	u.changed(c.Name, StateDownloading, StateVerified, version, t.Path, "")
	return nil
}

// arm asks the boot control to try the slot. The state says "armed" only
// after the boot control does; a crash between the two is resolved by
// Confirm, which asks the boot control.
func (u *Updater) arm(ctx context.Context, c *Component, slot slots.Slot, t verify.Target, pd *pending) error {
	version := t.Custom.Version
	if err := c.Boot.Arm(ctx, slot.Name(), u.cfg.Tries); err != nil {
		err = fmt.Errorf("updater: install %s %s: arm slot %s: %w", c.Name, version, slot.Name(), err)
		if errors.Is(err, slots.ErrBadImage) {
			u.badImage(c, t, err)
		}
		return err
	}
	pd.Phase = PhaseArmed
	pd.ArmedAt = u.now()
	if err := u.st.save(); err != nil {
		return err
	}
	u.changed(c.Name, StateVerified, StateArmed, version, t.Path, "")
	return nil
}

// badImage records a verified release that the slot or boot control
// refused for its own content (slots.ErrBadImage): no transfer can fix
// it, so it is blocklisted like a release that failed its trial, and the
// pending install is dropped.
func (u *Updater) badImage(c *Component, t verify.Target, err error) {
	cs := u.st.component(c.Name)
	cs.Pending = nil
	reason := err.Error()
	u.st.block(c.Name, t.SHA256(), BlockedRelease{Component: c.Name, Version: t.Custom.Version, Reason: reason, At: u.now()})
	cs.LastResult = fmt.Sprintf("%s refused by its slot: %s", t.Custom.Version, reason)
	if serr := u.st.save(); serr != nil {
		u.log.Error("save state after a refused image", "err", serr)
	}
	u.changed(c.Name, StateVerified, StateFailed, t.Custom.Version, t.Path, reason)
}

// imageLength is the length of the image the slot receives: the
// uncompressed length of a compressed target.
func imageLength(t verify.Target) int64 {
	if t.Custom.Uncompressed != nil {
		return t.Custom.Uncompressed.Length
	}
	return t.Length
}

// imageSHA is the sha256 of the image the slot receives, or "" when the
// target does not publish one apart from its own.
func imageSHA(t verify.Target) string {
	if d, ok := t.ImageDigest(); ok {
		return d.SHA256
	}
	return ""
}

// transferMirrors transfers t by the best method; when the bytes fail
// verification, it starts over in full from the next mirror, once per
// server (see backoff.go).
func (u *Updater) transferMirrors(ctx context.Context, c *Component, slot slots.Slot, t verify.Target, pd *pending, bs slots.BootStatus) error {
	servers := len(u.targetURLs(t))
	defer func() { u.mirrorSkip = 0 }()
	for i := 0; ; i++ {
		u.mirrorSkip = i
		err := u.transferBest(ctx, c, slot, t, pd, bs)
		if err == nil || i+1 >= servers || !errors.Is(err, verify.ErrVerification) || ctx.Err() != nil {
			return err
		}
		u.log.Warn("target failed verification; fetching it from the next mirror", "component", c.Name, "target", t.Path, "err", err)
		u.emit(ErrorEvent{Component: c.Name, Op: "download", Err: err})
		pd.Method = methodFull
		pd.resetTransfer()
		if err := u.st.save(); err != nil {
			return err
		}
	}
}

// targetURLs lists where t is fetched from: its URL, then the same path
// on each of TargetsMirrors; a local file has only its own. The list
// starts at server u.mirrorSkip, so that a retry begins with the next one.
func (u *Updater) targetURLs(t verify.Target) []string {
	urls := []string{t.URL}
	if !isFileURL(t.URL) {
		urls = u.mirrorsOf(t.URL)
	}
	k := u.mirrorSkip % len(urls)
	return slices.Concat(urls[k:], urls[:k])
}

// transfer streams the target into the slot, verifying as it goes, with a
// durable checkpoint every checkpointEvery bytes so that a restart resumes.
func (u *Updater) transfer(ctx context.Context, c *Component, slot slots.Slot, t verify.Target, pd *pending) error {
	w, err := slot.Writer(ctx, pd.Length)
	if err != nil {
		return fmt.Errorf("open slot %s: %w", slot.Name(), err)
	}
	defer w.Close()
	blockSize := 1
	if bs, ok := slot.(slots.BlockSizer); ok {
		blockSize = bs.BlockSize()
	}
	p, err := newPipeline(t, w, blockSize, pd, u.st, u.log, func(done, total int64) {
		u.emit(Progress{Component: c.Name, Done: done, Total: total})
	})
	if err != nil {
		return err
	}
	req := download.Request{URLs: u.targetURLs(t), Offset: p.resumeOffset(), Length: t.Length, Validator: p.resumeValidator()}
	res, err := u.fetch(ctx, req, p)
	if cerr := p.close(); err == nil {
		err = cerr
	}
	if errors.Is(err, download.ErrLength) {
		// The server sent more or less than the signed length.
		err = fmt.Errorf("%w: %w", verify.ErrVerification, err)
	}
	if err != nil {
		return err
	}
	pd.Validator = res.Validator
	if err := p.verify(); err != nil {
		return err
	}
	if err := w.Sync(); err != nil {
		return fmt.Errorf("sync slot %s: %w", slot.Name(), err)
	}
	return nil
}

// readBack re-reads the slot and verifies the image again.
func readBack(ctx context.Context, slot slots.Slot, t verify.Target, length int64) error {
	r, err := slot.Reader(ctx)
	if err != nil {
		return fmt.Errorf("read back slot %s: %w", slot.Name(), err)
	}
	defer r.Close()
	var v *verify.Verifier
	if d := t.Custom.Uncompressed; d != nil {
		v, err = verify.NewVerifier(d.Length, map[string][]byte{"sha256": mustHex(d.SHA256)})
	} else {
		v, err = verify.NewVerifier(t.Length, t.Hashes)
	}
	if err != nil {
		return err
	}
	if err := readAhead(ctx, v, r, length); err != nil {
		return fmt.Errorf("read back slot %s: %w", slot.Name(), err)
	}
	if err := v.Verify(); err != nil {
		return fmt.Errorf("read back slot %s: %w", slot.Name(), err)
	}
	return nil
}

// ErrSlotChanged is wrapped by the error of an Install whose resumed
// transfer no longer matches what the slot holds: bytes written before the
// interruption read back differently (a disk that lost or changed them).
// The release is not blamed; the next Install starts the transfer over.
var ErrSlotChanged = errors.New("updater: the slot changed while the transfer was interrupted")
