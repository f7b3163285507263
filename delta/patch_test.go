package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
)

func mustDiff(t testing.TB, base, cur []byte, opts DiffOptions) []byte {
	t.Helper()
	var p bytes.Buffer
	if err := Diff(bytes.NewReader(base), int64(len(base)), bytes.NewReader(cur), &p, opts); err != nil {
		t.Fatal(err)
	}
	return p.Bytes()
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
	)
	for _, o := range []DiffOptions{{}, {BlockSize: 8, Level: zstd.SpeedFastest}, {BlockSize: 64, Level: zstd.SpeedFastest}} {
		bs := o.BlockSize
		for _, pair := range pairs {
			patch := mustDiff(t, pair.base, pair.new, o)
			var out bytes.Buffer
			if err := Patch(bytes.NewReader(pair.base), iotest.HalfReader(bytes.NewReader(patch)), &out); err != nil {
				t.Fatalf("%s block %d: %v", pair.name, bs, err)
			}
			if !bytes.Equal(out.Bytes(), pair.new) {
				t.Errorf("%s block %d: got %d bytes, want %d (differ)", pair.name, bs, out.Len(), len(pair.new))
			}
			if bs == 0 && len(pair.new) > 1000 && pair.name != "all new" && pair.name != "empty base" && len(patch) > len(pair.new)/8 {
				t.Errorf("%s: patch of %d bytes for a %d-byte image, want at most 1/8", pair.name, len(patch), len(pair.new))
			}
		}
	}
}

func TestPatchRejects(t *testing.T) {
	base := randBytes(31, 20000)
	cur := cat(base[:5000], randBytes(32, 3000), base[6000:])
	good := mustDiff(t, base, cur, DiffOptions{})
	set := func(i int, v ...byte) []byte { b := bytes.Clone(good); copy(b[i:], v); return b }
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
		{"truncated stream", base, good[:len(good)-5], ErrCorruptPatch},
		{"trailing garbage", base, append(bytes.Clone(good), 1, 2, 3), ErrCorruptPatch},
		{"flipped stream byte", base, set(patchHeaderSize+20, good[patchHeaderSize+20]^0x40), ErrCorruptPatch},
		{"wrong base", randBytes(33, 20000), good, ErrCorruptPatch},
		{"short base", base[:10000], good, ErrBaseMismatch},
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

// handPatch builds a patch from raw records, for malformed streams.
func handPatch(t testing.TB, baseLen, newLen uint64, records []byte) []byte {
	t.Helper()
	hdr := make([]byte, patchHeaderSize)
	copy(hdr, patchMagic)
	hdr[4] = patchVersion
	binary.BigEndian.PutUint64(hdr[8:], baseLen)
	binary.BigEndian.PutUint64(hdr[16:], newLen)
	return append(hdr, mustZstd(t, records)...)
}

func TestPatchRejectsRecords(t *testing.T) {
	base := randBytes(34, 1000)
	rec := func(vals ...int64) []byte {
		var b []byte
		for i, v := range vals {
			if i%3 == 2 {
				b = binary.AppendVarint(b, v)
			} else {
				b = binary.AppendUvarint(b, uint64(v))
			}
		}
		return b
	}
	tests := []struct {
		name    string
		newLen  uint64
		records []byte
	}{
		{"empty record", 10, rec(0, 0, 0)},
		{"literal past end", 10, append(rec(11), make([]byte, 11)...)},
		{"copy past end", 10, rec(0, 11, 0)},
		{"copy before base", 10, rec(0, 10, -1)},
		{"copy after base", 10, rec(0, 10, 995)},
		{"missing records", 10, rec(0, 5, 0)},
		{"no records", 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := handPatch(t, uint64(len(base)), tt.newLen, tt.records)
			if err := Patch(bytes.NewReader(base), bytes.NewReader(p), io.Discard); !errors.Is(err, ErrCorruptPatch) {
				t.Errorf("got %v, want ErrCorruptPatch", err)
			}
		})
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

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

func FuzzPatch(f *testing.F) {
	base := randBytes(36, 4096)
	f.Add(mustDiff(f, base, cat(base[:1000], []byte("hello"), base[1200:]), DiffOptions{}))
	f.Add(mustDiff(f, base, nil, DiffOptions{}))
	f.Add(mustDiff(f, nil, []byte("literal only"), DiffOptions{}))
	f.Add(handPatch(f, 4096, 20, binary.AppendVarint(binary.AppendUvarint(nil, 20), 100)))
	f.Add([]byte(patchMagic))
	f.Fuzz(func(t *testing.T, patch []byte) {
		var out bytes.Buffer
		err := Patch(bytes.NewReader(base), bytes.NewReader(patch), &limitedWriter{w: &out, n: 1 << 20})
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
