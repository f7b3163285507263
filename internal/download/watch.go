package download

import (
	"context"
	"errors"
	"sync"
	"time"
)

// watch enforces the stall timeout and the low-speed limit of one
// transfer. It is armed while an attempt waits on the network (for a
// response, or in a read of the body) and disarmed in between, so that
// waits in Pause, in the rate limiter, in a slow sink or in the backoff
// between attempts never count. It cancels the current attempt with
// ErrStalled when it stays armed for the stall timeout, and with
// ErrTooSlow when fewer bytes than the low-speed limit asks arrived over a
// window of armed time. The window spans attempts: a server that sends a
// few bytes and then stalls, again and again, makes progress at every
// attempt but is too slow all the same. Its methods are safe to call on a
// nil *watch (no watch) and from the timer's goroutine.
type watch struct {
	stall    time.Duration
	window   time.Duration // of armed time; 0: no low-speed limit
	minBytes int64         // per window
	now      func() time.Time

	mu      sync.Mutex
	t       *time.Timer
	cancel  context.CancelCauseFunc // of the current attempt
	armed   bool
	armedAt time.Time
	active  time.Duration // armed time in this window before armedAt
	bytes   int64         // bytes received in this window
}

// newWatch returns a watch for one transfer under c's limits.
func (c *Client) newWatch() *watch {
	w := &watch{stall: c.cfg.StallTimeout, now: time.Now}
	if c.cfg.LowSpeedLimit > 0 {
		w.window = c.cfg.LowSpeedTime
		w.minBytes = max(1, c.cfg.LowSpeedLimit*int64(c.cfg.LowSpeedTime)/int64(time.Second))
	}
	w.t = time.AfterFunc(time.Hour, w.fire)
	w.t.Stop()
	return w
}

// start begins an attempt, which the watch ends with cancel.
func (w *watch) start(cancel context.CancelCauseFunc) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancel = cancel
}

// arm starts a wait on the network.
func (w *watch) arm() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed {
		return
	}
	w.armed, w.armedAt = true, w.now()
	w.t.Reset(w.next(0))
}

// disarm ends a wait on the network that delivered n bytes. A window of
// armed time that ends here with too few bytes ends the attempt.
func (w *watch) disarm(n int) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Stop()
	w.bytes += int64(n)
	if w.settle() && w.cancel != nil {
		w.cancel(ErrTooSlow)
	}
}

// stop ends an attempt: the time it was armed counts, but a window that
// ends here ends no attempt.
func (w *watch) stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Stop()
	w.settle()
	w.cancel = nil
}

// settle adds the time armed to the window, disarmed, and starts a new
// window when this one is over; it reports whether the window ended with
// too few bytes. Called with mu held.
func (w *watch) settle() (tooSlow bool) {
	if w.armed {
		w.armed = false
		w.active += w.now().Sub(w.armedAt)
	}
	if w.window > 0 && w.active >= w.window {
		tooSlow = w.bytes < w.minBytes
		w.active, w.bytes = 0, 0
	}
	return tooSlow
}

// next is how long the timer waits, elapsed into the current wait: until
// the stall timeout or the end of the window, whichever comes first.
func (w *watch) next(elapsed time.Duration) time.Duration {
	d := w.stall - elapsed
	if w.window > 0 {
		d = min(d, w.window-w.active-elapsed)
	}
	return max(d, 0)
}

// fire runs on the timer's goroutine: the end of a window of armed time,
// or a stall. A window that ends too slow takes precedence over a stall at
// the same instant: it counts against the retries even after progress.
func (w *watch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed || w.cancel == nil {
		return
	}
	elapsed := w.now().Sub(w.armedAt)
	if w.window > 0 && w.active+elapsed >= w.window {
		if w.bytes < w.minBytes {
			w.cancel(ErrTooSlow)
			return
		}
		// Enough bytes in this window: the next one starts now.
		w.active, w.bytes = -elapsed, 0
	}
	if elapsed >= w.stall {
		w.cancel(ErrStalled)
		return
	}
	w.t.Reset(w.next(elapsed))
}

// tripped returns ErrStalled or ErrTooSlow when the watch ended the
// attempt whose context is actx (and not the caller's ctx), else nil.
func tripped(ctx, actx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	cause := context.Cause(actx)
	if errors.Is(cause, ErrStalled) || errors.Is(cause, ErrTooSlow) {
		return cause
	}
	return nil
}
