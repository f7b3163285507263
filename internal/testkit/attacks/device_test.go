package attacks

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// hw is the hardware id of the simulated device.
const hw = "gw-attack"

// imageSize keeps the suite fast: the attacks are about metadata and
// bytes, not volume.
const imageSize = 4096

// image returns deterministic pseudo-random image bytes for a version.
func image(version string) []byte {
	r := rand.New(rand.NewPCG(uint64(len(version)), uint64(version[len(version)-1])))
	b := make([]byte, imageSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "switchback image "+version)
	return b
}

func custom(version string) verify.Custom {
	return verify.Custom{Component: "rootfs", Version: version, Hardware: []string{hw}}
}

func targetPath(version string) string { return "rootfs/" + version + ".img" }

// release stages and publishes an honest release.
func release(r *tuftest.Repo, version string) []byte {
	img := image(version)
	r.AddTarget(targetPath(version), img, custom(version))
	r.Publish()
	return img
}

// clock is a settable clock shared by a repository and a device.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// device is a simulated device running the real updater: two in-memory
// slots, a fake bootloader with a boot counter, a state directory that
// survives restarts, and an HTTP client that counts what it reads.
type device struct {
	t        *testing.T
	repo     *tuftest.Repo
	boot     *slotstest.FakeBoot
	a, b     *slotstest.MemSlot
	stateDir string
	net      *countingTransport
	restarts atomic.Int32
	mu       sync.Mutex
	events   []updater.Event
	u        *updater.Updater
	logs     *logRecorder
	// cfg, when set, adjusts the Config of every start.
	cfg func(*updater.Config)
}

func newDevice(t *testing.T, repo *tuftest.Repo, cfg func(*updater.Config)) *device {
	t.Helper()
	d := &device{t: t, repo: repo, stateDir: t.TempDir(), cfg: cfg, logs: &logRecorder{}}
	d.boot = slotstest.NewFakeBoot("a", "b")
	d.a = slotstest.NewMemSlot("a", 1<<20, slotstest.WithBoot(d.boot))
	d.b = slotstest.NewMemSlot("b", 1<<20, slotstest.WithBoot(d.boot))
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	d.net = &countingTransport{rt: tr, read: map[string]int64{}, hosts: map[string]int{}}
	t.Cleanup(func() {
		if n := d.net.open.Load(); n != 0 {
			t.Errorf("%d response bodies left open", n)
		}
	})
	d.start()
	return d
}

// start simulates a process start: a new Updater on the same state.
func (d *device) start() {
	d.t.Helper()
	if d.u != nil {
		d.u.Close() // its process ended
	}
	cfg := updater.Config{
		Hardware:    hw,
		StateDir:    d.stateDir,
		TrustedRoot: d.repo.Root(),
		MetadataURL: d.repo.MetadataURL(),
		TargetsURL:  d.repo.TargetsURL(),
		Components: []updater.Component{{Name: "rootfs", Slots: []slots.Slot{d.a, d.b},
			Boot: d.boot, FactoryVersion: "1.0.0"}},
		ConfirmTimeout: 10 * time.Second,
		// Every honest update starts with a Check, a full TUF refresh
		// against the server: the reachability check at confirmation
		// would only repeat it, at a cost the suite pays dozens of times.
		SkipServerCheck: true,
		// Every check is the full TUF workflow, root walk included (the
		// default; said here because the attacks rely on it).
		FullRefreshInterval: 0,
		HTTPClient:          &http.Client{Transport: d.net},
		Logger:              slog.New(d.logs),
		Restart: func(ctx context.Context, component string) error {
			d.restarts.Add(1)
			return nil
		},
		Events: func(e updater.Event) {
			d.mu.Lock()
			d.events = append(d.events, e)
			d.mu.Unlock()
		},
	}
	if d.cfg != nil {
		d.cfg(&cfg)
	}
	u, err := updater.New(cfg)
	if err != nil {
		d.t.Fatalf("updater.New: %v", err)
	}
	d.u = u
}

