package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

func mustDiff(t testing.TB, base, cur []byte, opts DiffOptions) []byte {
	t.Helper()
	var p bytes.Buffer
	if err := Diff(bytes.NewReader(base), int64(len(base)), bytes.NewReader(cur), &p, opts); err != nil {
		t.Fatal(err)
	}
	return p.Bytes()
}

// frameInfo is one frame of a version 2 or 3 patch.
type frameInfo struct {
	off     int // patch offset of its header
	a, b, x int // instruction, literal and difference sections
	n, out  int // zstd data (a+b+x) and output bytes
	hs      int // header size
}

// patchFrames lists the frames of a well-formed version 2 or 3 patch.
func patchFrames(t testing.TB, p []byte) []frameInfo {
	t.Helper()
	hs := frameHeaderSize
	if p[4] == 3 {
		hs = frameHeaderSizeV3
	}
	var fs []frameInfo
	for off := patchHeaderSize; off < len(p); {
		if off+hs > len(p) {
			t.Fatalf("frame header at %d past the end of a %d-byte patch", off, len(p))
		}
		a, b := int(binary.BigEndian.Uint32(p[off:])), int(binary.BigEndian.Uint32(p[off+4:]))
		x := 0
		if hs == frameHeaderSizeV3 {
			x = int(binary.BigEndian.Uint32(p[off+12:]))
		}
		fs = append(fs, frameInfo{off, a, b, x, a + b + x, int(binary.BigEndian.Uint32(p[off+8:])), hs})
		off += hs + a + b + x
	}
	return fs
}

// v1Fixture is a patch made by the version 1 Diff of an earlier release
// (testdata/v1.patch), with the images it joins.
func v1Fixture(t testing.TB) (base, cur, patch []byte) {
	t.Helper()
	base = randBytes(40, 20000)
	cur = cat(base[:5000], randBytes(41, 3000), base[6000:12000], []byte("inserted text in the new image"), base[12000:])
	patch, err := os.ReadFile("testdata/v1.patch")
	if err != nil {
		t.Fatal(err)
	}
	return base, cur, patch
}

func TestPatchRoundTrip(t *testing.T) {
	pairs := imagePairs()
	// Small same-length edits every few hundred bytes, as in relinked
	// binaries.
	base := randBytes(30, 64<<10)
	sprinkled := bytes.Clone(base)
	for i := 100; i < len(sprinkled); i += 333 {
		sprinkled[i]++
	}
	pairs = append(pairs,
		imagePair{"sprinkled", base, sprinkled},
		imagePair{"both empty", nil, nil},
		imagePair{"tiny", []byte("abc"), []byte("abd")},
		imagePair{"reordered", base, cat(base[40000:], base[:40000])},
		imagePair{"inserted, deleted and new", base, cat(base[:9000], randBytes(37, 20000), base[12000:50000], base[55000:])},
	)
	opts := []DiffOptions{{}, {BlockSize: 8, Level: zstd.SpeedFastest}, {BlockSize: 64, Level: zstd.SpeedFastest}, {FrameSize: 1 << 10},
		{Format: PatchFormatV2, FrameSize: 1 << 10}}
	for _, o := range opts {
		for _, pair := range pairs {
			patch := mustDiff(t, pair.base, pair.new, o)
			var out bytes.Buffer
			if err := Patch(bytes.NewReader(pair.base), iotest.HalfReader(bytes.NewReader(patch)), &out); err != nil {
				t.Fatalf("%s %+v: %v", pair.name, o, err)
			}
			if !bytes.Equal(out.Bytes(), pair.new) {
				t.Errorf("%s %+v: got %d bytes, want %d (differ)", pair.name, o, out.Len(), len(pair.new))
			}
			if o.BlockSize == 0 && o.Level == 0 && o.FrameSize == 0 && o.Format == "" && len(pair.new) > 1000 && pair.name != "all new" && pair.name != "empty base" && pair.name != "inserted, deleted and new" && len(patch) > len(pair.new)/8 {
				t.Errorf("%s: patch of %d bytes for a %d-byte image, want at most 1/8", pair.name, len(patch), len(pair.new))
			}
			total := 0
			for _, f := range patchFrames(t, patch) {
				if f.n > 3*max(o.FrameSize, DefaultFrameSize) {
					t.Errorf("%s %+v: frame at %d has %d bytes of zstd data", pair.name, o, f.off, f.n)
				}
				total += f.out
			}
			if total != len(pair.new) {
				t.Errorf("%s %+v: frames write %d bytes, want %d", pair.name, o, total, len(pair.new))
			}
		}
	}
}

