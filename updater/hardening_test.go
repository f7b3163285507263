package updater

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// TestAllowDowngradeDoesNotAlternate: with 1.2.0 installed and 1.1.0 and
// 1.2.0 published, AllowDowngrade must not take 1.1.0 (devices alternated
// between the two at every poll); once 1.2.0 is pulled, it does.
func TestAllowDowngradeDoesNotAlternate(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	d.cfg = func(c *Config) { c.AllowDowngrade = true }
	d.start()
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 4096), custom("1.1.0"))
	repo.AddTarget("rootfs/1.2.0.img", image("1.2.0", 4096), custom("1.2.0"))
	repo.Publish()
	d.updateTo("1.2.0")
	if ups, err := d.u.Check(context.Background()); !errors.Is(err, ErrNoUpdate) {
		t.Fatalf("Check with 1.2.0 installed and published = %v, %v; want ErrNoUpdate", ups, err)
	}
	repo.RemoveTarget("rootfs/1.2.0.img")
	repo.Publish()
	ups, err := d.u.Check(context.Background())
	if err != nil || len(ups) != 1 || ups[0].To != "1.1.0" {
		t.Fatalf("Check after 1.2.0 was pulled = %v, %v; want 1.1.0", ups, err)
	}
}

// TestConfirmAbandonsHungHealthCheck: a health check that ignores its
// context must not hang Confirm: at ConfirmTimeout it counts as failed and
// the trial is rolled back.
func TestConfirmAbandonsHungHealthCheck(t *testing.T) {
	_, d := armedDevice(t, 4096)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	d.cfg = func(c *Config) {
		c.ConfirmTimeout = 50 * time.Millisecond
		c.HealthChecks = append(c.HealthChecks, health.Func("hung", func(context.Context) error {
			<-release // ignores its context
			return nil
		}))
	}
	done := make(chan error, 1)
	go func() { done <- d.reboot() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Confirm still waits for a health check that ignores its context")
	}
	if !errors.Is(err, ErrRolledBack) || !errors.Is(err, ErrHealth) {
		t.Fatalf("Confirm = %v, want ErrRolledBack and ErrHealth", err)
	}
	if bs, _ := d.boot.Status(context.Background()); bs.Primary != "a" {
		t.Errorf("after the hung check: %+v, want a primary", bs)
	}
}

// within runs f and fails the test if it has not returned after a minute:
// a guard against deadlocks, not a timing assertion.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s: still blocked after a minute (deadlock)", what)
	}
}

// TestEventsCallbackMayCallUpdater: the Events callback calls Status and
// Check; this deadlocked when events were delivered under the updater's
// lock. Events still arrive in order, all of them before Install returns.
func TestEventsCallbackMayCallUpdater(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	var calls atomic.Int32
	d.cfg = func(c *Config) {
		events := c.Events
		c.Events = func(e Event) {
			events(e)
			sc, ok := e.(StateChanged)
			if !ok {
				return
			}
			ctx := context.Background()
			switch sc.To {
			case StateDownloading:
				if _, err := d.u.Status(ctx); err != nil {
					t.Errorf("Status from the callback: %v", err)
				}
				calls.Add(1)
			case StateVerified:
				if _, err := d.u.Check(ctx); err != nil {
					t.Errorf("Check from the callback: %v", err)
				}
				calls.Add(1)
			}
		}
	}
	d.start()
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 4096), custom("1.1.0"))
	repo.Publish()
	within(t, "update with a callback calling the updater", func() {
		if err := d.update(); err != nil {
			t.Errorf("update: %v", err)
		}
	})
	if got := calls.Load(); got != 2 {
		t.Errorf("callback called the updater %d times, want 2", got)
	}
	want := []State{StateDownloading, StateVerified, StateArmed}
	if got := d.states(); !equalStates(got, want) {
		t.Errorf("states = %v, want %v", got, want)
	}
}

// TestStatusDuringStalledDownload: Status answers while a download is
// stalled inside Install (it waited for the updater's lock).
func TestStatusDuringStalledDownload(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	img := image("1.1.0", 4<<20)
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()
	file := "/targets/" + repo.Target("rootfs/1.1.0.img").File
	stalled, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != file {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(img)))
			w.Write(img[:len(img)/2])
			w.(http.Flusher).Flush()
			once.Do(func() { close(stalled) })
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	installed := make(chan error, 1)
	go func() { installed <- d.updateCtx(ctx) }()
	<-stalled
	within(t, "Status during a stalled download", func() {
		st, err := d.u.Status(context.Background())
		if err != nil {
			t.Errorf("Status: %v", err)
			return
		}
		if p := st.Components[0].Pending; p == nil || p.Phase != PhaseDownloading || p.Version != "1.1.0" {
			t.Errorf("Status during the download: pending %+v, want 1.1.0 downloading", p)
		}
	})
	cancel()
	close(release)
	if err := <-installed; err == nil {
		t.Error("the cancelled install succeeded")
	}
}

