package updater

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/verify"
)

const hw = "gw-test"

// image is the n-byte image of a release (tuftest.Image).
var image = tuftest.Image

func custom(version string) verify.Custom {
	return verify.Custom{Component: "rootfs", Version: version, Hardware: []string{hw}}
}

// device is a simulated device: two in-memory slots and a fake bootloader,
// a state directory that survives "restarts", and health checks the test
// controls.
type device struct {
	t        *testing.T
	repo     *tuftest.Repo
	boot     *slotstest.FakeBoot
	a, b     *slotstest.MemSlot
	pc       *slotstest.PowerCut
	stateDir string
	healthy  atomic.Bool
	restarts atomic.Int32
	mu       sync.Mutex
	events   []Event
	u        *Updater
	cfg      func(*Config)
}

func newDevice(t *testing.T, repo *tuftest.Repo) *device {
	t.Helper()
	return newDeviceWith(t, repo, nil)
}

// newDeviceWith is newDevice with cfg applied to the configuration from
// the first start on.
func newDeviceWith(t *testing.T, repo *tuftest.Repo, cfg func(*Config)) *device {
	t.Helper()
	d := &device{t: t, repo: repo, stateDir: t.TempDir(), pc: slotstest.NewPowerCut(), cfg: cfg}
	d.boot = slotstest.NewFakeBoot("a", "b")
	d.boot.SetPowerCut(d.pc)
	d.a = slotstest.NewMemSlot("a", 64<<20, slotstest.WithBoot(d.boot), slotstest.WithPowerCut(d.pc))
	d.b = slotstest.NewMemSlot("b", 64<<20, slotstest.WithBoot(d.boot), slotstest.WithPowerCut(d.pc))
	d.healthy.Store(true)
	d.start()
	return d
}

// start simulates a process start: a new Updater on the same state (the
// previous one is closed, as its process would have ended).
func (d *device) start() {
	d.t.Helper()
	if d.u != nil {
		d.u.Close()
	}
	u, err := New(d.config())
	if err != nil {
		d.t.Fatalf("New: %v", err)
	}
	d.u = u
	d.t.Cleanup(func() { u.Close() })
}

// config is the device's updater configuration.
func (d *device) config() Config {
	cfg := Config{
		Hardware:       hw,
		StateDir:       d.stateDir,
		TrustedRoot:    d.repo.Root(),
		MetadataURL:    d.repo.MetadataURL(),
		TargetsURL:     d.repo.TargetsURL(),
		Components:     []Component{{Name: "rootfs", Slots: []slots.Slot{d.a, d.b}, Boot: d.boot, FactoryVersion: "1.0.0"}},
		ConfirmTimeout: 10 * time.Second,
		HealthChecks: []health.HealthCheck{health.Func("app", func(ctx context.Context) error {
			if !d.healthy.Load() {
				return errors.New("app does not answer")
			}
			return nil
		})},
		Restart: func(ctx context.Context, component string) error {
			d.restarts.Add(1)
			return nil
		},
		Events: func(e Event) {
			d.mu.Lock()
			d.events = append(d.events, e)
			d.mu.Unlock()
		},
	}
	if d.cfg != nil {
		d.cfg(&cfg)
	}
	return cfg
}

// reboot runs the bootloader and starts the process, which confirms.
func (d *device) reboot() error {
	d.t.Helper()
	if err := d.boot.Reboot(); err != nil {
		d.t.Fatalf("reboot: %v", err)
	}
	d.start()
	return d.u.Confirm(context.Background())
}

// armedDevice is a device that has installed release 1.1.0, an n-byte
// image, and armed its trial: the next reboot tries it.
func armedDevice(t *testing.T, n int) (*tuftest.Repo, *device) {
	t.Helper()
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", n), custom("1.1.0"))
	repo.Publish()
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	return repo, d
}

func (d *device) update() error {
	return d.updateCtx(context.Background())
}