// TestPatchFrames checks where Diff cuts frames: at the frame size of zstd
// data, inside long literals, and at the output limit inside long copies.
func TestPatchFrames(t *testing.T) {
	old := frameMaxOutput
	frameMaxOutput = 10000
	t.Cleanup(func() { frameMaxOutput = old })
	base := cat(randBytes(50, 40000), make([]byte, 30000))
	cur := cat(base[:35000], randBytes(51, 30000), base[20000:], randBytes(52, 100))
	patch := mustDiff(t, base, cur, DiffOptions{FrameSize: 2 << 10})
	fs := patchFrames(t, patch)
	if len(fs) < 12 {
		t.Errorf("got %d frames, want at least 12 (30000 new bytes in 2 KiB frames, 85000 copied in 10000-byte frames)", len(fs))
	}
	for _, f := range fs {
		if f.out > 10000 || f.n > 2<<10+300<<10 {
			t.Errorf("frame at %d: %d bytes of zstd data, %d of output", f.off, f.n, f.out)
		}
	}
	var out bytes.Buffer
	if err := Patch(bytes.NewReader(base), bytes.NewReader(patch), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), cur) {
		t.Fatal("output differs")
	}
}

// TestApplyPatchResume applies a patch, then resumes it from every
// checkpoint, as after an interruption at each frame boundary.
func TestApplyPatchResume(t *testing.T) {
	base := randBytes(60, 96<<10)
	cur := cat(base[:10000], randBytes(61, 40000), base[30000:70000], randBytes(62, 9000), base[60000:])
	patch := mustDiff(t, base, cur, DiffOptions{FrameSize: 4 << 10})
	var cks [][]byte
	var out bytes.Buffer
	err := ApplyPatch(bytes.NewReader(base), iotest.OneByteReader(bytes.NewReader(patch)), &out, PatchOptions{Checkpoint: func(c PatchCheckpoint) error {
		if got, want := c.OutputOffset, int64(out.Len()); got != want {
			t.Errorf("checkpoint output offset: got %d, want %d written", got, want)
		}
		b, err := c.MarshalBinary()
		if err != nil {
			return err
		}
		cks = append(cks, b)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), cur) {
		t.Fatal("output differs")
	}
	fs := patchFrames(t, patch)
	if len(cks) != len(fs) || len(fs) < 8 {
		t.Fatalf("got %d checkpoints for %d frames, want one per frame and at least 8 frames", len(cks), len(fs))
	}
	for i, b := range cks {
		var c PatchCheckpoint
		if err := c.UnmarshalBinary(b); err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		if i+1 < len(fs) && c.PatchOffset != int64(fs[i+1].off) {
			t.Errorf("checkpoint %d at patch byte %d, want the frame boundary %d", i, c.PatchOffset, fs[i+1].off)
		}
		var rest bytes.Buffer
		if err := ApplyPatch(bytes.NewReader(base), bytes.NewReader(patch[c.PatchOffset:]), &rest, PatchOptions{From: &c}); err != nil {
			t.Fatalf("resume at checkpoint %d (%d, %d): %v", i, c.PatchOffset, c.OutputOffset, err)
		}
		if !bytes.Equal(rest.Bytes(), cur[c.OutputOffset:]) {
			t.Errorf("resume at checkpoint %d: output differs", i)
		}
	}

	// A checkpoint resumed over the wrong bytes or with the output before
	// it damaged fails.
	var c PatchCheckpoint
	if err := c.UnmarshalBinary(cks[2]); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name  string
		patch []byte
	}{
		{"patch from a frame too early", patch[c.PatchOffset-int64(fs[2].n)-int64(fs[2].hs):]},
		{"patch from the middle of a frame", patch[c.PatchOffset+3:]},
		{"patch from its start", patch},
	}
	for _, b := range bad {
		err := ApplyPatch(bytes.NewReader(base), bytes.NewReader(b.patch), io.Discard, PatchOptions{From: &c})
		if !errors.Is(err, ErrCorruptPatch) {
			t.Errorf("%s: got %v, want ErrCorruptPatch", b.name, err)
		}
	}
	if err := ApplyPatch(bytes.NewReader(base), bytes.NewReader(patch), io.Discard, PatchOptions{From: &PatchCheckpoint{}}); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("zero checkpoint: got %v, want ErrBadCheckpoint", err)
	}
	boom := errors.New("state disk full")
	err = ApplyPatch(bytes.NewReader(base), bytes.NewReader(patch), io.Discard, PatchOptions{Checkpoint: func(PatchCheckpoint) error { return boom }})
	if !errors.Is(err, boom) {
		t.Errorf("failing checkpoint: got %v, want its error", err)
	}
}

