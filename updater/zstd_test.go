package updater

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// compressible returns n bytes that zstd compresses to about half: random
// symbols from a small alphabet.
func compressible(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = "switchbackOTA-01"[r.IntN(16)]
	}
	return b
}

// addZstd publishes stream as a compressed target of img, whatever tool
// made the stream.
func addZstd(repo *tuftest.Repo, path string, stream, img []byte, version string) {
	c := custom(version)
	c.Compression = verify.CompressionZstd
	sum := sha256.Sum256(img)
	c.Uncompressed = &verify.Digest{Length: int64(len(img)), SHA256: hex.EncodeToString(sum[:])}
	repo.AddTarget(path, stream, c)
}

// countTargets counts the bytes of target files the server sends, and calls
// after (when set) with the running total.
// It returns a function that waits until no target request is being
// served, so that bytes a handler still writes into a connection the
// device dropped are counted before the caller reads served.
func countTargets(repo *tuftest.Repo, served *atomic.Int64, after func(n int64)) (settle func()) {
	var inflight atomic.Int64
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/targets/") {
				h.ServeHTTP(w, r)
				return
			}
			inflight.Add(1)
			defer inflight.Add(-1)
			h.ServeHTTP(hookWriter{w, served, after}, r)
		})
	})
	return func() {
		for inflight.Load() != 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

type hookWriter struct {
	http.ResponseWriter
	n     *atomic.Int64
	after func(n int64)
}

func (h hookWriter) Write(p []byte) (int, error) {
	n, err := h.ResponseWriter.Write(p)
	total := h.n.Add(int64(n))
	if h.after != nil {
		h.after(total)
	}
	return n, err
}

// targetBytes returns the published bytes of a target file.
func targetBytes(t *testing.T, repo *tuftest.Repo, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo.Dir(), "targets", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (d *device) updateCtx(ctx context.Context) error {
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

func (d *device) pending() *pending {
	d.t.Helper()
	d.u.mu.Lock()
	defer d.u.mu.Unlock()
	pd := d.u.st.component("rootfs").Pending
	if pd == nil {
		return nil
	}
	c := *pd
	return &c
}

// nothingArmed fails the test when anything was activated.
func (d *device) nothingArmed() {
	d.t.Helper()
	bs, err := d.boot.Status(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	if bs.Trial != "" || bs.Primary != "a" || bs.Booted != "a" {
		d.t.Errorf("boot state %+v: something was activated", bs)
	}
	if got := d.restarts.Load(); got != 0 {
		d.t.Errorf("restarts = %d, want 0", got)
	}
}

func TestCompressedResume(t *testing.T) {
	img := compressible(1, 12<<20+333)
	tests := []struct {
		name string
		// interrupt arranges for the first install to stop part way.
		interrupt func(d *device, cancel context.CancelFunc) func(served int64)
	}{
		{"slot fails", func(d *device, _ context.CancelFunc) func(int64) {
			d.b.FailWritesAfterBytes(7 << 20)
			return nil
		}},
		{"context canceled", func(d *device, cancel context.CancelFunc) func(int64) {
			d.cfg = func(c *Config) {
				events := c.Events
				c.Events = func(e Event) {
					events(e)
					if p, ok := e.(Progress); ok && p.Done > 5<<20 {
						cancel()
					}
				}
			}
			d.start()
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			d := newDevice(t, repo)
			tg := repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 256<<10)
			repo.Publish()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var served atomic.Int64
			var hook atomic.Pointer[func(int64)]
			settle := countTargets(repo, &served, func(n int64) {
				if f := hook.Load(); f != nil {
					(*f)(n)
				}
			})
			if f := tt.interrupt(d, cancel); f != nil {
				hook.Store(&f)
			}
			if err := d.updateCtx(ctx); err == nil {
				t.Fatal("interrupted install succeeded")
			}
			d.nothingArmed()
			hook.Store(nil)
			d.b.FailWritesAfterBytes(-1)
			settle()
			first := served.Load()

			d.cfg = nil
			d.start() // a new process resumes from the durable checkpoint
			pd := d.pending()
			if pd == nil || pd.WireOffset <= 0 || pd.Offset <= 0 || len(pd.ImageHashState) == 0 {
				t.Fatalf("pending after the interruption: %+v, want a frame-boundary checkpoint", pd)
			}
			if err := d.update(); err != nil {
				t.Fatalf("resumed update: %v", err)
			}
			resent := served.Load() - first
			t.Logf("compressed %d bytes, checkpoint at %d (image %d), sent again %d", tg.Length, pd.WireOffset, pd.Offset, resent)
			if got, want := resent, tg.Length-pd.WireOffset; got != want {
				t.Errorf("bytes sent after resume: got %d, want %d (the rest after the checkpoint)", got, want)
			}
			if !bytes.Equal(d.b.Bytes(), img) {
				t.Fatal("slot b does not hold the image after resume")
			}
			if pd := d.pending(); pd == nil || pd.Phase != PhaseArmed || pd.WireOffset != 0 || pd.ImageHashState != nil {
				t.Errorf("pending after install: %+v, want armed without checkpoint fields", pd)
			}
			if err := d.reboot(); err != nil {
				t.Fatalf("confirm: %v", err)
			}
		})
	}
}

// TestCompressedBadCheckpoint: a checkpoint that does not match (edited,
// or from another build) costs a restart from zero, never a wrong image.
func TestCompressedBadCheckpoint(t *testing.T) {
	setCheckpointEvery(t, 1<<20)
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	img := compressible(2, 6<<20)
	repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 512<<10)
	repo.Publish()
	d.b.FailWritesAfterBytes(5 << 20)
	if err := d.update(); err == nil {
		t.Fatal("install with failing slot succeeded")
	}
	d.b.FailWritesAfterBytes(-1)
	cs := d.u.st.component("rootfs")
	if cs.Pending == nil || cs.Pending.WireOffset == 0 {
		t.Fatalf("no checkpoint: %+v", cs.Pending)
	}
	cs.Pending.Offset-- // image offset no longer matches the image hash state
	if err := d.u.st.save(); err != nil {
		t.Fatal(err)
	}
	d.start()
	if err := d.update(); err != nil {
		t.Fatalf("update after a bad checkpoint: %v", err)
	}
	if !bytes.Equal(d.b.Bytes(), img) {
		t.Fatal("slot b does not hold the image")
	}
}

func TestCompressedBadStream(t *testing.T) {
	img := compressible(3, 3<<20+5)
	var enc bytes.Buffer
	zw, err := zstd.NewWriter(&enc)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(img)
	zw.Close()
	stream := enc.Bytes()
	garbage := compressible(4, len(stream))
	tests := []struct {
		name     string
		setup    func(repo *tuftest.Repo)
		wantErr  error
		contains string
	}{
		{"byte flipped in a block", func(repo *tuftest.Repo) {
			tg := repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 1<<20)
			repo.Publish()
			evil := bytes.Clone(targetBytes(t, repo, tg.File))
			evil[len(evil)/2] ^= 0x10
			repo.SetTargetBytes("rootfs/1.1.0.img.zst", evil)
		}, verify.ErrVerification, ""},
		{"byte flipped in a frame header", func(repo *tuftest.Repo) {
			tg := repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 1<<20)
			repo.Publish()
			evil := bytes.Clone(targetBytes(t, repo, tg.File))
			evil[4] ^= 0x08 // reserved bit of the first frame header descriptor
			repo.SetTargetBytes("rootfs/1.1.0.img.zst", evil)
		}, verify.ErrVerification, "reserved bit"},
		{"last byte flipped", func(repo *tuftest.Repo) {
			tg := repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 1<<20)
			repo.Publish()
			evil := bytes.Clone(targetBytes(t, repo, tg.File))
			evil[len(evil)-1] ^= 1
			repo.SetTargetBytes("rootfs/1.1.0.img.zst", evil)
		}, verify.ErrVerification, ""},
		{"served garbage", func(repo *tuftest.Repo) {
			repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 1<<20)
			repo.Publish()
			tg := repo.Target("rootfs/1.1.0.img.zst")
			repo.SetTargetBytes("rootfs/1.1.0.img.zst", compressible(5, int(tg.Length)))
		}, verify.ErrVerification, "not a zstd frame"},
		{"served truncated", func(repo *tuftest.Repo) {
			tg := repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 1<<20)
			repo.Publish()
			repo.SetTargetBytes("rootfs/1.1.0.img.zst", targetBytes(t, repo, tg.File)[:tg.Length/2])
		}, nil, ""},
		{"signed truncated stream", func(repo *tuftest.Repo) {
			addZstd(repo, "rootfs/1.1.0.img.zst", stream[:len(stream)-100], img, "1.1.0")
			repo.Publish()
		}, verify.ErrVerification, "ends inside a frame"},
		{"signed garbage", func(repo *tuftest.Repo) {
			addZstd(repo, "rootfs/1.1.0.img.zst", garbage, img, "1.1.0")
			repo.Publish()
		}, verify.ErrVerification, "not a zstd frame"},
		{"signed stream of another image", func(repo *tuftest.Repo) {
			addZstd(repo, "rootfs/1.1.0.img.zst", stream, compressible(6, len(img)), "1.1.0")
			repo.Publish()
		}, verify.ErrVerification, "decompressed"},
		{"frame declares more than the image", func(repo *tuftest.Repo) {
			addZstd(repo, "rootfs/1.1.0.img.zst", zstdFrames(t, img, len(img)), img[:1<<20], "1.1.0")
			repo.Publish()
		}, verify.ErrVerification, "more than the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			d := newDevice(t, repo)
			tt.setup(repo)
			err := d.update()
			if err == nil {
				t.Fatal("update succeeded, want error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("update: %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("update: %v, want it to say %q", err, tt.contains)
			}
			d.nothingArmed()
			if got := d.installed(); got != "1.0.0" {
				t.Errorf("installed = %q, want 1.0.0", got)
			}
		})
	}
}

