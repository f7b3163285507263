package updater

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// patchPair is a base image and a release of it with a quarter of new
// (incompressible) bytes, so that its patch in small frames has dozens.
func patchPair(n int) (base, next []byte) {
	base = image("1.1.0", n)
	next = bytes.Join([][]byte{base[:n/4], image("new bytes", n/4), base[n/2 : n/2+1000],
		[]byte(strings.Repeat("inserted ", 100)), base[n/2+1000:]}, nil)
	return base, next
}

// patchFrameOpts makes small frames, so that tests interrupt mid-patch.
var patchFrameOpts = delta.DiffOptions{FrameSize: 8 << 10}

// frameBoundaries lists the patch offsets where frames of a version 2
// or 3 patch start, and its end.
func frameBoundaries(t *testing.T, p []byte) map[int64]bool {
	t.Helper()
	b := map[int64]bool{}
	off, hs := 56, 12
	if p[4] == 3 {
		hs = 16 // and a difference section
	}
	for off+hs <= len(p) {
		b[int64(off)] = true
		n := int(binary.BigEndian.Uint32(p[off:])) + int(binary.BigEndian.Uint32(p[off+4:]))
		if hs == 16 {
			n += int(binary.BigEndian.Uint32(p[off+12:]))
		}
		off += hs + n
	}
	if off != len(p) {
		t.Fatalf("frames end at %d of a %d-byte patch", off, len(p))
	}
	b[int64(off)] = true
	return b
}

// patchLog records the requests for the patch: where each starts (the
// Range, 0 without one) and the body bytes sent. The first response is
// aborted once its body reaches cut bytes, when cut is set.
type patchLog struct {
	mu     sync.Mutex
	starts []int64
	sent   atomic.Int64
	cut    int64
	// ignoreRange makes the server answer every request in full, as
	// servers without Range support do.
	ignoreRange bool
}

func (l *patchLog) requests() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int64(nil), l.starts...)
}

func (l *patchLog) reset() {
	l.mu.Lock()
	l.starts = nil
	l.mu.Unlock()
	l.sent.Store(0)
}

func (l *patchLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".patch") {
			h.ServeHTTP(w, r)
			return
		}
		var start int64
		if rg := r.Header.Get("Range"); rg != "" {
			v, _, _ := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
			start, _ = strconv.ParseInt(v, 10, 64)
		}
		l.mu.Lock()
		l.starts = append(l.starts, start)
		first, cut := len(l.starts) == 1, l.cut
		if l.ignoreRange {
			r.Header.Del("Range")
		}
		l.mu.Unlock()
		before := l.sent.Load()
		h.ServeHTTP(hookWriter{w, &l.sent, func(total int64) {
			if first && cut > 0 && total-before >= cut {
				panic(http.ErrAbortHandler) // the connection drops
			}
		}}, r)
	})
}

// patchDevice is a device running base, with next published as a full
// image, a chunk index and a static patch in small frames.
func patchDevice(t *testing.T, base, next []byte) (*tuftest.Repo, *device, []byte, *patchLog) {
	t.Helper()
	repo, d, _ := deltaDevice(t, base)
	repo.AddTarget("rootfs/1.2.0.img", next, custom("1.2.0"))
	publishIndex(t, repo, "rootfs/1.2.0.img", next, "1.2.0")
	patch := publishPatch(t, repo, "rootfs/1.2.0.img", base, next, "1.2.0", patchFrameOpts)
	repo.Publish()
	l := &patchLog{}
	repo.Wrap(l.wrap)
	return repo, d, patch, l
}