func (d *device) installed() string {
	st, err := d.u.Status(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return st.Components[0].Installed
}

func (d *device) states() []State {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []State
	for _, e := range d.events {
		if sc, ok := e.(StateChanged); ok {
			out = append(out, sc.To)
		}
	}
	return out
}

// updateTo installs what the repository offers, reboots into it and
// confirms it; the test fails unless version is then installed.
func (d *device) updateTo(version string) {
	d.t.Helper()
	if err := d.update(); err != nil {
		d.t.Fatalf("update to %s: %v", version, err)
	}
	d.confirmed(version)
}

// confirmed reboots into the armed install and confirms it; the test
// fails unless version is then installed.
func (d *device) confirmed(version string) {
	d.t.Helper()
	if err := d.reboot(); err != nil {
		d.t.Fatalf("confirm %s: %v", version, err)
	}
	if got := d.installed(); got != version {
		d.t.Fatalf("installed = %q, want %q", got, version)
	}
}

// wantPending fails the test unless the pending install of rootfs used
// method and slot a (where the delta tests install) starts with img.
func (d *device) wantPending(method string, img []byte) {
	d.t.Helper()
	if got := d.u.st.component("rootfs").Pending.Method; got != method {
		d.t.Errorf("method %s, want %s", got, method)
	}
	if !bytes.Equal(d.a.Bytes()[:len(img)], img) {
		d.t.Fatal("slot a does not hold the new image")
	}
}

// setCheckpointEvery makes the transfers of the test checkpoint every n
// bytes.
func setCheckpointEvery(t *testing.T, n int64) {
	old := checkpointEvery
	checkpointEvery = n
	t.Cleanup(func() { checkpointEvery = old })
}

// countRequests counts the requests to repo whose URL path match accepts.
func countRequests(repo *tuftest.Repo, match func(path string) bool) *atomic.Int64 {
	var n atomic.Int64
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if match(r.URL.Path) {
				n.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	return &n
}

// ignoreRange makes repo answer the requests whose URL path match
// accepts in full, as servers without Range support do.
func ignoreRange(repo *tuftest.Repo, match func(path string) bool) {
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if match(r.URL.Path) {
				r.Header.Del("Range")
			}
			h.ServeHTTP(w, r)
		})
	})
}

func TestUpdateCommitted(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	img := image("1.1.0", 9<<20+17) // several checkpoints and an odd tail
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()

	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got := d.restarts.Load(); got != 1 {
		t.Errorf("restarts requested = %d, want 1", got)
	}
	bs, _ := d.boot.Status(context.Background())
	if bs.Trial != "b" {
		t.Fatalf("after install: trial = %q, want b", bs.Trial)
	}
	if !bytes.Equal(d.b.Bytes(), img) {
		t.Fatal("slot b does not hold the image")
	}
	if err := d.reboot(); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	bs, _ = d.boot.Status(context.Background())
	if bs.Primary != "b" || bs.Trial != "" || bs.Booted != "b" {
		t.Errorf("after confirm: %+v, want b primary, booted, no trial", bs)
	}
	if got, want := d.installed(), "1.1.0"; got != want {
		t.Errorf("installed = %q, want %q", got, want)
	}
	want := []State{StateDownloading, StateVerified, StateArmed, StateConfirming, StateCommitted}
	if got := d.states(); !equalStates(got, want) {
		t.Errorf("states = %v, want %v", got, want)
	}
	if _, err := d.u.Check(context.Background()); !errors.Is(err, ErrNoUpdate) {
		t.Errorf("Check after commit: %v, want ErrNoUpdate", err)
	}
	// The next update goes to slot a, the one not running.
	img2 := image("1.2.0", 5000)
	repo.AddTarget("rootfs/1.2.0.img", img2, custom("1.2.0"))
	repo.Publish()
	if err := d.update(); err != nil {
		t.Fatalf("second update: %v", err)
	}
	if !bytes.Equal(d.a.Bytes(), img2) {
		t.Error("second image not in slot a")
	}
	d.confirmed("1.2.0")
}

func equalStates(a, b []State) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestHealthFailureRollsBack(t *testing.T) {
	repo, d := armedDevice(t, 4096)
	d.healthy.Store(false)
	err := d.reboot()
	if !errors.Is(err, ErrRolledBack) || !errors.Is(err, ErrHealth) {
		t.Fatalf("confirm: %v, want ErrRolledBack and ErrHealth", err)
	}
	if !strings.Contains(err.Error(), "app does not answer") {
		t.Errorf("error %q does not name the failed check's reason", err)
	}
	// Rolled back: a restart into the primary was requested.
	if got := d.restarts.Load(); got != 2 {
		t.Errorf("restarts = %d, want 2 (after arm, after rollback)", got)
	}
	d.healthy.Store(true)
	if err := d.reboot(); err != nil {
		t.Fatalf("boot after rollback: %v", err)
	}
	bs, _ := d.boot.Status(context.Background())
	if bs.Booted != "a" || bs.Primary != "a" || bs.Trial != "" {
		t.Errorf("after rollback: %+v, want a booted and primary", bs)
	}
	if got := d.installed(); got != "1.0.0" {
		t.Errorf("installed = %q, want 1.0.0", got)
	}
	// Never retried.
	if _, err := d.u.Check(context.Background()); !errors.Is(err, verify.ErrIncompatible) && !errors.Is(err, ErrNoUpdate) {
		t.Errorf("Check after rollback: %v, want no update", err)
	}
	st, _ := d.u.Status(context.Background())
	if len(st.Blocklist) != 1 || st.Blocklist[0].Version != "1.1.0" {
		t.Errorf("blocklist = %+v, want 1.1.0", st.Blocklist)
	}
	// A newer release is taken.
	repo.AddTarget("rootfs/1.1.1.img", image("1.1.1", 4096), custom("1.1.1"))
	repo.Publish()
	d.updateTo("1.1.1")
}