// zstdFrames compresses img into independent frames of frameSize bytes
// with the content size declared, as the repository package does.
func zstdFrames(t testing.TB, img []byte, frameSize int) []byte {
	t.Helper()
	e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var out []byte
	for len(img) > 0 {
		n := min(frameSize, len(img))
		out = e.EncodeAll(img[:n], out)
		img = img[n:]
	}
	return out
}

// TestCompressedOtherTools: streams that are not the repository's frames
// of DefaultFrameSize still install: one big streamed frame without a
// declared size (zstd's command line tool, piped), skippable frames,
// frames of every size.
func TestCompressedOtherTools(t *testing.T) {
	img := compressible(7, 5<<20+99)
	streamed := func() []byte {
		var b bytes.Buffer
		zw, err := zstd.NewWriter(&b, zstd.WithEncoderCRC(false))
		if err != nil {
			t.Fatal(err)
		}
		for p := img; len(p) > 0; p = p[min(len(p), 100_000):] {
			zw.Write(p[:min(len(p), 100_000)])
		}
		zw.Close()
		return b.Bytes()
	}()
	skippable := func(n int) []byte {
		b := binary.LittleEndian.AppendUint32(nil, skippableMagic|0x7)
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
		return append(b, make([]byte, n)...)
	}
	withSkippable := append(skippable(10), zstdFrames(t, img[:1<<20], 1<<20)...)
	withSkippable = append(withSkippable, skippable(0)...)
	withSkippable = append(withSkippable, zstdFrames(t, img[1<<20:], 3<<20)...)
	tests := []struct {
		name   string
		stream []byte
	}{
		{"one streamed frame", streamed},
		{"one frame with declared size", zstdFrames(t, img, len(img))},
		{"skippable frames", withSkippable},
		{"tiny frames", zstdFrames(t, img, 4097)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			d := newDevice(t, repo)
			addZstd(repo, "rootfs/1.1.0.img.zst", tt.stream, img, "1.1.0")
			repo.Publish()
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			if !bytes.Equal(d.b.Bytes(), img) {
				t.Fatal("slot b does not hold the image")
			}
		})
	}
	// Interrupted inside its only frame, a streamed target restarts from
	// zero, and still ends with the exact image.
	t.Run("one streamed frame resumed", func(t *testing.T) {
		repo := tuftest.New(t)
		d := newDevice(t, repo)
		addZstd(repo, "rootfs/1.1.0.img.zst", streamed, img, "1.1.0")
		repo.Publish()
		var served atomic.Int64
		settle := countTargets(repo, &served, nil)
		d.b.FailWritesAfterBytes(3 << 20)
		if err := d.update(); err == nil {
			t.Fatal("install with failing slot succeeded")
		}
		d.b.FailWritesAfterBytes(-1)
		settle()
		first := served.Load()
		d.start()
		if err := d.update(); err != nil {
			t.Fatalf("resumed update: %v", err)
		}
		if got, want := served.Load()-first, int64(len(streamed)); got != want {
			t.Errorf("bytes sent after resume: got %d, want %d (from zero)", got, want)
		}
		if !bytes.Equal(d.b.Bytes(), img) {
			t.Fatal("slot b does not hold the image")
		}
	})
}