// update checks and installs what was found.
func (d *device) update(ctx context.Context) error {
	ups, err := d.u.Check(ctx)
	if err != nil {
		return err
	}
	for _, up := range ups {
		if err := d.u.Install(ctx, up); err != nil {
			return err
		}
	}
	return nil
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

func (d *device) status() updater.ComponentStatus {
	d.t.Helper()
	st, err := d.u.Status(context.Background())
	if err != nil {
		d.t.Fatalf("Status: %v", err)
	}
	return st.Components[0]
}

// inactive returns the slot an update is written to: the one not running.
func (d *device) inactive() *slotstest.MemSlot {
	if d.boot.Booted() == "a" {
		return d.b
	}
	return d.a
}

// trust has the device refresh its trusted metadata (Check), as it does
// before an attack begins; releases found are not installed.
func (d *device) trust() {
	d.t.Helper()
	if _, err := d.u.Check(context.Background()); err != nil && !errors.Is(err, updater.ErrNoUpdate) {
		d.t.Fatalf("Check: %v", err)
	}
}

// trustingDevice is a new repository and a device that has refreshed
// its trusted metadata from it (trust).
func trustingDevice(t *testing.T) (*tuftest.Repo, *device) {
	t.Helper()
	r := tuftest.New(t)
	d := newDevice(t, r, nil)
	d.trust()
	return r, d
}

// honestUpdate publishes version, updates, reboots and confirms, and
// checks that the device runs it committed: the proof that an attack left
// the device able to update.
func (d *device) honestUpdate(version string) {
	d.t.Helper()
	img := release(d.repo, version)
	d.mustUpdate(version, img)
}

// mustUpdate takes the published release version through the whole path.
func (d *device) mustUpdate(version string, img []byte) {
	d.t.Helper()
	slot := d.inactive()
	if err := d.update(context.Background()); err != nil {
		d.t.Fatalf("honest update to %s: %v", version, err)
	}
	if !bytes.Equal(slot.Bytes(), img) {
		d.t.Fatalf("honest update to %s: slot %s does not hold the image", version, slot.Name())
	}
	if err := d.reboot(); err != nil {
		d.t.Fatalf("honest update to %s: confirm: %v", version, err)
	}
	bs, err := d.boot.Status(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	if bs.Primary != slot.Name() || bs.Booted != slot.Name() || bs.Trial != "" {
		d.t.Fatalf("honest update to %s: boot status %+v, want %s committed", version, bs, slot.Name())
	}
	if got := d.status().Installed; got != version {
		d.t.Fatalf("honest update: installed %q, want %q", got, version)
	}
}

// snapshot is what must not change while an attack is refused.
type snapshot struct {
	boot      slots.BootStatus
	restarts  int32
	installed string
	written   map[string]int64
	events    int
}

func (d *device) snap() snapshot {
	d.t.Helper()
	bs, err := d.boot.Status(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	d.mu.Lock()
	n := len(d.events)
	d.mu.Unlock()
	return snapshot{
		boot:      bs,
		restarts:  d.restarts.Load(),
		installed: d.status().Installed,
		written:   map[string]int64{"a": d.a.BytesWritten(), "b": d.b.BytesWritten()},
		events:    n,
	}
}

// writes says how many bytes an attack may put in the inactive slot.
type writes int

const (
	// noWrites: the attack is caught before the transfer starts.
	noWrites writes = iota
	// someWrites: target bytes flowed into the inactive slot (as they
	// stream), but the slot is never armed.
	someWrites
)

// assertRefused checks that nothing of the attack reached the device:
// the boot control unchanged (no trial, same primary and booted slot), no
// restart requested, the installed version unchanged, no state beyond
// "downloading" reached, the running slot untouched and, for attacks
// caught before the transfer, not a byte written anywhere.
func (d *device) assertRefused(before snapshot, w writes) {
	d.t.Helper()
	after := d.snap()
	if !equalBoot(after.boot, before.boot) {
		d.t.Errorf("boot status %+v, was %+v: something was activated", after.boot, before.boot)
	}
	if after.boot.Trial != "" {
		d.t.Errorf("slot %s armed for trial", after.boot.Trial)
	}
	if after.restarts != before.restarts {
		d.t.Errorf("restarts requested: %d, want %d", after.restarts, before.restarts)
	}
	if after.installed != before.installed {
		d.t.Errorf("installed %q, want %q", after.installed, before.installed)
	}
	running := before.boot.Booted
	if after.written[running] != before.written[running] {
		d.t.Errorf("running slot %s written: %d bytes", running, after.written[running]-before.written[running])
	}
	if w == noWrites {
		for name := range after.written {
			if got := after.written[name] - before.written[name]; got != 0 {
				d.t.Errorf("slot %s: %d bytes written, want 0", name, got)
			}
		}
	}
	d.mu.Lock()
	evs := slices.Clone(d.events[min(before.events, len(d.events)):])
	d.mu.Unlock()
	for _, e := range evs {
		if sc, ok := e.(updater.StateChanged); ok {
			switch sc.To {
			case updater.StateVerified, updater.StateArmed, updater.StateConfirming, updater.StateCommitted:
				d.t.Errorf("state %s reached for %s during the attack", sc.To, sc.Version)
			}
		}
	}
	if pd := d.status().Pending; pd != nil && pd.Phase != updater.PhaseDownloading {
		d.t.Errorf("pending install in phase %s, want none or downloading", pd.Phase)
	}
}

// updateRefused runs an update that must fail with one of wants (see
// wantErr, for op) and checks that it wrote nothing and changed nothing
// (assertRefused); it returns the update's error.
func (d *device) updateRefused(op string, wants ...error) error {
	d.t.Helper()
	before := d.snap()
	err := d.update(context.Background())
	wantErr(d.t, op, err, wants...)
	d.assertRefused(before, noWrites)
	return err
}

func equalBoot(a, b slots.BootStatus) bool {
	return a.Booted == b.Booted && a.Primary == b.Primary && a.Trial == b.Trial &&
		a.TriesLeft == b.TriesLeft && slices.Equal(a.Bad, b.Bad)
}

// wantErr fails unless err wraps every one of wants.
func wantErr(t *testing.T, op string, err error, wants ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want an error wrapping %v", op, wants)
	}
	for _, w := range wants {
		if !errors.Is(err, w) {
			t.Fatalf("%s: %v\nwant it to wrap %T %v", op, err, w, w)
		}
	}
}

// trustedRootVersion reads the version of the root the device stored.
func (d *device) trustedRootVersion() int64 {
	d.t.Helper()
	b, err := os.ReadFile(filepath.Join(d.stateDir, "tuf", "root.json"))
	if err != nil {
		d.t.Fatalf("stored root: %v", err)
	}
	r, err := metadata.Root().FromBytes(b)
	if err != nil {
		d.t.Fatalf("stored root: %v", err)
	}
	return r.Signed.Version
}

// countingTransport counts the body bytes the device reads per URL path
// and the bodies it leaves open.
type countingTransport struct {
	rt    http.RoundTripper
	open  atomic.Int64
	mu    sync.Mutex
	read  map[string]int64
	hosts map[string]int // requests per host
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.hosts[req.URL.Host]++
	c.mu.Unlock()
	res, err := c.rt.RoundTrip(req)
	if err == nil {
		c.open.Add(1)
		res.Body = &countingBody{ReadCloser: res.Body, c: c, path: req.URL.Path}
	}
	return res, err
}

// bytesRead returns what the device read of bodies whose path ends in
// suffix.
func (c *countingTransport) bytesRead(suffix string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for p, k := range c.read {
		if strings.HasSuffix(p, suffix) {
			n += k
		}
	}
	return n
}

type countingBody struct {
	io.ReadCloser
	c      *countingTransport
	path   string
	closed atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.mu.Lock()
	b.c.read[b.path] += int64(n)
	b.c.mu.Unlock()
	return n, err
}

func (b *countingBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.c.open.Add(-1)
	}
	return b.ReadCloser.Close()
}

// fault is a switchable HTTP fault on the paths for which match is true.
type fault struct {
	on    atomic.Bool
	match func(path string) bool
	h     func(w http.ResponseWriter, req *http.Request, next http.Handler)
}

// addFault wraps repo's server with a fault, switched on.
func addFault(repo *tuftest.Repo, match func(string) bool, h func(w http.ResponseWriter, req *http.Request, next http.Handler)) *fault {
	f := &fault{match: match, h: h}
	f.on.Store(true)
	repo.Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if f.on.Load() && f.match(req.URL.Path) {
				f.h(w, req, next)
				return
			}
			next.ServeHTTP(w, req)
		})
	})
	return f
}

