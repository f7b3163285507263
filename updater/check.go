package updater

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// Update is a release that Check found for a component.
type Update struct {
	Component string
	// From is the installed version, To the release's.
	From, To string
	Target   verify.Target
}

// Check refreshes the trusted metadata and returns, for each component, the
// newest release it may install. It returns an error wrapping ErrNoUpdate
// when there is none for any component; when releases exist that the
// device may not take, the error also wraps verify.ErrIncompatible with
// the reasons (and verify.ErrBlocked for a blocklisted one); when the
// repository publishes no release at all of a component, it wraps
// verify.ErrNotPublished. When the only releases found wait out a transit
// backoff (their bytes failed verification from every server not long
// ago), the error wraps ErrBackoff and not ErrNoUpdate.
func (u *Updater) Check(ctx context.Context) ([]Update, error) {
	unlock, err := u.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return u.check(ctx)
}

func (u *Updater) check(ctx context.Context) ([]Update, error) {
	if err := u.checkStorage(); err != nil {
		return nil, fmt.Errorf("updater: check: %w", err)
	}
	ts, err := u.tuf.Refresh(ctx)
	if err != nil {
		// The refresh writes metadata to the StateDir: if its storage
		// failed, that is the error that lasts.
		if serr := u.storageFault(err); serr != nil {
			return nil, fmt.Errorf("updater: check: %w", serr)
		}
		return nil, fmt.Errorf("updater: check: %w", err)
	}
	for _, r := range ts.Rejected {
		u.log.Warn("target rejected", "target", r.Path, "err", r.Err)
	}
	u.remember(ts)
	u.pruneStaging()
	u.rebuild(ctx)
	if u.st.resetBackoffs(ts.TargetsVersion, u.trusted) {
		if err := u.st.save(); err != nil {
			return nil, err
		}
	}
	var ups []Update
	var errs, waiting []error
	for _, c := range u.cfg.Components {
		cs := u.st.component(c.Name)
		t, err := verify.Select(ts.Targets, u.policy(&c, cs.Installed))
		switch {
		case errors.Is(err, verify.ErrNoUpdate) && !errors.Is(err, verify.ErrNotPublished):
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("component %s: %w", c.Name, err))
			continue
		}
		if err := u.inBackoff(&c, t); err != nil {
			waiting = append(waiting, err)
			continue
		}
		ups = append(ups, Update{Component: c.Name, From: cs.Installed, To: t.Custom.Version, Target: t})
	}
	if len(ups) > 0 {
		return ups, nil
	}
	if len(waiting) > 0 {
		// An update exists but must wait: not "up to date".
		return nil, fmt.Errorf("updater: check: %w", errors.Join(append(waiting, errs...)...))
	}
	if err := errors.Join(errs...); err != nil {
		// Releases exist that this device may not take (wrong hardware,
		// blocklisted...): nothing to install, and the reasons stay
		// reachable with errors.Is(err, verify.ErrIncompatible).
		return nil, fmt.Errorf("updater: check: %w: %w", ErrNoUpdate, err)
	}
	return nil, fmt.Errorf("updater: check: %w", ErrNoUpdate)
}

// remember records the targets of a refresh: Install takes only these.
func (u *Updater) remember(ts *verify.Targets) {
	u.targets = ts.Targets
	u.targetsVersion = ts.TargetsVersion
	u.trusted = map[string]string{}
	for _, t := range ts.Targets {
		u.trusted[t.Path] = t.SHA256()
	}
}

// inactive picks the slot to write: one that is not running, preferring one
// that is neither the running nor the primary slot.
func inactive(c *Component, bs slots.BootStatus) (slots.Slot, error) {
	var fallback slots.Slot
	for _, s := range c.Slots {
		if s.Name() == bs.Booted {
			continue
		}
		if s.Name() != bs.Primary {
			return s, nil
		}
		if fallback == nil {
			fallback = s
		}
	}
	if fallback == nil {
		return nil, fmt.Errorf("component %s: no slot other than the running %q: %w", c.Name, bs.Booted, slots.ErrSlotActive)
	}
	return fallback, nil
}
