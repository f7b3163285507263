package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	errA = errors.New("a is down")
	errB = errors.New("b is down")
)

func pass(name string) HealthCheck {
	return Func(name, func(context.Context) error { return nil })
}

func fail(name string, err error) HealthCheck {
	return Func(name, func(context.Context) error { return err })
}

// blockUntilDone blocks until its context ends and returns its error.
func blockUntilDone(name string) HealthCheck {
	return Func(name, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
}

// guard is the context every combinator test runs under: a bound that only
// a broken combinator reaches.
func guard(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRunReportsEveryResult(t *testing.T) {
	checks := []HealthCheck{pass("p"), fail("a", errA), nil, fail("b", errB)}
	var got []Result
	err := Run(guard(t), checks, func(r Result) { got = append(got, r) })

	if len(got) != len(checks) {
		t.Fatalf("reported %d results, want %d", len(got), len(checks))
	}
	byName := map[string]Result{}
	for _, r := range got {
		byName[r.Name] = r
		if r.Started.IsZero() || r.Duration < 0 {
			t.Errorf("result %q: Started %v, Duration %v: want a start time and a duration", r.Name, r.Started, r.Duration)
		}
	}
	if r := byName["p"]; !r.OK() {
		t.Errorf("p: got %v, want pass", r.Err)
	}
	if r := byName["a"]; !errors.Is(r.Err, errA) {
		t.Errorf("a: got %v, want %v", r.Err, errA)
	}
	if r := byName["<nil>"]; r.Err == nil {
		t.Errorf("nil check: got pass, want an error")
	}
	for _, want := range []error{errA, errB} {
		if !errors.Is(err, want) {
			t.Errorf("Run error %v: want it to wrap %v", err, want)
		}
	}
	// One *CheckError per failure, in the order of checks.
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("Run error %T: want a joined error", err)
	}
	var names []string
	for _, e := range joined.Unwrap() {
		var ce *CheckError
		if !errors.As(e, &ce) {
			t.Fatalf("part %v: want *CheckError", e)
		}
		names = append(names, ce.Name)
	}
	if got, want := strings.Join(names, ","), "a,<nil>,b"; got != want {
		t.Errorf("failed checks: got %s, want %s", got, want)
	}
	if got, want := err.Error(), "a: a is down"; !strings.Contains(got, want) {
		t.Errorf("error %q: want it to contain %q", got, want)
	}
}

func TestRunNoChecks(t *testing.T) {
	if err := Run(guard(t), nil, nil); err != nil {
		t.Errorf("Run(nil): got %v, want nil", err)
	}
}

// barrier returns checks that pass only when all n run at the same time:
// each arrives and waits for the others. Run one after another, the first
// would wait until its context ends.
func barrier(n int) []HealthCheck {
	var wg sync.WaitGroup
	wg.Add(n)
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	checks := make([]HealthCheck, n)
	for i := range checks {
		var once sync.Once
		checks[i] = Func("barrier", func(ctx context.Context) error {
			once.Do(wg.Done)
			select {
			case <-all:
				return nil
			case <-ctx.Done():
				return errors.New("the other checks did not run concurrently")
			}
		})
	}
	return checks
}

func TestAllRunsInParallel(t *testing.T) {
	if err := All(barrier(3)...).Check(guard(t)); err != nil {
		t.Errorf("All(barrier): got %v, want nil", err)
	}
}

func TestAnyRunsInParallel(t *testing.T) {
	// Each barrier check passes only when the other runs too.
	if err := Any(barrier(2)...).Check(guard(t)); err != nil {
		t.Errorf("Any(barrier): got %v, want nil", err)
	}
}

func TestAll(t *testing.T) {
	tests := []struct {
		name   string
		checks []HealthCheck
		want   []error // each must be wrapped; none means pass
	}{
		{"none", nil, nil},
		{"all pass", []HealthCheck{pass("x"), pass("y")}, nil},
		{"one fails", []HealthCheck{pass("x"), fail("a", errA)}, []error{errA}},
		{"every failure", []HealthCheck{fail("a", errA), pass("x"), fail("b", errB)}, []error{errA, errB}},
		{"nested", []HealthCheck{All(pass("x"), fail("a", errA)), fail("b", errB)}, []error{errA, errB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := All(tt.checks...).Check(guard(t))
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("got %v, want pass", err)
			}
			if len(tt.want) > 0 && err == nil {
				t.Fatalf("got pass, want %v", tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("got %v, want it to wrap %v", err, w)
				}
			}
		})
	}
}

