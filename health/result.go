package health

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Result is the outcome of one check run by [Run]: the event an application
// sees for each check (the updater forwards it as its own health event).
type Result struct {
	// Name is the check's Name.
	Name string
	// Err is nil when the check passed.
	Err error
	// Started is when the check started.
	Started time.Time
	// Duration is how long the check took.
	Duration time.Duration
}

// OK reports whether the check passed.
func (r Result) OK() bool { return r.Err == nil }

// CheckError is the error of one named check, as [Run], [All] and [Any]
// report it. Find it with errors.As to learn which check failed.
type CheckError struct {
	Name string
	Err  error
}

// Error returns "name: error".
func (e *CheckError) Error() string { return e.Name + ": " + e.Err.Error() }

// Unwrap returns the check's own error.
func (e *CheckError) Unwrap() error { return e.Err }

// errNilCheck is what a nil HealthCheck in a list fails with.
var errNilCheck = errors.New("nil HealthCheck")

// Run runs checks in parallel and waits for all of them. It calls report,
// when not nil, with each check's [Result] as the check completes; report is
// called from Run's own goroutine, one call at a time, so it needs no
// locking. Run returns nil when every check passed, otherwise the
// [errors.Join] of one [*CheckError] per failed check, in the order of
// checks. A nil entry in checks fails with a clear error. Run with no
// checks returns nil. To see the checks nested inside [All] and [Any] as
// well, give Run a context from [WithObserver].
func Run(ctx context.Context, checks []HealthCheck, report func(Result)) error {
	type indexed struct {
		i int
		r Result
	}
	results := make(chan indexed, len(checks))
	for i, c := range checks {
		go func() { results <- indexed{i, runOne(ctx, c)} }()
	}
	errs := make([]error, len(checks))
	for range checks {
		ir := <-results
		if report != nil {
			report(ir.r)
		}
		if ir.r.Err != nil {
			errs[ir.i] = &CheckError{Name: ir.r.Name, Err: ir.r.Err}
		}
	}
	return errors.Join(errs...)
}

// runOne runs c and times it.
func runOne(ctx context.Context, c HealthCheck) Result {
	r := Result{Name: "<nil>", Started: time.Now(), Err: errNilCheck}
	if c != nil {
		r.Name = c.Name()
		r.Err = c.Check(ctx)
	}
	r.Duration = time.Since(r.Started)
	return r
}

type observerKey struct{}

// WithObserver returns a context under which [All] and [Any] report every
// check they run, however deeply nested, as a [Result] to observe — the way
// net/http/httptrace carries a trace in a context. Use it when a single
// check handed to the updater is a composition: wrapped in [Retry], each
// attempt of each inner check is reported. observe is called from many
// goroutines, but never concurrently: WithObserver serialises the calls. A
// nil observe returns ctx unchanged.
func WithObserver(ctx context.Context, observe func(Result)) context.Context {
	if observe == nil {
		return ctx
	}
	var mu sync.Mutex
	return context.WithValue(ctx, observerKey{}, func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		observe(r)
	})
}

// observer returns the observer in ctx, or nil.
func observer(ctx context.Context) func(Result) {
	o, _ := ctx.Value(observerKey{}).(func(Result))
	return o
}
