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
// release in transit backoff (ErrBackoff) waits for the next poll. After
// Close, Run returns ErrClosed.
func (u *Updater) Run(ctx context.Context) error {
	if err := u.Confirm(ctx); err != nil {
		u.log.Warn("confirm", "err", err)
	}
	backoff := time.Duration(0)
	for {
		err := u.RunOnce(ctx)
		wait := u.cfg.PollInterval
		switch {
		case err == nil, errors.Is(err, ErrNoUpdate):
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