func TestAllName(t *testing.T) {
	if got, want := All(pass("x"), pass("y")).Name(), "all(x,y)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := Any(pass("x"), nil).Name(), "any(x,<nil>)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAnyPassCancelsTheOthers(t *testing.T) {
	var cancelled atomic.Bool
	slow := Func("slow", func(ctx context.Context) error {
		<-ctx.Done()
		cancelled.Store(true)
		return ctx.Err()
	})
	if err := Any(slow, pass("fast")).Check(guard(t)); err != nil {
		t.Fatalf("got %v, want pass", err)
	}
	if !cancelled.Load() {
		t.Error("the slow check was not cancelled and waited for")
	}
}

func TestAnyFailures(t *testing.T) {
	err := Any(fail("a", errA), fail("b", errB), nil).Check(guard(t))
	for _, w := range []error{errA, errB, errNilCheck} {
		if !errors.Is(err, w) {
			t.Errorf("got %v, want it to wrap %v", err, w)
		}
	}
	if err := Any().Check(guard(t)); !errors.Is(err, ErrNoChecks) {
		t.Errorf("Any(): got %v, want %v", err, ErrNoChecks)
	}
}

func TestWithTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ignoresCtx := Func("stuck", func(context.Context) error {
		<-release
		return nil
	})
	tests := []struct {
		name        string
		check       HealthCheck
		d           time.Duration
		wantTimeout bool
		want        error
	}{
		{"passes", pass("x"), time.Minute, false, nil},
		{"fails on its own", fail("a", errA), time.Minute, false, errA},
		{"honours ctx", blockUntilDone("slow"), 10 * time.Millisecond, true, context.DeadlineExceeded},
		{"ignores ctx", ignoresCtx, 10 * time.Millisecond, true, context.DeadlineExceeded},
		{"no bound of its own", fail("a", errA), 0, false, errA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := WithTimeout(tt.check, tt.d)
			if got, want := c.Name(), tt.check.Name(); got != want {
				t.Errorf("name: got %q, want %q", got, want)
			}
			err := c.Check(guard(t))
			if got := errors.Is(err, ErrTimeout); got != tt.wantTimeout {
				t.Errorf("got %v: wraps ErrTimeout %v, want %v", err, got, tt.wantTimeout)
			}
			if tt.want == nil && err != nil {
				t.Errorf("got %v, want pass", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want it to wrap %v", err, tt.want)
			}
		})
	}
}

func TestWithTimeoutCallerCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(guard(t))
	cancel()
	err := WithTimeout(blockUntilDone("slow"), time.Hour).Check(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("got %v, want context.Canceled and not ErrTimeout", err)
	}
}

// flaky fails n times, then passes.
func flaky(n int, calls *atomic.Int32) HealthCheck {
	return Func("flaky", func(context.Context) error {
		if int(calls.Add(1)) <= n {
			return errA
		}
		return nil
	})
}

func TestRetry(t *testing.T) {
	var calls atomic.Int32
	if err := Retry(flaky(2, &calls), time.Millisecond).Check(guard(t)); err != nil {
		t.Fatalf("got %v, want pass", err)
	}
	if got, want := calls.Load(), int32(3); got != want {
		t.Errorf("attempts: got %d, want %d", got, want)
	}
}

func TestRetryUntilDeadline(t *testing.T) {
	var calls atomic.Int32
	ctx, cancel := context.WithTimeout(guard(t), 30*time.Millisecond)
	defer cancel()
	err := Retry(flaky(1<<30, &calls), time.Millisecond).Check(ctx)
	if !errors.Is(err, errA) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want it to wrap %v and the deadline", err, errA)
	}
	if n := calls.Load(); n < 1 || !strings.Contains(err.Error(), "attempts") {
		t.Errorf("got %v after %d calls, want the number of attempts in the error", err, n)
	}
}

func TestRetryKeepsTheLastRealError(t *testing.T) {
	// The first attempt fails for a reason; the second is cut off by the
	// deadline: the reason must survive.
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(guard(t))
	c := Func("c", func(ctx context.Context) error {
		if calls.Add(1) == 1 {
			return errA
		}
		cancel()
		return ctx.Err()
	})
	err := Retry(c, time.Millisecond).Check(ctx)
	if !errors.Is(err, errA) || !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want it to wrap %v and context.Canceled", err, errA)
	}
}

func TestRetryBadInterval(t *testing.T) {
	if err := Retry(pass("x"), 0).Check(guard(t)); err == nil || !strings.Contains(err.Error(), "interval") {
		t.Errorf("got %v, want an interval error", err)
	}
}

