package attacks

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// endless answers 200 with a body that never ends and no Content-Length,
// until the client goes away.
func endless(w http.ResponseWriter, req *http.Request, _ http.Handler) {
	chunk := bytes.Repeat([]byte("{"), 32<<10)
	w.WriteHeader(http.StatusOK)
	for req.Context().Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// oversize answers with n bytes of filler announced in Content-Length.
func oversize(n int64) func(http.ResponseWriter, *http.Request, http.Handler) {
	return func(w http.ResponseWriter, req *http.Request, _ http.Handler) {
		chunk := bytes.Repeat([]byte(" "), 32<<10)
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.WriteHeader(http.StatusOK)
		for left := n; left > 0; {
			k := min(left, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			left -= k
		}
	}
}

// TestEndlessDataMetadata: the server answers a metadata request with more
// than the device allows for that file (go-tuf's bounds, or the exact
// length the timestamp signs for the snapshot), announced in
// Content-Length or as a body that never ends. The device reads at most
// one byte past the bound, refuses the metadata with ErrUntrusted and
// go-tuf's ErrDownloadLengthMismatch, writes nothing, and takes the next
// honest release once the server behaves.
func TestEndlessDataMetadata(t *testing.T) {
	t.Parallel()
	def, err := config.New("http://127.0.0.1/", []byte("{}")) // go-tuf's default bounds
	must(t, err)
	tests := []struct {
		name string
		file string // suffix of the URL path attacked
		h    func(http.ResponseWriter, *http.Request, http.Handler)
		// bound is the most a device may read of the file; -1: the
		// signed length of the snapshot + 1.
		bound int64
	}{
		{"endless timestamp", "/timestamp.json", endless, def.TimestampMaxLength + 1},
		{"oversized timestamp announced", "/timestamp.json", oversize(1 << 30), 0},
		{"endless snapshot", ".snapshot.json", endless, -1},
		{"oversized snapshot announced", ".snapshot.json", oversize(1 << 30), 0},
		{"endless targets", ".targets.json", endless, def.TargetsMaxLength + 1},
		{"oversized targets announced", ".targets.json", oversize(1 << 30), 0},
		{"endless next root", ".root.json", endless, def.RootMaxLength + 1},
		{"oversized next root announced", ".root.json", oversize(1 << 30), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, d := trustingDevice(t)
			release(r, "1.2.0")
			bound := tt.bound
			if bound < 0 {
				ts, err := metadata.Timestamp().FromBytes(r.MetadataFile("timestamp.json"))
				must(t, err)
				bound = ts.Signed.Meta["snapshot.json"].Length + 1
			}
			f := addFault(r, suffix(tt.file), tt.h)
			before := d.snap()
			read := d.net.bytesRead(tt.file)
			err := d.update(context.Background())
			wantErr(t, "update", err, verify.ErrUntrusted, &metadata.ErrDownloadLengthMismatch{})
			d.assertRefused(before, noWrites)
			if got := d.net.bytesRead(tt.file) - read; got > bound {
				t.Errorf("read %d bytes of %s, want at most %d", got, tt.file, bound)
			}
			f.on.Store(false)
			d.honestUpdate("1.3.0")
		})
	}
}

// TestEndlessDataTarget: the server sends more than the signed length of
// a release: announced in Content-Length (refused before a byte is read),
// as a response that never ends (cut off one byte past the signed length),
// or as a zstd stream of the signed length that decompresses without end
// (cut off at the signed uncompressed length). The slot is never armed,
// the running slot is untouched, at most the signed length lands in the
// inactive slot, and the next honest release is taken.
func TestEndlessDataTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// publish publishes the release attacked and returns its signed
		// length (bytes on the wire) and the length of the image it
		// writes to the slot.
		publish func(t *testing.T, r *tuftest.Repo) (file string, wire, img int64)
		h       func(t *testing.T, wire int64) func(http.ResponseWriter, *http.Request, http.Handler)
		want    []error
		// readMax is the most the device may read of the target; writeMax
		// the most it may write to the slot.
		readMax, writeMax func(wire, img int64) int64
	}{
		{"more than the signed length announced", plainRelease,
			func(t *testing.T, wire int64) func(http.ResponseWriter, *http.Request, http.Handler) {
				return oversize(wire + 1<<20)
			}, []error{download.ErrLength},
			func(wire, img int64) int64 { return 0 }, func(wire, img int64) int64 { return 0 }},
		{"a response that never ends", plainRelease,
			func(t *testing.T, wire int64) func(http.ResponseWriter, *http.Request, http.Handler) { return endless },
			[]error{download.ErrLength},
			func(wire, img int64) int64 { return wire + 1 }, func(wire, img int64) int64 { return img }},
		{"decompression bomb of the signed length", compressedRelease,
			func(t *testing.T, wire int64) func(http.ResponseWriter, *http.Request, http.Handler) {
				// 1 GiB of zeros in 32 KiB, padded to the signed length.
				bomb := padSkippable(t, zstdBomb(8192, 0), wire)
				return func(w http.ResponseWriter, req *http.Request, _ http.Handler) {
					http.ServeContent(w, req, "bomb", zeroTime, bytes.NewReader(bomb))
				}
			}, []error{verify.ErrVerification},
			func(wire, img int64) int64 { return wire }, func(wire, img int64) int64 { return img }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, d := trustingDevice(t)
			file, wire, img := tt.publish(t, r)
			f := addFault(r, suffix(file), tt.h(t, wire))
			before := d.snap()
			slot := d.inactive()
			written := slot.BytesWritten()
			err := d.update(context.Background())
			t.Logf("refused: %v", err)
			wantErr(t, "update", err, tt.want...)
			d.assertRefused(before, someWrites)
			if got, max := d.net.bytesRead(file), tt.readMax(wire, img); got > max {
				t.Errorf("read %d bytes of the target, want at most %d", got, max)
			}
			if got, max := slot.BytesWritten()-written, tt.writeMax(wire, img); got > max {
				t.Errorf("wrote %d bytes to slot %s, want at most %d", got, slot.Name(), max)
			}
			f.on.Store(false)
			d.honestUpdate("1.3.0")
		})
	}
}

func plainRelease(t *testing.T, r *tuftest.Repo) (string, int64, int64) {
	release(r, "1.2.0")
	tg := r.Target(targetPath("1.2.0"))
	return tg.File, tg.Length, tg.Length
}

func compressedRelease(t *testing.T, r *tuftest.Repo) (string, int64, int64) {
	// Incompressible: the signed stream is long enough to hide a bomb.
	rnd := rand.New(rand.NewPCG(1, 2))
	img := make([]byte, 64<<10)
	for i := range img {
		img[i] = byte(rnd.Uint32())
	}
	tg := r.AddCompressedTarget("rootfs/1.2.0.img.zst", img, custom("1.2.0"), 16<<10)
	r.Publish()
	return tg.File, tg.Length, int64(len(img))
}

var zeroTime time.Time
