package updater

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// The state file is the updater's memory of the device, and it can be
// wrong: left by another build, edited by hand, or lost (a wiped /var, an
// unusable file moved aside). Two steps keep a wrong state from wedging
// the device or misjudging a release.
//
// reconcile, in New, does no I/O: records of slots the configuration does
// not have are dropped, and a pending install "verified" or "armed" short
// of its length, never verified whole, goes back to a transfer from byte
// zero.
//
// When the state file was missing or unusable, what the slots hold is
// found again by their content: each slot is hashed and matched against
// the image digests of the trusted targets. This needs trusted targets, so
// it runs at the first Check (after the refresh), and at Confirm for a
// trial that runs with no record of it. Start-up stays cheap: New reads
// nothing, a device whose state file loads never hashes a slot, and a
// device without one hashes each slot once, in one streaming pass with a
// 1 MiB buffer, no further than the longest image published for the
// component. The rebuilt state is saved, so it is not done again.

// reconcile checks the loaded state against the configured components and
// repairs what would wedge them. It returns what it changed, for the log.
func (s *store) reconcile(comps []Component) []string {
	var warnings []string
	for _, c := range comps {
		if s.p.Components[c.Name] == nil {
			continue
		}
		cs := s.component(c.Name)
		known := map[string]bool{}
		for _, sl := range c.Slots {
			known[sl.Name()] = true
		}
		for name := range cs.Slots {
			if !known[name] {
				delete(cs.Slots, name)
				warnings = append(warnings, fmt.Sprintf("state: component %s: forgot slot %q, which is not configured", c.Name, name))
			}
		}
		pd := cs.Pending
		switch {
		case pd == nil:
		case !known[pd.Slot]:
			cs.Pending = nil
			warnings = append(warnings, fmt.Sprintf("state: component %s: dropped the %s install of %s into slot %q, which is not configured", c.Name, pd.Phase, pd.Version, pd.Slot))
		case pd.Phase != PhaseDownloading && pd.Offset != pd.Length:
			warnings = append(warnings, fmt.Sprintf("state: component %s: the %s install of %s has %d of %d bytes; transferring it again", c.Name, pd.Phase, pd.Version, pd.Offset, pd.Length))
			pd.Phase, pd.Method = PhaseDownloading, ""
			pd.resetTransfer()
			sc := cs.Slots[pd.Slot]
			sc.Complete = false
			cs.Slots[pd.Slot] = sc
		}
	}
	return warnings
}

// rebuild identifies what each slot holds, when the state file was missing
// or unusable, from the trusted targets of the last refresh. The
// committed version is the one the primary slot holds. A slot whose
// content matches no target keeps what the state says (for a fresh
// device: the factory version).
func (u *Updater) rebuild(ctx context.Context) {
	if !u.st.unknown {
		return
	}
	for i := range u.cfg.Components {
		if err := u.rebuildComponent(ctx, &u.cfg.Components[i]); err != nil {
			// Tried again at the next Check.
			u.log.Warn("state: slots not identified", "component", u.cfg.Components[i].Name, "err", err)
			return
		}
	}
	u.st.unknown = false
	if err := u.st.save(); err != nil {
		u.log.Error("save the rebuilt state", "err", err)
	}
}

func (u *Updater) rebuildComponent(ctx context.Context, c *Component) error {
	bs, err := c.Boot.Status(ctx)
	if err != nil {
		return fmt.Errorf("boot status: %w", err)
	}
	cs := u.st.component(c.Name)
	candidates := imageTargets(u.targets, c.release())
	for _, s := range c.Slots {
		if pd := cs.Pending; pd != nil && pd.Slot == s.Name() {
			continue // its record is being written
		}
		t, ok, err := identify(ctx, s, candidates)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		cs.Slots[s.Name()] = slotContent{TargetSHA256: t.SHA256(), Version: t.Custom.Version, Length: imageLength(t), Complete: true, Image: imageSHA(t)}
		u.log.Info("state: slot identified by its content", "component", c.Name, "slot", s.Name(), "version", t.Custom.Version, "target", t.Path)
		if s.Name() == bs.Primary {
			cs.Installed, cs.InstalledTargetSHA256 = t.Custom.Version, t.SHA256()
		}
	}
	return nil
}

