package health

import (
	"context"
	"time"
)

// DefaultTimeout bounds each run of a built-in check unless its [Timeout]
// option says otherwise.
const DefaultTimeout = 10 * time.Second

// Option configures any built-in check: [Timeout] and [Named]. Every
// check-specific option type (such as [HTTPOption]) accepts an Option.
type Option func(*base)

// base holds what every built-in check has: a name and a timeout.
type base struct {
	name    string
	timeout time.Duration
}

// Timeout bounds each run of the check to d (see [WithTimeout]); d of zero
// or less leaves only the caller's context to bound it. The default is
// [DefaultTimeout].
func Timeout(d time.Duration) Option { return func(b *base) { b.timeout = d } }

// Named replaces the check's default name, which is derived from its
// target ("http:http://127.0.0.1:8080/healthz", "tcp:127.0.0.1:5432").
func Named(name string) Option {
	return func(b *base) {
		if name != "" {
			b.name = name
		}
	}
}

// finish turns a configured check function into a HealthCheck bounded by
// its timeout.
func (b base) finish(check func(ctx context.Context) error) HealthCheck {
	return boundedBy(Func(b.name, check), b.timeout)
}

func newBase(name string, timeout time.Duration) base {
	return base{name: name, timeout: timeout}
}

// applyOptions applies the common options to b.
func applyOptions(b *base, opts []Option) {
	for _, o := range opts {
		if o != nil {
			o(b)
		}
	}
}