func TestPatchCheckpointRejects(t *testing.T) {
	base := randBytes(63, 20000)
	patch := mustDiff(t, base, cat(randBytes(64, 5000), base), DiffOptions{FrameSize: 1 << 10})
	var good []byte
	err := ApplyPatch(bytes.NewReader(base), bytes.NewReader(patch), io.Discard, PatchOptions{Checkpoint: func(c PatchCheckpoint) error {
		if good == nil {
			good, _ = c.MarshalBinary()
		}
		return nil
	}})
	if err != nil || good == nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	set := func(i int, v ...byte) []byte { b := bytes.Clone(good); copy(b[i:], v); return b }
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:40]},
		{"magic", set(0, 'X')},
		{"version", set(4, 2)},
		{"patch version 1", set(5+4, 1)},
		{"patch flags", set(5+5, 1)},
		{"output past the image", set(5+patchHeaderSize+8, 0, 0, 0, 0, 0xff)},
		{"patch offset inside the header", set(5+patchHeaderSize, 0, 0, 0, 0, 0, 0, 0, 1)},
		{"hash state", set(checkpointFixed, 'x')},
		{"truncated hash state", good[:len(good)-1]},
		{"oversized", append(bytes.Clone(good), make([]byte, maxHashState)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c PatchCheckpoint
			if err := c.UnmarshalBinary(tt.b); !errors.Is(err, ErrBadCheckpoint) {
				t.Errorf("got %v, want ErrBadCheckpoint", err)
			}
		})
	}
	if _, err := (PatchCheckpoint{}).MarshalBinary(); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("zero checkpoint marshals: %v", err)
	}
}

