package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrTimeout is wrapped by the error of a check that did not finish within
// its own timeout ([WithTimeout], or the [Timeout] option of a built-in).
var ErrTimeout = errors.New("health check timed out")

// ErrNoChecks is returned by [Any] when it was given no checks: nothing can
// pass.
var ErrNoChecks = errors.New("no health checks given")

// ErrGracePeriod is returned by a [Grace] check when its context ends before
// the grace period is over: the check could not be judged yet.
var ErrGracePeriod = errors.New("health check still in its grace period")

func names(checks []HealthCheck) string {
	s := make([]string, len(checks))
	for i, c := range checks {
		if c == nil {
			s[i] = "<nil>"
			continue
		}
		s[i] = c.Name()
	}
	return strings.Join(s, ",")
}

// All returns a check that runs checks in parallel, waits for all of them,
// and passes only when every one passes. Its error reports every failure:
// the [errors.Join] of one [*CheckError] per failed check, in order. Its
// name is "all(" + the names of checks + ")". All with no checks passes.
// Each check's [Result] goes to the observer of [WithObserver], if any.
func All(checks ...HealthCheck) HealthCheck {
	checks = append([]HealthCheck(nil), checks...)
	return Func("all("+names(checks)+")", func(ctx context.Context) error {
		return Run(ctx, checks, observer(ctx))
	})
}