// unknownTrial describes a trial that the boot control runs and the state
// knows nothing of (the state file was lost): the slot's content names the
// release, so that a failure blocklists it. Without trusted targets (the
// server unreachable) the release stays unknown, and a failure of it
// cannot be blocklisted.
func (u *Updater) unknownTrial(ctx context.Context, c *Component, slot string) *pending {
	pd := &pending{Phase: PhaseArmed, Slot: slot, Version: "unknown"}
	s := u.slotByName(c, slot)
	if s == nil {
		return pd
	}
	ts, err := u.tuf.Refresh(ctx)
	if err != nil {
		u.log.Warn("state: the running trial cannot be identified", "component", c.Name, "slot", slot, "err", err)
		return pd
	}
	u.remember(ts)
	t, ok, err := identify(ctx, s, imageTargets(u.targets, c.release()))
	if err != nil || !ok {
		u.log.Warn("state: the running trial matches no trusted target", "component", c.Name, "slot", slot, "err", err)
		return pd
	}
	n := imageLength(t)
	pd.TargetSHA256, pd.TargetPath, pd.Version, pd.Length, pd.Offset = t.SHA256(), t.Path, t.Custom.Version, n, n
	u.st.component(c.Name).Slots[slot] = slotContent{TargetSHA256: t.SHA256(), Version: t.Custom.Version, Length: n, Complete: true, Image: imageSHA(t)}
	return pd
}

// imageTargets returns the full images of component among targets.
func imageTargets(targets []verify.Target, component string) []verify.Target {
	var out []verify.Target
	for _, t := range targets {
		if t.Custom.Component != component || (t.Custom.Kind != "" && t.Custom.Kind != verify.KindImage) {
			continue
		}
		if _, ok := t.ImageDigest(); ok {
			out = append(out, t)
		}
	}
	return out
}

// identify finds the target whose image the slot holds: it hashes the
// slot once, from its start, and compares the digest at each candidate's
// image length; the longest match wins. It reads no further than the
// longest candidate.
func identify(ctx context.Context, slot slots.Slot, candidates []verify.Target) (verify.Target, bool, error) {
	byLength := map[int64][]verify.Target{}
	var lengths []int64
	for _, t := range candidates {
		d, _ := t.ImageDigest()
		if len(byLength[d.Length]) == 0 {
			lengths = append(lengths, d.Length)
		}
		byLength[d.Length] = append(byLength[d.Length], t)
	}
	if len(lengths) == 0 {
		return verify.Target{}, false, nil
	}
	slices.Sort(lengths)
	r, err := slot.Reader(ctx)
	if errors.Is(err, slots.ErrEmpty) {
		return verify.Target{}, false, nil
	}
	if err != nil {
		return verify.Target{}, false, fmt.Errorf("read slot %s: %w", slot.Name(), err)
	}
	defer r.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var off int64
	var found verify.Target
	ok := false
	for _, n := range lengths {
		if n > r.Size() {
			break
		}
		if err := ctx.Err(); err != nil {
			return verify.Target{}, false, err
		}
		if _, err := io.CopyBuffer(h, io.NewSectionReader(r, off, n-off), buf); err != nil {
			return verify.Target{}, false, fmt.Errorf("read slot %s: %w", slot.Name(), err)
		}
		off = n
		sum := hex.EncodeToString(h.Sum(nil))
		for _, t := range byLength[n] {
			if d, _ := t.ImageDigest(); d.SHA256 == sum {
				found, ok = t, true
			}
		}
	}
	return found, ok, nil
}