// TestPatchResume interrupts a patch install mid-way in several ways and
// checks that the install resumes at the checkpointed frame boundary (a
// Range request from there, not from 0), and that the result is verified
// and activated.
func TestPatchResume(t *testing.T) {
	setCheckpointEvery(t, 16<<10)
	base, next := patchPair(1 << 20)
	tests := []struct {
		name string
		// interrupt makes the first install fail part-way, on d.
		interrupt func(t *testing.T, d *device, l *patchLog, patch []byte)
		restart   bool // a new process resumes (else the same Updater)
		// after runs before the resumed install.
		after      func(t *testing.T, repo *tuftest.Repo, d *device, l *patchLog, patch []byte, pd *pending)
		wantMethod string
		wantFrom   string // "checkpoint", "start" or "" (not checked)
		// wantAll: the whole patch is sent again (the server ignored the
		// Range asked from the checkpoint).
		wantAll bool
	}{
		{
			name: "slot write fails, new process resumes",
			interrupt: func(t *testing.T, d *device, l *patchLog, patch []byte) {
				d.a.FailWritesAfterBytes(int64(len(next)) * 3 / 8)
			},
			restart: true, wantMethod: methodPatch, wantFrom: "checkpoint",
		},
		{
			name: "connection dropped, retries exhausted, next install resumes",
			interrupt: func(t *testing.T, d *device, l *patchLog, patch []byte) {
				l.cut = int64(len(patch)) / 2
				dl, err := download.New(download.Config{RetryMax: -1})
				if err != nil {
					t.Fatal(err)
				}
				d.u.dl = dl
			},
			wantMethod: methodPatch, wantFrom: "checkpoint",
		},
		{
			name: "unusable checkpoint starts the patch over",
			interrupt: func(t *testing.T, d *device, l *patchLog, patch []byte) {
				d.a.FailWritesAfterBytes(int64(len(next)) * 3 / 8)
			},
			restart: true,
			after: func(t *testing.T, repo *tuftest.Repo, d *device, l *patchLog, patch []byte, pd *pending) {
				pd.PatchCheckpoint = []byte("not a checkpoint")
				if err := d.u.st.save(); err != nil {
					t.Fatal(err)
				}
			},
			wantMethod: methodPatch, wantFrom: "start",
		},
		{
			name: "server ignores the Range of the resume: the patch starts over",
			interrupt: func(t *testing.T, d *device, l *patchLog, patch []byte) {
				d.a.FailWritesAfterBytes(int64(len(next)) * 3 / 8)
			},
			restart: true,
			after: func(t *testing.T, repo *tuftest.Repo, d *device, l *patchLog, patch []byte, pd *pending) {
				l.mu.Lock()
				l.ignoreRange = true
				l.mu.Unlock()
			},
			wantMethod: methodPatch, wantFrom: "checkpoint", wantAll: true,
		},
		{
			name: "corrupt frame after the checkpoint falls back",
			interrupt: func(t *testing.T, d *device, l *patchLog, patch []byte) {
				d.a.FailWritesAfterBytes(int64(len(next)) * 3 / 8)
			},
			restart: true,
			after: func(t *testing.T, repo *tuftest.Repo, d *device, l *patchLog, patch []byte, pd *pending) {
				bad := bytes.Clone(patch)
				bad[len(bad)-100] ^= 0x55
				repo.SetTargetBytes("rootfs/1.2.0.img.patch", bad)
			},
			wantMethod: methodAdaptive,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, d, patch, l := patchDevice(t, base, next)
			bounds := frameBoundaries(t, patch)
			if len(bounds) < 20 {
				t.Fatalf("patch of %d frames, want at least 20", len(bounds)-1)
			}
			tt.interrupt(t, d, l, patch)
			if err := d.update(); err == nil {
				t.Fatal("interrupted install succeeded")
			}
			d.a.FailWritesAfterBytes(-1)
			if tt.restart {
				d.start()
			}
			pd := d.u.st.component("rootfs").Pending
			if pd == nil || pd.Method != methodPatch || pd.WireOffset == 0 {
				t.Fatalf("pending after the interruption: %+v, want a patch with a checkpoint", pd)
			}
			ck, ckImage := pd.WireOffset, pd.Offset
			if !bounds[ck] || ck >= int64(len(patch)) {
				t.Fatalf("checkpoint at patch byte %d: not a frame boundary inside the patch", ck)
			}
			if tt.after != nil {
				tt.after(t, repo, d, l, patch, pd)
			}
			l.reset()
			if err := d.update(); err != nil {
				t.Fatalf("resumed install: %v", err)
			}
			reqs := l.requests()
			if len(reqs) == 0 {
				t.Fatal("the resumed install fetched no patch bytes")
			}
			switch tt.wantFrom {
			case "checkpoint":
				if reqs[0] != ck {
					t.Errorf("resumed install asked for the patch from byte %d, want the checkpoint %d", reqs[0], ck)
				}
				want := int64(len(patch)) - ck
				if tt.wantAll {
					want = int64(len(patch))
				}
				if got := l.sent.Load(); got != want {
					t.Errorf("patch bytes sent after the interruption: got %d, want %d", got, want)
				}
			case "start":
				if reqs[0] != 0 {
					t.Errorf("resumed install asked for the patch from byte %d, want 0", reqs[0])
				}
			}
			pd = d.u.st.component("rootfs").Pending
			if pd.Method != tt.wantMethod || pd.Phase != PhaseArmed {
				t.Errorf("after the resumed install: method %s phase %s, want %s armed", pd.Method, pd.Phase, tt.wantMethod)
			}
			if !bytes.Equal(d.a.Bytes()[:len(next)], next) {
				t.Fatal("slot a does not hold the new image")
			}
			d.confirmed("1.2.0")
			t.Logf("checkpoint at patch byte %d of %d, image byte %d of %d", ck, len(patch), ckImage, len(next))
		})
	}
}

// TestPatchDroppedConnection: a connection dropped mid-patch is resumed
// by the transfer itself with a Range request, without starting over.
func TestPatchDroppedConnection(t *testing.T) {
	base, next := patchPair(1 << 20)
	_, d, patch, l := patchDevice(t, base, next)
	l.cut = int64(len(patch)) / 2
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	reqs := l.requests()
	if len(reqs) != 2 || reqs[0] != 0 || reqs[1] == 0 {
		t.Errorf("patch requests from %v, want 0 then a resume past 0", reqs)
	}
	d.wantPending(methodPatch, next)
}

