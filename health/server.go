package health

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultServerTimeout bounds each run of [UpdateServerReachable] unless its
// [Timeout] option says otherwise: a TUF refresh fetches several files.
const DefaultServerTimeout = 30 * time.Second

// ErrServerUnreachable is wrapped by the error of [UpdateServerReachable].
var ErrServerUnreachable = errors.New("update server unreachable")

// UpdateServerReachable returns a check that passes when refresh succeeds.
// The updater passes a real TUF metadata refresh against its update server
// (verified, with the trusted root), so the check proves what matters: this
// version can still be updated over the air. A version that cannot must
// never be committed, so the updater runs this check by default. Its
// default name is "update-server".
func UpdateServerReachable(refresh func(ctx context.Context) error, opts ...Option) HealthCheck {
	b := newBase("update-server", DefaultServerTimeout)
	applyOptions(&b, opts)
	return b.finish(func(ctx context.Context) error {
		if refresh == nil {
			return fmt.Errorf("%w: no refresh function given", ErrServerUnreachable)
		}
		if err := refresh(ctx); err != nil {
			return fmt.Errorf("%w: %w", ErrServerUnreachable, err)
		}
		return nil
	})
}