// TestPatchV1 reads a patch of the version 1 format, which releases before
// this one published.
func TestPatchV1(t *testing.T) {
	base, cur, patch := v1Fixture(t)
	if patch[4] != 1 {
		t.Fatalf("fixture has version %d", patch[4])
	}
	var out bytes.Buffer
	calls := 0
	err := ApplyPatch(bytes.NewReader(base), iotest.HalfReader(bytes.NewReader(patch)), &out, PatchOptions{Checkpoint: func(PatchCheckpoint) error { calls++; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), cur) {
		t.Fatal("output differs")
	}
	if calls != 0 {
		t.Errorf("a version 1 patch made %d checkpoints, want none", calls)
	}
	if err := Patch(bytes.NewReader(base), bytes.NewReader(patch[:len(patch)-4]), io.Discard); !errors.Is(err, ErrCorruptPatch) {
		t.Errorf("truncated version 1 patch: got %v, want ErrCorruptPatch", err)
	}
}

func TestPatchRejects(t *testing.T) {
	for _, format := range []string{PatchFormatV2, PatchFormat} {
		t.Run(format, func(t *testing.T) { testPatchRejects(t, format) })
	}
}

func testPatchRejects(t *testing.T, format string) {
	base := randBytes(31, 20000)
	// A replaced run, and a run with a byte changed every 40 (an
	// approximate copy in version 3).
	sparse := bytes.Clone(base[6000:9000])
	for i := 0; i < len(sparse); i += 40 {
		sparse[i]++
	}
	cur := cat(base[:5000], randBytes(32, 3000), sparse, base[9000:])
	good := mustDiff(t, base, cur, DiffOptions{FrameSize: 1 << 10, Format: format})
	fs := patchFrames(t, good)
	if len(fs) < 2 {
		t.Fatalf("%d frames, want several", len(fs))
	}
	set := func(i int, v ...byte) []byte { b := bytes.Clone(good); copy(b[i:], v); return b }
	put32 := func(i, v int) []byte { return set(i, binary.BigEndian.AppendUint32(nil, uint32(v))...) }
	f1, hs, lit1 := fs[1].off, fs[1].hs, fs[1].off+fs[1].hs+fs[1].a+fs[1].x
	if fs[1].b == 0 {
		t.Fatal("frame 1 has no literals")
	}
	tests := []struct {
		name  string
		base  []byte
		patch []byte
		want  error
	}{
		{"empty", base, nil, ErrCorruptPatch},
		{"short header", base, good[:30], ErrCorruptPatch},
		{"magic", base, set(0, 'X'), ErrCorruptPatch},
		{"version", base, set(4, 9), ErrCorruptPatch},
		{"flags", base, set(5, 1), ErrCorruptPatch},
		{"huge length", base, set(16, 0xff), ErrCorruptPatch},
		{"wrong hash", base, set(30, good[30]^1), ErrCorruptPatch},
		{"no frames", base, good[:patchHeaderSize], ErrCorruptPatch},
		{"truncated frame header", base, good[:f1+5], ErrCorruptPatch},
		{"truncated frame", base, good[:f1+hs+fs[1].n/2], ErrCorruptPatch},
		{"truncated stream", base, good[:len(good)-5], ErrCorruptPatch},
		{"trailing garbage", base, append(bytes.Clone(good), 1, 2, 3), ErrCorruptPatch},
		{"trailing frame", base, append(bytes.Clone(good), good[f1:f1+hs+fs[1].n]...), ErrCorruptPatch},
		{"flipped stream byte", base, set(f1+hs+20, good[f1+hs+20]^0x40), ErrCorruptPatch},
		{"frame of no bytes", base, put32(f1, 0), ErrCorruptPatch},
		{"frame over the limit", base, set(f1, 0x7f), ErrCorruptPatch},
		{"instructions shorter than their data", base, put32(f1, fs[1].a-1), ErrCorruptPatch},
		{"instructions longer than their data", base, put32(f1, fs[1].a+1), ErrCorruptPatch},
		{"literals shorter than their data", base, put32(f1+4, fs[1].b-1), ErrCorruptPatch},
		{"literals longer than their data", base, put32(f1+4, fs[1].b+1), ErrCorruptPatch},
		{"literals missing", base, put32(f1+4, 0), ErrCorruptPatch},
		{"flipped literal byte", base, set(lit1+20, good[lit1+20]^0x40), ErrCorruptPatch},
		{"frame of no output", base, put32(f1+8, 0), ErrCorruptPatch},
		{"frame output past the image", base, put32(f1+8, 1<<24), ErrCorruptPatch},
		{"frame output short of its records", base, put32(f1+8, fs[1].out-1), ErrCorruptPatch},
		{"frame output beyond its records", base, put32(f1+8, fs[1].out+1), ErrCorruptPatch},
		{"frames swapped", base, cat(good[:fs[0].off], good[f1:f1+hs+fs[1].n], good[fs[0].off:f1], good[f1+hs+fs[1].n:]), ErrCorruptPatch},
		{"wrong base", randBytes(33, 20000), good, ErrCorruptPatch},
		{"short base", base[:10000], good, ErrBaseMismatch},
	}
	if format == PatchFormat {
		fx := slices.IndexFunc(fs, func(f frameInfo) bool { return f.x > 0 })
		if fx < 0 {
			t.Fatal("no frame with differences")
		}
		x, dOff := fs[fx].off, fs[fx].off+fs[fx].hs+fs[fx].a
		tests = append(tests, []struct {
			name  string
			base  []byte
			patch []byte
			want  error
		}{
			{"differences shorter than their data", base, put32(x+12, fs[fx].x-1), ErrCorruptPatch},
			{"differences longer than their data", base, put32(x+12, fs[fx].x+1), ErrCorruptPatch},
			{"differences missing", base, put32(x+12, 0), ErrCorruptPatch},
			{"differences over the limit", base, put32(x+12, PatchMaxFrame), ErrCorruptPatch},
			{"flipped difference byte", base, set(dOff+fs[fx].x/2, good[dOff+fs[fx].x/2]^0x40), ErrCorruptPatch},
		}...)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Patch(bytes.NewReader(tt.base), bytes.NewReader(tt.patch), io.Discard)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// handPatch builds a version 2 patch of one frame from raw instructions
// and literals, for malformed streams.
func handPatch(t testing.TB, baseLen, newLen uint64, ins, lits []byte) []byte {
	t.Helper()
	h := patchHeader{version: 2, baseLen: baseLen, newLen: newLen}
	zi := mustZstd(t, ins)
	var zl []byte
	if lits != nil {
		zl = mustZstd(t, lits)
	}
	p := h.marshal()
	p = binary.BigEndian.AppendUint32(p, uint32(len(zi)))
	p = binary.BigEndian.AppendUint32(p, uint32(len(zl)))
	p = binary.BigEndian.AppendUint32(p, uint32(newLen))
	return append(append(p, zi...), zl...)
}

// handPatchV3 builds a version 3 patch of one frame from raw
// instructions, literals and differences (nil: no section).
func handPatchV3(t testing.TB, baseLen, newLen uint64, ins, lits, diffs []byte) []byte {
	t.Helper()
	h := patchHeader{version: 3, baseLen: baseLen, newLen: newLen}
	zi := mustZstd(t, ins)
	var zl, zd []byte
	if lits != nil {
		zl = mustZstd(t, lits)
	}
	if diffs != nil {
		zd = mustZstd(t, diffs)
	}
	p := h.marshal()
	for _, v := range []int{len(zi), len(zl), int(newLen), len(zd)} {
		p = binary.BigEndian.AppendUint32(p, uint32(v))
	}
	return cat(p, zi, zd, zl)
}

// handPatchV1 builds a version 1 patch from raw records.
func handPatchV1(t testing.TB, baseLen, newLen uint64, records []byte) []byte {
	t.Helper()
	h := patchHeader{version: 1, baseLen: baseLen, newLen: newLen}
	return append(h.marshal(), mustZstd(t, records)...)
}

// rec is one record of a hand-made patch.
type rec struct {
	lit []byte
	c   uint64
	d   int64
}

// encodeRecords returns records as version 1 writes them (interleaved)
// and as version 2 does (instructions, literals).
func encodeRecords(recs []rec) (v1, ins, lits []byte) {
	for _, r := range recs {
		v1 = binary.AppendUvarint(v1, uint64(len(r.lit)))
		v1 = append(v1, r.lit...)
		v1 = binary.AppendVarint(binary.AppendUvarint(v1, r.c), r.d)
		ins = binary.AppendVarint(binary.AppendUvarint(binary.AppendUvarint(ins, uint64(len(r.lit))), r.c), r.d)
		lits = append(lits, r.lit...)
	}
	return v1, ins, lits
}

func TestPatchRejectsRecords(t *testing.T) {
	base := randBytes(34, 1000)
	tests := []struct {
		name   string
		newLen uint64
		recs   []rec
	}{
		{"empty record", 10, []rec{{nil, 0, 0}}},
		{"literal past end", 10, []rec{{make([]byte, 11), 0, 0}}},
		{"copy past end", 10, []rec{{nil, 11, 0}}},
		{"copy before base", 10, []rec{{nil, 10, -1}}},
		{"copy after base", 10, []rec{{nil, 10, 995}}},
		{"missing records", 10, []rec{{nil, 5, 0}}},
		{"no records", 10, nil},
		{"records after the end", 10, []rec{{nil, 10, 0}, {nil, 1, 0}}},
	}
	for _, tt := range tests {
		v1, ins, lits := encodeRecords(tt.recs)
		for _, v := range []struct {
			name  string
			patch []byte
		}{
			{"v1", handPatchV1(t, uint64(len(base)), tt.newLen, v1)},
			{"v2", handPatch(t, uint64(len(base)), tt.newLen, ins, lits)},
		} {
			t.Run(v.name+" "+tt.name, func(t *testing.T) {
				if err := Patch(bytes.NewReader(base), bytes.NewReader(v.patch), io.Discard); !errors.Is(err, ErrCorruptPatch) {
					t.Errorf("got %v, want ErrCorruptPatch", err)
				}
			})
		}
	}
	// Sections that do not match the records.
	_, ins, _ := encodeRecords([]rec{{[]byte("abc"), 7, 0}})
	for _, tt := range []struct {
		name string
		ins  []byte
		lits []byte
	}{
		{"literal bytes left over", ins, []byte("abcde")},
		{"literal bytes missing", ins, []byte("ab")},
		{"no literal section", ins, nil},
		{"instructions left over", append(bytes.Clone(ins), 0), []byte("abc")},
		{"instructions truncated", ins[:2], []byte("abc")},
	} {
		t.Run("v2 "+tt.name, func(t *testing.T) {
			p := handPatch(t, uint64(len(base)), 10, tt.ins, tt.lits)
			if err := Patch(bytes.NewReader(base), bytes.NewReader(p), io.Discard); !errors.Is(err, ErrCorruptPatch) {
				t.Errorf("got %v, want ErrCorruptPatch", err)
			}
		})
	}
	// Version 3 copies and differences that do not match.
	approx := func(c uint64) []byte {
		return binary.AppendVarint(binary.AppendUvarint(binary.AppendUvarint(nil, 0), c), 0)
	}
	for _, tt := range []struct {
		name  string
		ins   []byte
		diffs []byte
	}{
		{"approximate copy without differences", approx(10<<1 | 1), nil},
		{"differences left over", approx(10<<1 | 1), make([]byte, 11)},
		{"differences missing", approx(10<<1 | 1), make([]byte, 9)},
		{"differences for an exact copy", approx(10 << 1), make([]byte, 10)},
		{"approximate copy of nothing", append(approx(1), approx(10<<1|1)...), make([]byte, 10)},
	} {
		t.Run("v3 "+tt.name, func(t *testing.T) {
			p := handPatchV3(t, uint64(len(base)), 10, tt.ins, nil, tt.diffs)
			if err := Patch(bytes.NewReader(base), bytes.NewReader(p), io.Discard); !errors.Is(err, ErrCorruptPatch) {
				t.Errorf("got %v, want ErrCorruptPatch", err)
			}
		})
	}
	// A well-formed version 3 patch: base bytes plus differences.
	want := bytes.Clone(base[:10])
	d := make([]byte, 10)
	d[3], d[7] = 5, 250
	want[3] += 5
	want[7] += 250
	var got bytes.Buffer
	if err := Patch(bytes.NewReader(base), bytes.NewReader(handPatchV3(t, uint64(len(base)), 10, approx(10<<1|1), nil, d)), &got); err == nil || !strings.Contains(err.Error(), "hashes to") {
		t.Errorf("hand-made v3 patch: got %v, want a hash mismatch", err)
	} else if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("hand-made v3 patch wrote %x, want %x", got.Bytes(), want)
	}
	// The same sections that match: the hash is all that is wrong.
	p := handPatch(t, uint64(len(base)), 10, ins, []byte("abc"))
	if err := Patch(bytes.NewReader(base), bytes.NewReader(p), io.Discard); err == nil || !strings.Contains(err.Error(), "hashes to") {
		t.Errorf("well-formed hand-made patch: got %v, want a hash mismatch", err)
	}
}

func TestPatchWriteError(t *testing.T) {
	base := randBytes(35, 10000)
	p := mustDiff(t, base, cat(base, []byte("more")), DiffOptions{})
	boom := errors.New("disk full")
	err := Patch(bytes.NewReader(base), bytes.NewReader(p), errWriter{boom})
	if !errors.Is(err, boom) || errors.Is(err, ErrCorruptPatch) {
		t.Errorf("got %v, want the write error and not ErrCorruptPatch", err)
	}
}

func TestDiffOptions(t *testing.T) {
	for _, o := range []DiffOptions{{BlockSize: 4}, {FrameSize: 100}, {FrameSize: PatchMaxFrame}, {FrameSize: -1}} {
		if err := Diff(bytes.NewReader(nil), 0, bytes.NewReader(nil), io.Discard, o); err == nil {
			t.Errorf("Diff with %+v: no error", o)
		}
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

func FuzzPatch(f *testing.F) {
	base := randBytes(36, 4096)
	f.Add(mustDiff(f, base, cat(base[:1000], []byte("hello"), base[1200:]), DiffOptions{}))
	f.Add(mustDiff(f, base, cat(randBytes(37, 3000), base[:1000], base[3000:]), DiffOptions{FrameSize: 1 << 10}))
	f.Add(mustDiff(f, base, nil, DiffOptions{}))
	sparse := bytes.Clone(base)
	for i := 10; i < len(sparse); i += 50 {
		sparse[i] += 3
	}
	f.Add(mustDiff(f, base, sparse, DiffOptions{}))                      // v3, differences
	f.Add(mustDiff(f, base, sparse, DiffOptions{Format: PatchFormatV2})) // v2
	f.Add(mustDiff(f, base, cat(base[:1000], []byte("hello"), base[1200:]), DiffOptions{Format: PatchFormatV2}))
	f.Add(handPatchV3(f, 4096, 20, binary.AppendVarint(binary.AppendUvarint(binary.AppendUvarint(nil, 0), 20<<1|1), 100), nil, make([]byte, 20)))
	f.Add(mustDiff(f, nil, []byte("literal only"), DiffOptions{}))
	f.Add(handPatch(f, 4096, 20, binary.AppendVarint(binary.AppendUvarint(binary.AppendUvarint(nil, 0), 20), 100), nil))
	f.Add(handPatch(f, 4096, 25, binary.AppendVarint(binary.AppendUvarint(binary.AppendUvarint(nil, 5), 20), 100), []byte("hello")))
	f.Add(handPatchV1(f, 4096, 20, binary.AppendVarint(binary.AppendUvarint(nil, 20), 100)))
	_, _, v1 := v1Fixture(f)
	f.Add(v1)
	f.Add([]byte(patchMagic))
	f.Fuzz(func(t *testing.T, patch []byte) {
		var out bytes.Buffer
		err := Patch(bytes.NewReader(base), bytes.NewReader(patch), &limitedWriter{w: &out, n: 1 << 20})
		if err != nil && !errors.Is(err, ErrCorruptPatch) && !errors.Is(err, ErrBaseMismatch) && !errors.Is(err, errTooMuch) {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
	})
}

func FuzzPatchCheckpoint(f *testing.F) {
	base := randBytes(38, 8192)
	patch := mustDiff(f, base, cat(randBytes(39, 3000), base), DiffOptions{FrameSize: 1 << 10})
	_ = ApplyPatch(bytes.NewReader(base), bytes.NewReader(patch), io.Discard, PatchOptions{Checkpoint: func(c PatchCheckpoint) error {
		b, err := c.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		return nil
	}})
	f.Add([]byte(checkpointMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c PatchCheckpoint
		if err := c.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		again, err := c.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded checkpoint re-encodes to %x, %v; want %x", again, err, b)
		}
		if c.PatchOffset > int64(len(patch)) {
			return
		}
		err = ApplyPatch(bytes.NewReader(base), bytes.NewReader(patch[c.PatchOffset:]), &limitedWriter{w: io.Discard, n: 1 << 20}, PatchOptions{From: &c})
		if err != nil && !errors.Is(err, ErrCorruptPatch) && !errors.Is(err, ErrBaseMismatch) && !errors.Is(err, errTooMuch) {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
	})
}

var errTooMuch = errors.New("too much output")

// limitedWriter fails after n bytes, so fuzzed patches that claim huge
// images end quickly.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errTooMuch
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// TestDiffCompress: DiffOptions.Compress output is kept only where it is
// smaller, its errors end Diff, and ZstdCommand's patches apply.
func TestDiffCompress(t *testing.T) {
	base := randBytes(70, 64<<10)
	sparse := bytes.Clone(base[20000:40000])
	for i := 0; i < len(sparse); i += 37 {
		sparse[i] ^= 0x20
	}
	cur := cat(base[:20000], []byte(strings.Repeat("new text, compressible. ", 400)), sparse, base[40000:])
	plain := mustDiff(t, base, cur, DiffOptions{FrameSize: 4 << 10})
	larger := func(src []byte) ([]byte, error) { return make([]byte, len(src)+100), nil }
	if got := mustDiff(t, base, cur, DiffOptions{FrameSize: 4 << 10, Compress: larger}); !bytes.Equal(got, plain) {
		t.Error("a larger Compress output was used")
	}
	boom := errors.New("boom")
	failing := func([]byte) ([]byte, error) { return nil, boom }
	if err := Diff(bytes.NewReader(base), int64(len(base)), bytes.NewReader(cur), io.Discard, DiffOptions{Compress: failing}); !errors.Is(err, boom) {
		t.Errorf("Diff with a failing Compress: got %v, want %v", err, boom)
	}
	zc, err := ZstdCommand(19)
	if err != nil {
		ci.Skipf(t, "zstd program missing: %v", err)
	}
	p := mustDiff(t, base, cur, DiffOptions{FrameSize: 4 << 10, Compress: zc})
	var out bytes.Buffer
	if err := Patch(bytes.NewReader(base), bytes.NewReader(p), &out); err != nil || !bytes.Equal(out.Bytes(), cur) {
		t.Fatalf("patch made with the zstd program: %v", err)
	}
	if len(p) > len(plain) {
		t.Errorf("patch with the zstd program %d bytes, larger than without (%d)", len(p), len(plain))
	}
	if _, err := ZstdCommand(20); err == nil {
		t.Error("ZstdCommand(20): no error")
	}
}