func TestBootloaderFallback(t *testing.T) {
	_, d := armedDevice(t, 4096)
	// The new version never reaches userspace: every try fails before
	// Confirm runs, until the bootloader falls back.
	for range 3 {
		if err := d.boot.Reboot(); err != nil {
			t.Fatal(err)
		}
		if got := d.boot.Booted(); got != "b" {
			t.Fatalf("booted %s, want trial b", got)
		}
	}
	err := d.reboot()
	if !errors.Is(err, ErrRolledBack) {
		t.Fatalf("confirm after fallback: %v, want ErrRolledBack", err)
	}
	bs, _ := d.boot.Status(context.Background())
	if bs.Booted != "a" || bs.Trial != "" {
		t.Errorf("after fallback: %+v, want a booted and trial cleared", bs)
	}
	if _, err := d.u.Check(context.Background()); err == nil {
		t.Error("Check after fallback offered the failed release again")
	}
}

func TestBadInput(t *testing.T) {
	good := image("1.1.0", 3000)
	tests := []struct {
		name    string
		setup   func(t *testing.T, repo *tuftest.Repo, d *device)
		wantErr error
	}{
		{"tampered bytes", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.AddTarget("rootfs/1.1.0.img", good, custom("1.1.0"))
			repo.Publish()
			evil := bytes.Clone(good)
			evil[100] ^= 1
			repo.SetTargetBytes("rootfs/1.1.0.img", evil)
		}, verify.ErrVerification},
		{"truncated bytes", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.AddTarget("rootfs/1.1.0.img", good, custom("1.1.0"))
			repo.Publish()
			repo.SetTargetBytes("rootfs/1.1.0.img", good[:1000])
		}, nil},
		{"oversized bytes", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.AddTarget("rootfs/1.1.0.img", good, custom("1.1.0"))
			repo.Publish()
			repo.SetTargetBytes("rootfs/1.1.0.img", append(bytes.Clone(good), make([]byte, 1<<20)...))
		}, nil},
		{"wrong hardware", func(t *testing.T, repo *tuftest.Repo, d *device) {
			c := custom("1.1.0")
			c.Hardware = []string{"other-board"}
			repo.AddTarget("rootfs/1.1.0.img", good, c)
			repo.Publish()
		}, verify.ErrIncompatible},
		{"downgrade", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.AddTarget("rootfs/0.9.0.img", good, custom("0.9.0"))
			repo.Publish()
		}, ErrNoUpdate},
		{"min version not met", func(t *testing.T, repo *tuftest.Repo, d *device) {
			c := custom("2.0.0")
			c.MinVersion = "1.5.0"
			repo.AddTarget("rootfs/2.0.0.img", good, c)
			repo.Publish()
		}, verify.ErrIncompatible},
		{"custom metadata missing", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.AddTarget("rootfs/1.1.0.img", good, nil)
			repo.Publish()
		}, ErrNoUpdate},
		{"expired timestamp", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.AddTarget("rootfs/1.1.0.img", good, custom("1.1.0"))
			repo.SetExpires("timestamp", time.Now().Add(-time.Hour))
			repo.Publish()
		}, verify.ErrUntrusted},
		{"unsigned targets", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.AddTarget("rootfs/1.1.0.img", good, custom("1.1.0"))
			repo.Publish()
			repo.SignWith("targets") // no keys: no signature
		}, verify.ErrUntrusted},
		{"under threshold", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.SetThreshold("targets", 2)
			repo.AddTarget("rootfs/1.1.0.img", good, custom("1.1.0"))
			repo.Publish()
			repo.SignWith("targets", repo.Keys("targets")[0])
		}, verify.ErrUntrusted},
		{"clock before build time", func(t *testing.T, repo *tuftest.Repo, d *device) {
			repo.AddTarget("rootfs/1.1.0.img", good, custom("1.1.0"))
			repo.Publish()
			d.cfg = func(c *Config) {
				c.Now = func() time.Time { return time.Unix(0, 0) }
				c.MinTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			}
			d.start()
		}, verify.ErrClockUnset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			d := newDevice(t, repo)
			tt.setup(t, repo, d)
			err := d.update()
			if err == nil {
				t.Fatal("update succeeded, want error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("update: %v, want %v", err, tt.wantErr)
			}
			bs, serr := d.boot.Status(context.Background())
			if serr != nil {
				t.Fatal(serr)
			}
			if bs.Trial != "" || bs.Primary != "a" || bs.Booted != "a" {
				t.Errorf("boot state %+v: something was activated", bs)
			}
			if got := d.restarts.Load(); got != 0 {
				t.Errorf("restarts = %d, want 0", got)
			}
			if got := d.installed(); got != "1.0.0" {
				t.Errorf("installed = %q, want 1.0.0", got)
			}
		})
	}
}