// htmlProxy makes the target at path answer 200 with an HTML page (a
// captive portal or a broken proxy) while on is true; padded to the
// target's length when pad is set, so that only the hash tells.
func htmlProxy(repo *tuftest.Repo, path string, on *atomic.Bool, pad bool) {
	file := "/targets/" + repo.Target(path).File
	page := []byte("<html><body>Please log in to continue</body></html>")
	if pad {
		page = append(page, bytes.Repeat([]byte(" "), int(repo.Target(path).Length)-len(page))...)
	}
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != file || !on.Load() {
				h.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/html")
			w.Write(page)
		})
	})
}

// TestTransitFaultsBackOffNeverBan: bytes that fail verification in
// transit (a proxy answering 200 with HTML) blocklisted a good release
// after three tries. Now they back off, growing, reset by new signed
// metadata, and the release installs once the network is fixed.
func TestTransitFaultsBackOffNeverBan(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(dt time.Duration) { clock.Add(int64(dt)) }
	d.cfg = func(c *Config) { c.Now = now }
	d.start()
	img := image("1.1.0", 64<<10)
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()
	var html atomic.Bool
	html.Store(true)
	htmlProxy(repo, "rootfs/1.1.0.img", &html, false)
	sha := repo.Target("rootfs/1.1.0.img").SHA256
	ctx := context.Background()

	var last time.Duration
	for i := 1; i <= 5; i++ {
		if err := d.update(); !errors.Is(err, verify.ErrVerification) {
			t.Fatalf("attempt %d: %v, want ErrVerification", i, err)
		}
		b, ok := d.u.st.p.Backoff[sha]
		if !ok || b.Failures != i {
			t.Fatalf("attempt %d: backoff %+v, want %d failures", i, b, i)
		}
		wait := b.Until.Sub(now())
		if wait <= last {
			t.Errorf("attempt %d: backoff %s, not longer than %s", i, wait, last)
		}
		last = wait
		if _, err := d.u.Check(ctx); !errors.Is(err, ErrBackoff) || errors.Is(err, ErrNoUpdate) {
			t.Fatalf("Check during the backoff = %v, want ErrBackoff (and not ErrNoUpdate)", err)
		}
		if err := d.u.RunOnce(ctx); !errors.Is(err, ErrBackoff) {
			t.Fatalf("RunOnce during the backoff = %v, want ErrBackoff", err)
		}
		advance(wait)
	}
	st, _ := d.u.Status(ctx)
	if len(st.Blocklist) != 0 {
		t.Fatalf("blocklist = %+v after transit faults, want none", st.Blocklist)
	}
	// New signed metadata (another release published) resets the backoff.
	if err := d.update(); !errors.Is(err, verify.ErrVerification) {
		t.Fatalf("sixth attempt: %v", err)
	}
	repo.AddTarget("other/1.0.0.img", image("other", 100), verify.Custom{Component: "other", Version: "1.0.0", Hardware: []string{hw}})
	repo.Publish()
	if ups, err := d.u.Check(ctx); err != nil || len(ups) != 1 {
		t.Fatalf("Check after new metadata = %v, %v; want the release again", ups, err)
	}
	if b, ok := d.u.st.p.Backoff[sha]; ok {
		t.Errorf("backoff %+v survived new signed metadata", b)
	}
	// The network is fixed: it installs.
	html.Store(false)
	d.updateTo("1.1.0")
}

// TestTransitFaultTriesNextMirror: when the bytes of the first server fail
// verification (right length, wrong hash), the same Install fetches them
// again from the next mirror.
func TestTransitFaultTriesNextMirror(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	img := image("1.1.0", 64<<10)
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()
	mirror := repo.Mirror()
	var html atomic.Bool
	html.Store(true)
	htmlProxy(repo, "rootfs/1.1.0.img", &html, true)
	d.cfg = func(c *Config) { c.TargetsMirrors = []string{mirror.URL + "/targets/"} }
	d.start()
	if err := d.update(); err != nil {
		t.Fatalf("update with a good mirror: %v", err)
	}
	if !bytes.Equal(d.b.Bytes(), img) {
		t.Error("slot b does not hold the image")
	}
}

func TestBackoffDelay(t *testing.T) {
	for _, tt := range []struct {
		failures int
		want     time.Duration
	}{
		{1, time.Minute},
		{2, 2 * time.Minute},
		{5, 16 * time.Minute},
		{11, 1024 * time.Minute},
		{12, 24 * time.Hour},
		{1000, 24 * time.Hour},
	} {
		if got := backoffDelay(tt.failures); got != tt.want {
			t.Errorf("backoffDelay(%d) = %s, want %s", tt.failures, got, tt.want)
		}
	}
}