// scanAll runs a frameScanner over b in pieces of at most step bytes and
// returns the frame boundaries and the error, if any.
func scanAll(b []byte, step int, limit int64) ([]int, error) {
	var s frameScanner
	if limit > 0 {
		s.limit, s.limited = limit, true
	}
	var ends []int
	off := 0
	for off < len(b) {
		piece := b[off:min(len(b), off+step)]
		for len(piece) > 0 {
			n, end, err := s.scan(piece)
			if n > len(piece) || (n == 0 && !end && err == nil) {
				return ends, fmt.Errorf("scan consumed %d of %d bytes", n, len(piece))
			}
			off += n
			piece = piece[n:]
			if err != nil {
				return ends, err
			}
			if end {
				ends = append(ends, off)
			}
		}
	}
	if !s.atBoundary() {
		return ends, errors.New("ends inside a frame")
	}
	return ends, nil
}

func TestFrameScanner(t *testing.T) {
	img := compressible(8, 300_000)
	framed := zstdFrames(t, img, 100_000)
	var want []int
	off := 0
	for p := img; len(p) > 0; p = p[min(len(p), 100_000):] {
		one := zstdFrames(t, p[:min(len(p), 100_000)], 100_000)
		off += len(one)
		want = append(want, off)
	}
	for _, step := range []int{1, 2, 3, 7, 4096, len(framed)} {
		got, err := scanAll(framed, step, 0)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("step %d: boundaries %v, want %v", step, got, want)
		}
	}
	bad := []struct {
		name   string
		stream []byte
		limit  int64
		want   string
	}{
		{"wrong magic", []byte("PK\x03\x04 not zstd"), 0, "not a zstd frame"},
		{"truncated", framed[:len(framed)-1], 0, "inside a frame"},
		{"dictionary", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x21, 0x07, 0x00}, 0, "dictionary 7"},
		{"huge window", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x88}, 0, "window"},
		{"huge single segment", []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0, 0, 0, 0x10}, 0, "window"},
		{"over the limit", framed, 99_999, "left of the image"},
		{"reserved block type", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x10, 0x07, 0, 0}, 0, "reserved type"},
		{"block too big", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x08, 0x00, 0x10}, 0, "more than"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := scanAll(tt.stream, 5, tt.limit)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("scan: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// FuzzZstdFrames checks that the frame scanner never consumes more than it
// is given, finds the same boundaries however the stream is cut, and that
// when it accepts a stream as whole frames, decoding frame by frame gives
// what decoding the stream at once gives.
func FuzzZstdFrames(f *testing.F) {
	img := compressible(9, 20_000)
	f.Add(zstdFrames(f, img, 7000), uint8(3))
	f.Add(zstdFrames(f, nil, 1), uint8(1))
	f.Add(append(binary.LittleEndian.AppendUint32(nil, skippableMagic), 2, 0, 0, 0, 'h', 'i'), uint8(2))
	f.Add(zstdFrames(f, bytes.Repeat([]byte{'a'}, 5000), 5000), uint8(1)) // RLE blocks
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, uint8(4))
	f.Add([]byte("garbage"), uint8(1))
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<24), zstd.WithDecoderMaxWindow(1<<24))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		whole, werr := scanAll(b, len(b)+1, 0)
		cut, cerr := scanAll(b, int(step)+1, 0)
		if fmt.Sprint(whole) != fmt.Sprint(cut) || (werr == nil) != (cerr == nil) {
			t.Fatalf("boundaries %v (%v) in one piece, %v (%v) in pieces of %d", whole, werr, cut, cerr, int(step)+1)
		}
		if werr != nil {
			return
		}
		all, aerr := dec.DecodeAll(b, nil)
		var pieces []byte
		var perr error
		start := 0
		for _, end := range whole {
			if pieces, perr = dec.DecodeAll(b[start:end], pieces); perr != nil {
				break
			}
			start = end
		}
		if aerr == nil && (perr != nil || !bytes.Equal(all, pieces)) {
			t.Fatalf("stream decodes (%d bytes) but frame by frame: %v, %d bytes", len(all), perr, len(pieces))
		}
	})
}