// Any returns a check that runs checks in parallel and passes as soon as one
// of them passes; the others are then cancelled, and Any returns once they
// have returned. When none passes, its error joins every failure as
// [*CheckError] values, in order. Any with no checks fails with
// [ErrNoChecks]. Its name is "any(" + the names of checks + ")". Each
// check's [Result] — a cancelled one's too — goes to the observer of
// [WithObserver], if any.
func Any(checks ...HealthCheck) HealthCheck {
	checks = append([]HealthCheck(nil), checks...)
	return Func("any("+names(checks)+")", func(ctx context.Context) error {
		if len(checks) == 0 {
			return ErrNoChecks
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		observe := observer(ctx)
		type indexed struct {
			i int
			r Result
		}
		results := make(chan indexed, len(checks))
		for i, c := range checks {
			go func() { results <- indexed{i, runOne(ctx, c)} }()
		}
		errs := make([]error, len(checks))
		passed := false
		for range checks {
			ir := <-results
			if observe != nil {
				observe(ir.r)
			}
			if ir.r.Err == nil {
				if !passed {
					passed = true
					cancel()
				}
				continue
			}
			errs[ir.i] = &CheckError{Name: ir.r.Name, Err: ir.r.Err}
		}
		if passed {
			return nil
		}
		return errors.Join(errs...)
	})
}

// WithTimeout bounds c to d: c runs with a context that ends after d. A
// check that honours its context returns its own error then, which
// WithTimeout wraps with [ErrTimeout]. One that has still not returned
// [TimeoutLeeway] later is abandoned — left to finish in the background —
// and WithTimeout returns an error wrapping [ErrTimeout] and
// [context.DeadlineExceeded]: a check that ignores its context cannot hang
// the confirmation. A d of zero or less means no bound of its own. The
// name is c's.
func WithTimeout(c HealthCheck, d time.Duration) HealthCheck {
	if c == nil {
		return Func("<nil>", func(context.Context) error { return errNilCheck })
	}
	return timeoutCheck{c: c, d: d, leeway: TimeoutLeeway}
}

// TimeoutLeeway is how long [WithTimeout] waits, after the deadline it set,
// for a check to return before abandoning it.
const TimeoutLeeway = 100 * time.Millisecond

// boundedBy is WithTimeout for the built-in checks, which honour their
// context: it always waits for them to return.
func boundedBy(c HealthCheck, d time.Duration) HealthCheck {
	return timeoutCheck{c: c, d: d, leeway: -1}
}

type timeoutCheck struct {
	c      HealthCheck
	d      time.Duration
	leeway time.Duration // < 0: wait for the check however long it takes
}

func (t timeoutCheck) Name() string { return t.c.Name() }

func (t timeoutCheck) Check(ctx context.Context) error {
	if t.d <= 0 {
		return t.c.Check(ctx)
	}
	tctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	if t.leeway < 0 {
		return t.explain(ctx, tctx, t.c.Check(tctx))
	}
	done := make(chan error, 1)
	go func() { done <- t.c.Check(tctx) }()
	select {
	case err := <-done:
		return t.explain(ctx, tctx, err)
	case <-tctx.Done():
	}
	leeway := time.NewTimer(t.leeway)
	defer leeway.Stop()
	select {
	case err := <-done:
		return t.explain(ctx, tctx, err)
	case <-leeway.C:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w after %s (the check did not return): %w", ErrTimeout, t.d, context.DeadlineExceeded)
}

// explain marks err as a timeout when it came after our own deadline (and
// not the caller's) passed.
func (t timeoutCheck) explain(ctx, tctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || tctx.Err() == nil || errors.Is(err, ErrTimeout) {
		return err
	}
	return fmt.Errorf("%w after %s: %w", ErrTimeout, t.d, err)
}

// Retry returns a check that runs c again, interval after each failure,
// until it passes or ctx ends — typically at the confirmation deadline.
// Give ctx a deadline (or wrap the result in [WithTimeout]): without one,
// a check that keeps failing is retried until ctx is cancelled. When ctx
// ends, the error says how many attempts were made and wraps both ctx's
// error and the last error of c that was not caused by ctx ending. An
// interval of zero or less is an error. The name is c's.
func Retry(c HealthCheck, interval time.Duration) HealthCheck {
	if c == nil {
		return Func("<nil>", func(context.Context) error { return errNilCheck })
	}
	return retryCheck{c: c, interval: interval}
}

type retryCheck struct {
	c        HealthCheck
	interval time.Duration
}

func (r retryCheck) Name() string { return r.c.Name() }

func (r retryCheck) Check(ctx context.Context) error {
	if r.interval <= 0 {
		return fmt.Errorf("retry interval %s: must be positive", r.interval)
	}
	var last error
	for attempts := 1; ; attempts++ {
		err := r.c.Check(ctx)
		if err == nil {
			return nil
		}
		// An attempt cut short by ctx says less than the one before it.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		if ctx.Err() != nil {
			return retryError(ctx, attempts, last)
		}
		t := time.NewTimer(r.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return retryError(ctx, attempts, last)
		case <-t.C:
		}
	}
}

func retryError(ctx context.Context, attempts int, last error) error {
	if errors.Is(last, ctx.Err()) {
		return fmt.Errorf("gave up after %d attempts: %w", attempts, last)
	}
	return fmt.Errorf("gave up after %d attempts (%w): %w", attempts, ctx.Err(), last)
}

// GraceOption configures [Grace].
type GraceOption func(*graceCheck)

// GraceStart sets the start the grace period is counted from; the default
// is the moment Grace was called.
func GraceStart(t time.Time) GraceOption { return func(g *graceCheck) { g.start = t } }

// GraceClock sets the clock Grace reads; nil, the default, is [time.Now].
func GraceClock(now func() time.Time) GraceOption {
	return func(g *graceCheck) {
		if now != nil {
			g.now = now
		}
	}
}

// Grace returns a check that is not judged during a grace period of d after
// start: called before start+d, it waits until then and only then runs c.
// This keeps a service that looks fine for its first seconds and then
// crashes from being committed, and gives slow starters time. When ctx ends
// before the grace period is over — or its deadline falls before the end,
// in which case Grace fails at once — the error wraps [ErrGracePeriod].
// After the grace period, Grace is c. The name is c's.
func Grace(c HealthCheck, d time.Duration, opts ...GraceOption) HealthCheck {
	if c == nil {
		return Func("<nil>", func(context.Context) error { return errNilCheck })
	}
	g := &graceCheck{c: c, d: d, now: time.Now}
	for _, o := range opts {
		o(g)
	}
	if g.start.IsZero() {
		g.start = g.now()
	}
	return g
}

type graceCheck struct {
	c     HealthCheck
	d     time.Duration
	start time.Time
	now   func() time.Time
}

func (g *graceCheck) Name() string { return g.c.Name() }

func (g *graceCheck) Check(ctx context.Context) error {
	end := g.start.Add(g.d)
	wait := end.Sub(g.now())
	if wait > 0 {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("%w until %s, after the deadline", ErrGracePeriod, end.Format(time.RFC3339))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w until %s: %w", ErrGracePeriod, end.Format(time.RFC3339), ctx.Err())
		case <-t.C:
		}
	}
	return g.c.Check(ctx)
}
