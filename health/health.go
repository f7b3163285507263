package health

import "context"

// HealthCheck tells whether the running version is fine. The updater runs
// the configured checks after a new version starts, and commits it only
// when they pass within the confirmation deadline.
//
// Check must honour ctx: return promptly, with ctx's error or a more
// specific one, once ctx is done. A nil error means healthy. Implementations
// must be safe for concurrent use: combinators run checks in parallel.
type HealthCheck interface {
	// Name identifies the check in events and logs ("http:/healthz").
	Name() string
	// Check runs the check once.
	Check(ctx context.Context) error
}

// Func adapts a function to a [HealthCheck].
//
//	health.Func("db", func(ctx context.Context) error { return db.PingContext(ctx) })
func Func(name string, check func(ctx context.Context) error) HealthCheck {
	return funcCheck{name: name, check: check}
}

type funcCheck struct {
	name  string
	check func(ctx context.Context) error
}

func (f funcCheck) Name() string                    { return f.name }
func (f funcCheck) Check(ctx context.Context) error { return f.check(ctx) }