func TestDecodeStateCompressedCheckpoint(t *testing.T) {
	tests := []struct {
		name, pending string
		ok            bool
	}{
		{"older file without the fields", `{"phase":"downloading","slot":"b","target":"ab","length":10,"offset":4}`, true},
		{"frame-boundary checkpoint", `{"phase":"downloading","slot":"b","target":"ab","length":10,"offset":4,"wire_offset":12,"image_hash_state":"AAEC"}`, true},
		{"negative wire offset", `{"phase":"downloading","slot":"b","target":"ab","length":10,"offset":4,"wire_offset":-1}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeState([]byte(`{"version":1,"components":{"rootfs":{"installed":"1.0.0","pending":` + tt.pending + `}}}`))
			if got := err == nil; got != tt.ok {
				t.Errorf("decodeState: err = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) WriteAt(b []byte, off int64) (int, error) { return len(b), nil }
func (discardWriter) Sync() error                              { return nil }
func (discardWriter) Close() error                             { return nil }

// BenchmarkZstdPipeline decodes a 64 MiB image compressed in frames of
// repository.DefaultFrameSize through the pipeline, checkpoints included,
// and reports the peak heap in use: the memory bound of compressed
// installs, which does not grow with the image.
func BenchmarkZstdPipeline(b *testing.B) {
	img := compressible(12, 64<<20)
	stream := zstdFrames(b, img, 4<<20)
	sum := sha256.Sum256(img)
	wsum := sha256.Sum256(stream)
	tg := verify.Target{Path: "img.zst", Length: int64(len(stream)), Hashes: map[string][]byte{"sha256": wsum[:]},
		Custom: verify.Custom{Compression: verify.CompressionZstd, Uncompressed: &verify.Digest{Length: int64(len(img)), SHA256: hex.EncodeToString(sum[:])}}}
	st, _, err := loadStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(img)))
	var peak uint64
	for b.Loop() {
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		pd := &pending{}
		p, err := newPipeline(tg, discardWriter{}, 1, pd, st, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(stream); off += 32 << 10 {
			if _, err := p.Write(stream[off:min(len(stream), off+32<<10)]); err != nil {
				b.Fatal(err)
			}
			if off%(1<<20) == 0 {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse-min(ms.HeapInuse, base.HeapInuse))
			}
		}
		if err := p.close(); err != nil {
			b.Fatal(err)
		}
		if err := p.verify(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
