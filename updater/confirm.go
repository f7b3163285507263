package updater

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/slots"
)

// Confirm runs at every start, before the application relies on an update.
// For each component with an armed trial it finds out where the device
// runs: on the trial slot, the health checks decide within ConfirmTimeout —
// pass commits, fail marks the slot bad, blocklists the release and
// restarts into the previous version; on the previous slot, the bootloader
// (or the start counter) fell back: the rollback is recorded and the
// release blocklisted. It returns an error wrapping ErrRolledBack when a
// trial failed.
func (u *Updater) Confirm(ctx context.Context) error {
	var errs []error
	var restarts []string
	err := u.locked(func() error {
		for i := range u.cfg.Components {
			c := &u.cfg.Components[i]
			restart, err := u.confirm(ctx, c)
			if err != nil {
				errs = append(errs, err)
			}
			if restart {
				restarts = append(restarts, c.Name)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range restarts {
		if err := u.restart(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// confirm decides the armed trial of c, if the boot status shows one to
// decide: restart reports that the device must restart into the previous
// version, after a failed health check.
func (u *Updater) confirm(ctx context.Context, c *Component) (restart bool, err error) {
	cs := u.st.component(c.Name)
	bs, err := u.bootStatus(ctx, c)
	if err != nil {
		return false, err
	}
	pd := u.trialToDecide(ctx, c, cs, bs)
	if pd == nil {
		return false, nil
	}
	if bs.Booted != pd.Slot {
		return false, u.fellBack(ctx, c, cs, pd, bs.Booted)
	}
	return u.confirmTrial(ctx, c, cs, pd)
}

// bootStatus reads c's boot status, counting this start unless an
// external start counter does, and checks the boot control's canary.
func (u *Updater) bootStatus(ctx context.Context, c *Component) (bs slots.BootStatus, err error) {
	if sc, ok := c.Boot.(slots.StartCounter); ok && !u.cfg.ExternalStartCounter {
		bs, err = sc.CountStart(ctx)
	} else {
		bs, err = c.Boot.Status(ctx)
	}
	if err != nil {
		return bs, fmt.Errorf("updater: confirm %s: boot status: %w", c.Name, err)
	}
	if cc, ok := c.Boot.(slots.CanaryChecker); ok {
		if err := cc.CheckCanary(ctx); err != nil {
			return bs, fmt.Errorf("updater: confirm %s: %w", c.Name, err)
		}
	}
	return bs, nil
}

// trialToDecide returns the armed trial of c that has run, on its slot or
// by falling back from it, or nil when there is nothing to decide. It
// adopts a running trial the state does not know, and marks armed a trial
// whose boot proves the Arm that the state missed.
func (u *Updater) trialToDecide(ctx context.Context, c *Component, cs *componentState, bs slots.BootStatus) *pending {
	pd := cs.Pending
	if pd == nil {
		if bs.Trial == "" || bs.Booted != bs.Trial {
			return nil
		}
		// The boot control runs a trial the state knows nothing of (the
		// state file was lost). Judge it by health like any trial, known
		// by its content.
		pd = u.unknownTrial(ctx, c, bs.Trial)
		cs.Pending = pd
	}
	if pd.Phase != PhaseArmed {
		// Crashed between Arm and saving "armed"? Only a boot of the
		// trial proves the Arm took: an Arm torn by a power cut can leave
		// a trial with no tries, which is not a fallback. Otherwise
		// Install redoes the Arm (or resumes the download).
		if bs.Booted != pd.Slot || bs.Primary == pd.Slot {
			return nil
		}
		pd.Phase = PhaseArmed
	}
	if bs.Booted != pd.Slot && bs.Trial == pd.Slot && bs.TriesLeft > 0 {
		// Armed, and not started yet: this process restarted before the
		// reboot (or application restart) that tries the new version.
		return nil
	}
	return pd
}

// fellBack records that the trial pd never confirmed: the bootloader ran
// out of tries (or the start counter swapped back) and the previous
// version runs, from slot booted. It marks the trial's slot bad and
// returns an error wrapping ErrRolledBack.
func (u *Updater) fellBack(ctx context.Context, c *Component, cs *componentState, pd *pending, booted string) error {
	reason := fmt.Sprintf("slot %s never confirmed; fell back to slot %s", pd.Slot, booted)
	if err := c.Boot.MarkBad(ctx, pd.Slot); err != nil {
		return fmt.Errorf("updater: confirm %s: mark slot %s bad: %w", c.Name, pd.Slot, err)
	}
	u.rolledBack(c, cs, pd, StateArmed, reason)
	return fmt.Errorf("updater: confirm %s %s: %s: %w", c.Name, pd.Version, reason, ErrRolledBack)
}

// confirmTrial runs the health checks on the trial pd, which the device
// runs: a pass commits it; a failure marks its slot bad, rolls the release
// back and asks for a restart into the previous version.
func (u *Updater) confirmTrial(ctx context.Context, c *Component, cs *componentState, pd *pending) (restart bool, err error) {
	u.changed(c.Name, StateArmed, StateConfirming, pd.Version, pd.TargetPath, "")
	if herr := u.runHealth(ctx, c); herr != nil {
		if err := c.Boot.MarkBad(ctx, pd.Slot); err != nil {
			return false, fmt.Errorf("updater: confirm %s: health failed (%v) and mark bad failed: %w", c.Name, herr, err)
		}
		u.rolledBack(c, cs, pd, StateConfirming, herr.Error())
		return true, fmt.Errorf("updater: confirm %s %s: %w: %w", c.Name, pd.Version, ErrRolledBack, herr)
	}
	return false, u.commitTrial(ctx, c, cs, pd)
}

// commitTrial makes the trial's slot the primary one and records its
// release as installed.
func (u *Updater) commitTrial(ctx context.Context, c *Component, cs *componentState, pd *pending) error {
	if err := c.Boot.Commit(ctx, pd.Slot); err != nil {
		return fmt.Errorf("updater: confirm %s: commit slot %s: %w", c.Name, pd.Slot, err)
	}
	cs.Installed = pd.Version
	cs.InstalledTargetSHA256 = pd.TargetSHA256
	cs.Pending = nil
	cs.LastResult = fmt.Sprintf("%s committed", pd.Version)
	if err := u.st.save(); err != nil {
		return err
	}
	u.changed(c.Name, StateConfirming, StateCommitted, pd.Version, pd.TargetPath, "")
	return nil
}

// rolledBack blocklists the release of the trial pd, records the rollback
// in the state and announces it; a failure to save is logged and emitted,
// since the previous version runs either way.
func (u *Updater) rolledBack(c *Component, cs *componentState, pd *pending, from State, reason string) {
	u.st.block(c.Name, pd.TargetSHA256, BlockedRelease{Component: c.Name, Version: pd.Version, Reason: reason, At: u.now()})
	cs.Pending = nil
	cs.LastResult = fmt.Sprintf("%s rolled back: %s", pd.Version, reason)
	if err := u.st.save(); err != nil {
		u.log.Error("save state after rollback", "err", err)
		u.emit(ErrorEvent{Component: c.Name, Op: "save", Err: err})
	}
	u.changed(c.Name, from, StateRolledBack, pd.Version, pd.TargetPath, reason)
}

// healthChecks is the configured checks plus, unless skipped, the update
// server reachability check.
func (u *Updater) healthChecks() []health.HealthCheck {
	checks := slices.Clone(u.cfg.HealthChecks)
	if !u.cfg.SkipServerCheck {
		checks = append(checks, health.UpdateServerReachable(func(ctx context.Context) error {
			_, err := u.tuf.Refresh(ctx)
			return err
		}))
	}
	return checks
}

// runHealth runs the health checks and decides by ConfirmTimeout: a check
// that ignores its context is abandoned at the deadline (its goroutine is
// left to finish on its own, its late results unreported) and counts as
// failed, so that Confirm always commits or rolls back.
func (u *Updater) runHealth(ctx context.Context, c *Component) error {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.ConfirmTimeout)
	defer cancel()
	var (
		mu        sync.Mutex
		abandoned bool
	)
	done := make(chan error, 1)
	go func() {
		done <- health.Run(ctx, u.healthChecks(), func(r health.Result) {
			mu.Lock()
			defer mu.Unlock()
			if !abandoned {
				u.emit(HealthResult{Component: c.Name, Check: r.Name, Err: r.Err, Duration: r.Duration})
			}
		})
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		mu.Lock()
		abandoned = true
		mu.Unlock()
		err = fmt.Errorf("not finished within the confirm timeout (%s): %w", u.cfg.ConfirmTimeout, context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHealth, err)
	}
	return nil
}