func TestNilCheckArguments(t *testing.T) {
	for name, c := range map[string]HealthCheck{
		"WithTimeout": WithTimeout(nil, time.Second),
		"Retry":       Retry(nil, time.Second),
		"Grace":       Grace(nil, time.Second),
		"All":         All(pass("x"), nil),
	} {
		if err := c.Check(guard(t)); !errors.Is(err, errNilCheck) {
			t.Errorf("%s(nil): got %v, want %v", name, err, errNilCheck)
		}
	}
}

func TestGrace(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const d = time.Minute
	tests := []struct {
		name      string
		now       time.Time
		deadline  time.Duration // of ctx, 0 for none
		check     HealthCheck
		wantGrace bool
		want      error
		wantCalls int32
	}{
		{"after the grace period, passes", start.Add(d), 0, pass("x"), false, nil, 1},
		{"after the grace period, fails", start.Add(2 * d), 0, fail("a", errA), false, errA, 1},
		{"deadline inside the grace period", start.Add(d / 2), time.Second, pass("x"), true, nil, 0},
		{"before start", start.Add(-d), time.Second, pass("x"), true, nil, 0},
		{"waits out a short rest", start.Add(d - time.Millisecond), 0, fail("a", errA), false, errA, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			counted := Func(tt.check.Name(), func(ctx context.Context) error {
				calls.Add(1)
				return tt.check.Check(ctx)
			})
			c := Grace(counted, d, GraceStart(start), GraceClock(func() time.Time { return tt.now }))
			ctx := guard(t)
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			err := c.Check(ctx)
			if got := errors.Is(err, ErrGracePeriod); got != tt.wantGrace {
				t.Errorf("got %v: wraps ErrGracePeriod %v, want %v", err, got, tt.wantGrace)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want it to wrap %v", err, tt.want)
			}
			if !tt.wantGrace && tt.want == nil && err != nil {
				t.Errorf("got %v, want pass", err)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("check ran %d times, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestGraceCancelledWhileWaiting(t *testing.T) {
	// No deadline: Grace has to wait, and sees the cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	c := Grace(Func("x", func(context.Context) error {
		t.Error("the check ran inside its grace period")
		return nil
	}), time.Hour, GraceClock(func() time.Time {
		return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}))
	cancel()
	err := c.Check(ctx)
	if !errors.Is(err, ErrGracePeriod) || !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want ErrGracePeriod and context.Canceled", err)
	}
}

func TestGraceDefaultStartIsConstruction(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := Grace(pass("x"), time.Minute, GraceClock(func() time.Time { return now }))
	ctx, cancel := context.WithTimeout(guard(t), time.Second)
	defer cancel()
	if err := c.Check(ctx); !errors.Is(err, ErrGracePeriod) {
		t.Errorf("at start: got %v, want ErrGracePeriod", err)
	}
	now = now.Add(time.Minute)
	if err := c.Check(ctx); err != nil {
		t.Errorf("after the grace period: got %v, want pass", err)
	}
}

func TestWithObserverSeesNestedChecks(t *testing.T) {
	var calls atomic.Int32
	checks := Retry(All(
		pass("api"),
		Any(fail("primary", errA), pass("replica")),
		flaky(1, &calls),
	), time.Millisecond)

	var got []string
	ctx := WithObserver(guard(t), func(r Result) {
		got = append(got, fmt.Sprintf("%s ok=%v", r.Name, r.OK()))
	})
	var top []string
	err := Run(ctx, []HealthCheck{checks}, func(r Result) { top = append(top, r.Name) })
	if err != nil {
		t.Fatalf("got %v, want pass", err)
	}
	if want := []string{"all(api,any(primary,replica),flaky)"}; fmt.Sprint(top) != fmt.Sprint(want) {
		t.Errorf("top-level results: got %q, want %q", top, want)
	}
	// Two attempts of All: each reports api, any(...), flaky, and Any
	// reports primary and replica.
	count := map[string]int{}
	for _, g := range got {
		count[g]++
	}
	want := map[string]int{
		"api ok=true": 2, "primary ok=false": 2, "replica ok=true": 2,
		"any(primary,replica) ok=true": 2, "flaky ok=false": 1, "flaky ok=true": 1,
	}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Errorf("observed %v, want %v", count, want)
	}
}

func TestWithObserverNil(t *testing.T) {
	ctx := guard(t)
	if WithObserver(ctx, nil) != ctx {
		t.Error("WithObserver(ctx, nil) changed ctx")
	}
}