func TestSlotFailsMidWriteThenResumes(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	img := image("1.1.0", 10<<20)
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()
	var served atomic.Int64
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(countingWriter{w, &served}, r)
		})
	})
	d.b.FailWritesAfterBytes(6 << 20)
	if err := d.update(); err == nil {
		t.Fatal("update with failing slot succeeded")
	}
	if bs, _ := d.boot.Status(context.Background()); bs.Trial != "" {
		t.Fatalf("half-written slot armed: %+v", bs)
	}
	d.b.FailWritesAfterBytes(-1)
	first := served.Load()
	d.start() // a new process resumes from the durable checkpoint
	if err := d.update(); err != nil {
		t.Fatalf("resumed update: %v", err)
	}
	resent := served.Load() - first
	if resent > int64(len(img))-checkpointEvery+(1<<20) {
		t.Errorf("resume fetched %d bytes again of %d: the checkpoint was not used", resent, len(img))
	}
	if !bytes.Equal(d.b.Bytes(), img) {
		t.Fatal("slot b does not hold the image after resume")
	}
	if err := d.reboot(); err != nil {
		t.Fatalf("confirm: %v", err)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	if strings.Contains(fmt.Sprint(c.ResponseWriter.Header().Get("Content-Type")), "json") {
		return c.ResponseWriter.Write(p)
	}
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func TestCompressedTarget(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	img := bytes.Repeat([]byte("compressible switchback image "), 200_000)
	repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 1<<20)
	repo.Publish()
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if !bytes.Equal(d.b.Bytes(), img) {
		t.Fatal("slot b does not hold the decompressed image")
	}
	if err := d.reboot(); err != nil {
		t.Fatalf("confirm: %v", err)
	}
}

func TestUpdateServerMustBeReachableToCommit(t *testing.T) {
	repo, d := armedDevice(t, 2000)
	// The new version lost the update server (say, a broken network
	// configuration): it must not be committed.
	repo.Wrap(func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "unreachable", http.StatusServiceUnavailable)
		})
	})
	d.cfg = func(c *Config) { c.ConfirmTimeout = 2 * time.Second }
	if err := d.reboot(); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("confirm without server: %v, want ErrRolledBack", err)
	}
}

// TestIdleCheckTwoRequests: once the device trusts the repository's
// metadata, a check that finds nothing new is two requests, the next root
// answered 404 and the timestamp answered 304 with no body; a new release is still seen by the next check.
func TestIdleCheckTwoRequests(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	var requests []string
	var notModified int
	var mu sync.Mutex
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w}
			h.ServeHTTP(rec, r)
			mu.Lock()
			requests = append(requests, r.URL.Path)
			if rec.status == http.StatusNotModified {
				notModified++
			}
			mu.Unlock()
		})
	})
	check := func() ([]Update, []string, int) {
		t.Helper()
		mu.Lock()
		before, nm := len(requests), notModified
		mu.Unlock()
		ups, err := d.u.Check(context.Background())
		if err != nil && !errors.Is(err, verify.ErrNoUpdate) {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return ups, slices.Clone(requests[before:]), notModified - nm
	}
	check() // first contact: the full workflow
	for i := range 2 {
		ups, req, nm := check()
		if len(ups) != 0 || !slices.Equal(req, []string{"/metadata/2.root.json", "/metadata/timestamp.json"}) || nm != 1 {
			t.Errorf("idle check %d: %d updates, requests %q, %d answered 304; want 0, the next root (404) then the timestamp, 1", i, len(ups), req, nm)
		}
	}
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 4096), custom("1.1.0"))
	repo.Publish()
	if ups, req, _ := check(); len(ups) != 1 || ups[0].To != "1.1.0" {
		t.Errorf("check after a release: %+v (requests %q), want 1.1.0", ups, req)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