// TestPatchPowerCut cuts the power at every device write, then at every
// state save, of a patch install, and checks that the device keeps
// running its committed image, finishes the update after power returns,
// and resumes the patch from a checkpoint when it has one.
func TestPatchPowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("one install per cut point")
	}
	setCheckpointEvery(t, 16<<10)
	base, next := patchPair(256 << 10)
	for _, sw := range cutSweeps {
		t.Run(sw.name, func(t *testing.T) {
			resumed := 0
			for n := 0; ; n++ {
				_, d, patch, l := patchDevice(t, base, next)
				bounds := frameBoundaries(t, patch)
				cutPowerAt(d, n, sw.atSave)
				err := d.update()
				if !d.pc.IsCut() {
					if err != nil {
						t.Fatalf("cut %d never happened, and the update failed: %v", n, err)
					}
					if resumed == 0 {
						t.Errorf("no cut of %d resumed the patch from a checkpoint", n)
					}
					t.Logf("power cut at each of %d points; %d resumed from a checkpoint", n, resumed)
					return
				}
				// Power returns: the bootloader runs, the process starts.
				d.pc.Restore()
				switch booted := d.boot.Booted(); {
				case booted == "b":
				case booted == "a" && bytes.Equal(d.a.Bytes()[:len(next)], next):
				default:
					t.Fatalf("cut %d: booted %q, which holds no verified image", n, booted)
				}
				confirmAfterPowerOn(t, d, n)
				pd := d.u.st.component("rootfs").Pending
				ck := int64(0)
				if pd != nil && pd.Method == methodPatch && pd.Phase == PhaseDownloading {
					ck = pd.WireOffset
					if ck > 0 && !bounds[ck] {
						t.Fatalf("cut %d: checkpoint at patch byte %d, not a frame boundary", n, ck)
					}
				}
				// The device finishes (or redoes) the update by itself.
				l.reset()
				finishAfterPowerOn(t, d, n, "1.2.0")
				if reqs := l.requests(); ck > 0 {
					if len(reqs) == 0 || reqs[0] != ck {
						t.Fatalf("cut %d: resumed with patch requests from %v, want the checkpoint %d first", n, reqs, ck)
					}
					resumed++
				}
				if got := d.installed(); got != "1.2.0" || !bytes.Equal(d.a.Bytes()[:len(next)], next) || d.boot.Booted() != "a" {
					t.Fatalf("cut %d: installed %q from %s, want 1.2.0 from a, verified", n, got, d.boot.Booted())
				}
			}
		})
	}
}

// TestPatchV1Installs: patches of the version 1 format, which earlier
// releases of the repository tool published, still install (from their
// start: they have no checkpoints).
func TestPatchV1Installs(t *testing.T) {
	base, next := patchPair(256 << 10)
	repo, d, served := deltaDevice(t, base)
	repo.AddTarget("rootfs/1.2.0.img", next, custom("1.2.0"))
	// A version 1 patch by hand, with the records patchPair implies
	// (smaller than the full image, or the updater would not use it).
	n := len(base)
	hdr := make([]byte, 56)
	copy(hdr, "SBPT")
	hdr[4] = 1
	binary.BigEndian.PutUint64(hdr[8:], uint64(len(base)))
	binary.BigEndian.PutUint64(hdr[16:], uint64(len(next)))
	sum := sha256.Sum256(next)
	copy(hdr[24:], sum[:])
	record := func(b []byte, lit []byte, c, d int) []byte {
		b = append(binary.AppendUvarint(b, uint64(len(lit))), lit...)
		return binary.AppendVarint(binary.AppendUvarint(b, uint64(c)), int64(d))
	}
	rec := record(nil, nil, n/4, 0)                         // base[:n/4]
	rec = record(rec, next[n/4:n/2], 1000, n/4)             // new bytes, base[n/2:n/2+1000]
	rec = record(rec, next[n/2+1000:n/2+1900], n/2-1000, 0) // inserted, the rest
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	patch := append(hdr, enc.EncodeAll(rec, nil)...)
	enc.Close()
	c := custom("1.2.0")
	c.Kind, c.Of, c.Base, c.Format = verify.KindPatch, "rootfs/1.2.0.img", sha(base), delta.PatchFormatV1
	c.Uncompressed = &verify.Digest{Length: int64(len(next)), SHA256: sha(next)}
	repo.AddTarget("rootfs/1.2.0.img.patch", patch, c)
	repo.Publish()
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got := d.u.st.component("rootfs").Pending.Method; got != methodPatch {
		t.Errorf("method %s, want patch", got)
	}
	if n := served.Load(); n != 0 {
		t.Errorf("full image bytes sent: got %d, want 0", n)
	}
	if !bytes.Equal(d.a.Bytes()[:len(next)], next) {
		t.Fatal("slot a does not hold the new image")
	}
}
