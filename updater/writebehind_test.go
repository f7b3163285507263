package updater

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/verify"
)

// hashState returns the verifier state of t after its first n bytes.
func hashState(t *testing.T, tg verify.Target, data []byte, n int) []byte {
	t.Helper()
	v, err := verify.NewVerifier(tg.Length, tg.Hashes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write(data[:n]); err != nil {
		t.Fatal(err)
	}
	hs, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestLightCheckpointTrusted checks when a new pipeline resumes from the
// light checkpoint rather than the durable one: only in the same boot, for
// the same target and slot, into a kernel-buffered writer, with a record
// that is intact and consistent.
func TestLightCheckpointTrusted(t *testing.T) {
	data := compressible(3, 3<<20)
	sum := sha256.Sum256(data)
	tg := verify.Target{Path: "rootfs/1.img", Length: int64(len(data)), Hashes: map[string][]byte{"sha256": sum[:]}}
	const durableAt, lightAt = 1 << 20, 2<<20 + 4096
	good := lightRecord{BootID: "boot-1", TargetSHA256: tg.SHA256(), Slot: "b",
		Ck: ckRecord{Offset: lightAt, HashState: hashState(t, tg, data, lightAt), Validator: `"light"`}}
	tests := []struct {
		name      string
		boot      string
		record    func() []byte
		plain     bool // the writer is not kernel-buffered
		want      int64
		validator string
	}{
		{"same boot", "boot-1", func() []byte { return mustLight(t, good) }, false, lightAt, `"light"`},
		{"after a reboot", "boot-2", func() []byte { return mustLight(t, good) }, false, durableAt, `"durable"`},
		{"boot id unknown", "", func() []byte { return mustLight(t, good) }, false, durableAt, `"durable"`},
		{"writer buffers in the process", "boot-1", func() []byte { return mustLight(t, good) }, true, durableAt, `"durable"`},
		{"other target", "boot-1", func() []byte { r := good; r.TargetSHA256 = "00"; return mustLight(t, r) }, false, durableAt, `"durable"`},
		{"other slot", "boot-1", func() []byte { r := good; r.Slot = "a"; return mustLight(t, r) }, false, durableAt, `"durable"`},
		{"older than the durable one", "boot-1", func() []byte {
			r := good
			r.Ck = ckRecord{Offset: 4096, HashState: hashState(t, tg, data, 4096)}
			return mustLight(t, r)
		}, false, durableAt, `"durable"`},
		{"torn record", "boot-1", func() []byte { b := mustLight(t, good); b[40] ^= 1; return b }, false, durableAt, `"durable"`},
		{"truncated record", "boot-1", func() []byte { return mustLight(t, good)[:100] }, false, durableAt, `"durable"`},
		{"empty file", "boot-1", func() []byte { return nil }, false, durableAt, `"durable"`},
		{"hash state at another offset", "boot-1", func() []byte {
			r := good
			r.Ck.HashState = hashState(t, tg, data, lightAt-1)
			return mustLight(t, r)
		}, false, durableAt, `"durable"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := bootID
			bootID = func() string { return tt.boot }
			defer func() { bootID = old }()
			dir := t.TempDir()
			st, _, err := loadStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, lightFile), tt.record(), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Create(filepath.Join(dir, "slot"))
			if err != nil {
				t.Fatal(err)
			}
			var w slots.Writer = bufferedFile{f}
			if tt.plain {
				w = f
			}
			defer f.Close()
			pd := &pending{Slot: "b", TargetSHA256: tg.SHA256(), Offset: durableAt, HashState: hashState(t, tg, data, durableAt), Validator: `"durable"`}
			p, err := newPipeline(tg, w, 1, pd, st, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.close()
			if got := p.resumeOffset(); got != tt.want {
				t.Errorf("resume offset: got %d, want %d", got, tt.want)
			}
			if got := p.resumeValidator(); got != tt.validator {
				t.Errorf("resume validator: got %s, want %s", got, tt.validator)
			}
			if pd.Offset != durableAt {
				t.Errorf("durable offset in the state: got %d, want %d (a light checkpoint is never made durable by reading it)", pd.Offset, durableAt)
			}
		})
	}
}

func mustLight(t *testing.T, r lightRecord) []byte {
	t.Helper()
	b, err := encodeLight(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteBehindAligned installs through a slot that refuses unaligned
// writes (slots.BlockSizer): every write but the image's last is whole
// blocks at block offsets, checkpoints included; whether the bytes come
// through Write or are read into the pipeline's buffers (BufferSink), and
// a buffer asked for at the end but left empty is never written.
func TestWriteBehindAligned(t *testing.T) {
	setCheckpointEvery(t, 100_000) // not a multiple of the block size
	const block = 64 << 10
	data := compressible(4, 3<<20+12345)
	sum := sha256.Sum256(data)
	tg := verify.Target{Path: "rootfs/1.img", Length: int64(len(data)), Hashes: map[string][]byte{"sha256": sum[:]}}
	for _, bufferSink := range []bool{false, true} {
		t.Run(map[bool]string{false: "Write", true: "BufferSink"}[bufferSink], func(t *testing.T) {
			st, _, err := loadStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			slot := slotstest.NewBlockSlot("b", 8<<20, block)
			w, err := slot.Writer(t.Context(), tg.Length)
			if err != nil {
				t.Fatal(err)
			}
			pd := &pending{Slot: "b", TargetSHA256: tg.SHA256()}
			p, err := newPipeline(tg, w, block, pd, st, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := feed(p, data, 7777, bufferSink); err != nil { // odd pieces, as from a network
				t.Fatal(err)
			}
			if bufferSink {
				p.Buffer() // as the client does before a read that gets nothing
			}
			if err := p.close(); err != nil {
				t.Fatal(err)
			}
			if err := p.verify(); err != nil {
				t.Fatal(err)
			}
			if pd.Offset == 0 || pd.Offset%block != 0 {
				t.Errorf("last durable checkpoint at %d, want a non-zero multiple of %d", pd.Offset, block)
			}
			if !bytes.Equal(slot.Bytes(), data) {
				t.Error("slot does not hold the image")
			}
		})
	}
}

// emptyRefusingWriter refuses writes of no bytes, which a slot has no
// reason to get.
type emptyRefusingWriter struct{ discardWriter }

func (emptyRefusingWriter) WriteAt(b []byte, off int64) (int, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("write of no bytes at %d", off)
	}
	return len(b), nil
}

// TestPipelineBufferLeftEmpty: a buffer the client asked for but read
// nothing into (the stream ended at a buffer boundary) is released when
// the pipeline closes, not written.
func TestPipelineBufferLeftEmpty(t *testing.T) {
	data := compressible(6, 2*wbBufSize)
	sum := sha256.Sum256(data)
	tg := verify.Target{Path: "app/1.img", Length: int64(len(data)), Hashes: map[string][]byte{"sha256": sum[:]}}
	st, _, err := loadStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPipeline(tg, emptyRefusingWriter{}, 1, &pending{Slot: "b", TargetSHA256: tg.SHA256()}, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := feed(p, data, wbBufSize, true); err != nil {
		t.Fatal(err)
	}
	p.Buffer()
	if err := p.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := p.verify(); err != nil {
		t.Fatal(err)
	}
}

// feed delivers data to p in pieces of at most piece bytes, as the
// download client does: through Write, or (bufferSink) read into the
// pipeline's Buffer and then committed.
func feed(p *pipeline, data []byte, piece int, bufferSink bool) error {
	for off := 0; off < len(data); {
		var n int
		var err error
		if bufferSink {
			buf := p.Buffer()
			n = copy(buf[:min(len(buf), piece)], data[off:])
			err = p.Commit(n)
		} else {
			n = min(piece, len(data)-off)
			_, err = p.Write(data[off : off+n])
		}
		if err != nil {
			return fmt.Errorf("bytes at %d: %w", off, err)
		}
		off += n
	}
	return nil
}

// failingWriter fails every write after the first n bytes. With buffered
// set it is kernel-buffered, and the pipeline writes it directly.
type failingWriter struct {
	discardWriter
	n        int64
	buffered bool
}

func (f *failingWriter) KernelBuffered() bool { return f.buffered }

var errDiskFull = errors.New("no space left on device")

func (f *failingWriter) WriteAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > f.n {
		return 0, errDiskFull
	}
	return len(b), nil
}

// TestWriteBehindError checks that a slot write failing on the writer
// goroutine reaches the transfer, and that no checkpoint claims bytes past
// the failure.
func TestWriteBehindError(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(map[bool]string{false: "queued", true: "direct"}[buffered], func(t *testing.T) {
			testWriteBehindError(t, buffered)
		})
	}
}

func testWriteBehindError(t *testing.T, buffered bool) {
	setCheckpointEvery(t, 256<<10)
	data := compressible(5, 4<<20)
	sum := sha256.Sum256(data)
	tg := verify.Target{Path: "rootfs/1.img", Length: int64(len(data)), Hashes: map[string][]byte{"sha256": sum[:]}}
	st, _, err := loadStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const failAt = 1<<20 + 5
	pd := &pending{Slot: "b", TargetSHA256: tg.SHA256()}
	p, err := newPipeline(tg, &failingWriter{n: failAt, buffered: buffered}, 1, pd, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	for off := 0; off < len(data) && werr == nil; off += 32 << 10 {
		_, werr = p.Write(data[off : off+32<<10])
	}
	if cerr := p.close(); werr == nil {
		werr = cerr
	}
	if !errors.Is(werr, errDiskFull) {
		t.Fatalf("transfer error: got %v, want %v", werr, errDiskFull)
	}
	if pd.Offset > failAt {
		t.Errorf("durable checkpoint at %d, beyond the failed write at %d", pd.Offset, failAt)
	}
}

// TestEncodeLightReusesBuffer: a record encoded over a longer one in the
// same buffer, as a transfer's light log does, is byte for byte the
// record encoded alone.
func TestEncodeLightReusesBuffer(t *testing.T) {
	long := lightRecord{BootID: "boot", TargetSHA256: strings.Repeat("ab", 32), Slot: "b", Ck: ckRecord{Offset: 1 << 40, HashState: bytes.Repeat([]byte{7}, 108), Validator: strings.Repeat("v", 200)}}
	short := lightRecord{BootID: "boot", TargetSHA256: "ab", Slot: "b", Ck: ckRecord{Offset: 10}}
	buf := make([]byte, lightSize)
	for _, r := range []lightRecord{long, short} {
		if err := encodeLightInto(buf, r); err != nil {
			t.Fatal(err)
		}
	}
	if alone := mustLight(t, short); !bytes.Equal(buf, alone) {
		t.Error("record encoded over a longer one differs from the record alone")
	}
}

// FuzzDecodeLight feeds arbitrary bytes to the light checkpoint parser: it
// never panics, and what it accepts encodes back to the same record.
func FuzzDecodeLight(f *testing.F) {
	rec := lightRecord{BootID: "b", TargetSHA256: "ab", Slot: "b", Ck: ckRecord{Offset: 10, HashState: []byte{1, 2}, Validator: `"v"`}}
	good, err := encodeLight(rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:64])
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeLight(b)
		if err != nil {
			return
		}
		again, err := encodeLight(r)
		if err != nil {
			t.Fatalf("accepted record does not encode: %v", err)
		}
		r2, err := decodeLight(again)
		if err != nil || r2.BootID != r.BootID || r2.Ck.Offset != r.Ck.Offset || !bytes.Equal(r2.Ck.HashState, r.Ck.HashState) {
			t.Fatalf("round trip: got %+v, %v; want %+v", r2, err, r)
		}
	})
}
