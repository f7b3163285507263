package updater

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Run confirms any pending trial, then checks and installs updates every
// PollInterval (spread by PollJitter) until ctx is done. Errors back off
// exponentially, up to PollInterval, and are reported as events; a
// release in transit backoff (ErrBackoff) waits for the next poll. A
// StateDir that cannot be written is one of those errors: its ErrorEvent
// wraps ErrStateStorage, which the application watches for to restart the
// device or raise an alarm (Run polls on: a passing fault clears by
// itself). After Close, Run returns ErrClosed.
//
// Run returns an error wrapping ErrRestartRequired as soon as the device
// must restart — a new version is armed, or Confirm rolled a failed one
// back — and Config.Restart is nil or failed: the caller restarts (see
// the package example). A Restart that returns nil is taken to have the
// restart under way; Run then waits for it, polling without installing.
func (u *Updater) Run(ctx context.Context) error {
	if err := u.Confirm(ctx); errors.Is(err, ErrRestartRequired) {
		return err
	} else if err != nil {
		u.log.Warn("confirm", "err", err)
	}
	backoff := time.Duration(0)
	for {
		err := u.RunOnce(ctx)
		wait := u.cfg.PollInterval
		switch {
		case errors.Is(err, ErrRestartRequired):
			return err
		case err == nil, errors.Is(err, ErrNoUpdate), errors.Is(err, ErrTrialPending):
			// A trial waits for the restart Config.Restart started.
			backoff = 0
		case errors.Is(err, ErrBackoff):
			// A release waits out its transit backoff: the next poll is
			// soon enough, and polling faster would not fetch it sooner.
			u.emit(ErrorEvent{Op: "run", Err: err})
			backoff = 0
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrClosed):
			return err
		default:
			u.emit(ErrorEvent{Op: "run", Err: err})
			u.log.Warn("update cycle failed", "err", err)
			backoff = min(max(2*backoff, 10*time.Second), u.cfg.PollInterval)
			wait = backoff
		}
		if u.cfg.PollJitter > 0 {
			wait += rand.N(u.cfg.PollJitter)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RunOnce checks for updates and installs each one found.
func (u *Updater) RunOnce(ctx context.Context) error {
	ups, err := u.Check(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, up := range ups {
		if err := u.Install(ctx, up); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ErrRestartRequired is returned (wrapped) by Install, Confirm and Run
// when the device must restart to go on — a new version is armed, or a
// failed one was rolled back — and Config.Restart is nil or failed.
var ErrRestartRequired = errors.New("updater: restart required")