func suffix(s string) func(string) bool {
	return func(p string) bool { return strings.HasSuffix(p, s) }
}

func prefix(s string) func(string) bool {
	return func(p string) bool { return strings.HasPrefix(p, s) }
}

// targetFile returns the URL path of target version's bytes.
func targetFile(r *tuftest.Repo, version string) string {
	return "/targets/" + r.Target(targetPath(version)).File
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// compressLike compresses data with zstd and pads the stream with a
// skippable frame to exactly n bytes: a well-formed stream of the length
// the metadata signs, with other content.
func compressLike(t *testing.T, data []byte, n int64) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	must(t, err)
	out := enc.EncodeAll(data, nil)
	must(t, enc.Close())
	return padSkippable(t, out, n)
}

// padSkippable appends a zstd skippable frame so that stream is n bytes.
func padSkippable(t *testing.T, stream []byte, n int64) []byte {
	t.Helper()
	pad := n - int64(len(stream)) - 8
	if pad < 0 {
		t.Fatalf("zstd stream of %d bytes does not fit in %d", len(stream), n)
	}
	out := binary.LittleEndian.AppendUint32(stream, 0x184D2A50)
	out = binary.LittleEndian.AppendUint32(out, uint32(pad))
	return append(out, make([]byte, pad)...)
}

// zstdBomb returns a zstd frame, without a content size, of RLE blocks
// that decompresses to blocks×128 KiB of byte c in 4 bytes per block: a
// decompression bomb written straight from the format (RFC 8878 3.1.1).
func zstdBomb(blocks int, c byte) []byte {
	const blockSize = 128 << 10
	out := binary.LittleEndian.AppendUint32(nil, 0xFD2FB528)
	// Frame header: no content size, not single segment, no checksum;
	// window descriptor 2^(10+7) = 128 KiB.
	out = append(out, 0x00, 7<<3)
	for i := range blocks {
		last := uint32(0)
		if i == blocks-1 {
			last = 1
		}
		h := last | 1<<1 | blockSize<<3 // RLE block of blockSize bytes
		out = append(out, byte(h), byte(h>>8), byte(h>>16), c)
	}
	return out
}

// logRecorder is a slog.Handler that keeps warnings and errors, for
// assertions on what the updater reports (such as rejected targets).
type logRecorder struct {
	mu      sync.Mutex
	records []logRecord
}

type logRecord struct {
	msg   string
	attrs map[string]any
}

// rejected returns the error the updater logged for rejecting target
// path, or nil.
func (l *logRecorder) rejected(path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.records {
		if r.msg == "target rejected" && r.attrs["target"] == path {
			err, _ := r.attrs["err"].(error)
			if err == nil {
				err = fmt.Errorf("%v", r.attrs["err"])
			}
			return err
		}
	}
	return nil
}

func (l *logRecorder) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{msg: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	l.mu.Lock()
	l.records = append(l.records, rec)
	l.mu.Unlock()
	return nil
}

// WithAttrs and WithGroup keep the records flat: only the updater's own
// attributes matter here.
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }
