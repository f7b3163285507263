package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
)

// randBytes returns n pseudo-random bytes from seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// imagePair is a base image and a new one derived from it.
type imagePair struct {
	name      string
	base, new []byte
}

func imagePairs() []imagePair {
	base := randBytes(1, 48<<10)
	// Zero blocks, like an ext4 image's free space.
	base = append(base, make([]byte, 16<<10)...)
	edited := bytes.Clone(base)
	copy(edited[20000:], randBytes(2, 3000))
	blockEdit := bytes.Clone(base)
	copy(blockEdit[8192:], randBytes(3, 4096))
	return []imagePair{
		{"identical", base, bytes.Clone(base)},
		{"edited", base, edited},
		{"block edit", base, blockEdit},
		{"insertion", base, cat(base[:30000], randBytes(4, 777), base[30000:])},
		{"deletion", base, cat(base[:10000], base[21234:])},
		{"shifted", base, cat([]byte("shifted by a few bytes"), base)},
		{"all new", base, randBytes(5, 40<<10)},
		{"empty new", base, nil},
		{"empty base", nil, randBytes(6, 20000)},
		{"shorter", base, base[:12345]},
		{"odd tail", base, cat(base, []byte("x"))},
	}
}

var testChunkings = []IndexOptions{
	{BlockSize: 4096},
	{BlockSize: 1024, HashSize: 32},
	{Chunking: ChunkCDC, AvgSize: 1024},
	{Chunking: ChunkCDC, MinSize: 256, AvgSize: 2048, MaxSize: 4096, HashSize: 20},
}

func mustIndex(t testing.TB, b []byte, o IndexOptions) *Index {
	t.Helper()
	ix, err := BuildIndex(bytes.NewReader(b), o)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// rangeServer serves image with byte ranges and counts requests.
func rangeServer(t *testing.T, image []byte, requests *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.ServeContent(w, r, "image", time.Time{}, bytes.NewReader(image))
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/image"
}

// dirStore reads a chunk store from a directory.
func dirStore(dir string) StoreFunc {
	return func(ctx context.Context, name string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(dir, filepath.FromSlash(name)))
	}
}

// forEachPlan runs check, in a subtest, on the plan of each image pair's
// new image from its base, for each test chunking (ci its index); ni is
// the new image's index.
func forEachPlan(t *testing.T, check func(t *testing.T, ci int, pair imagePair, ni *Index, p *Plan)) {
	for ci, o := range testChunkings {
		for _, pair := range imagePairs() {
			t.Run(fmt.Sprintf("%s-%d-%d/%s", o.Chunking, o.BlockSize, o.AvgSize, pair.name), func(t *testing.T) {
				ni := mustIndex(t, pair.new, o)
				bi := mustIndex(t, pair.base, ni.Options())
				p, err := NewPlan(ni, []Base{{Index: bi}}, PlanOptions{MaxRequestBytes: 16 << 10, MaxGap: 2048})
				if err != nil {
					t.Fatal(err)
				}
				check(t, ci, pair, ni, p)
			})
		}
	}
}

// applyFrom applies p over pair's base from src and checks that the
// output is pair's new image (how says which source, in errors).
func applyFrom(t *testing.T, p *Plan, pair imagePair, src Source, how string) {
	t.Helper()
	var out bytes.Buffer
	if err := Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(pair.base)}, src, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), pair.new) {
		t.Fatalf("%s apply: got %d bytes, want %d (differ)", how, out.Len(), len(pair.new))
	}
}

func TestApplyRoundTrip(t *testing.T) {
	forEachPlan(t, func(t *testing.T, ci int, pair imagePair, ni *Index, p *Plan) {
		st := p.Stats()
		if st.CopyBytes+st.FetchBytes != int64(len(pair.new)) {
			t.Errorf("copy %d + fetch %d bytes, want %d", st.CopyBytes, st.FetchBytes, len(pair.new))
		}
		var requests atomic.Int64
		url := rangeServer(t, pair.new, &requests)
		applyFrom(t, p, pair, Source{Range: HTTPRange(http.DefaultClient, url)}, "range")
		if got, want := requests.Load(), int64(st.Requests); got != want {
			t.Errorf("range requests: got %d, want %d", got, want)
		}

		if ci%2 == 1 {
			return // the store path is slow on busy disks: half the cases suffice
		}
		dir := t.TempDir()
		if _, err := WriteChunkStore(dir, ni, bytes.NewReader(pair.new)); err != nil {
			t.Fatal(err)
		}
		applyFrom(t, p, pair, Source{Store: dirStore(dir)}, "store")
	})
}

// TestPlanFindsChunks checks what each chunking reuses: fixed blocks
// survive in-place edits, CDC survives shifts.
func TestPlanFindsChunks(t *testing.T) {
	base := randBytes(7, 256<<10)
	tests := []struct {
		name         string
		new          []byte
		o            IndexOptions
		maxFetchFrac float64
	}{
		{"fixed identical", base, IndexOptions{}, 0},
		{"fixed block edit", cat(base[:8192], randBytes(8, 4096), base[12288:]), IndexOptions{}, 0.02},
		{"cdc identical", base, IndexOptions{Chunking: ChunkCDC}, 0},
		{"cdc shifted", cat([]byte("abc"), base), IndexOptions{Chunking: ChunkCDC}, 0.1},
		{"cdc insertion", cat(base[:100000], randBytes(9, 100), base[100000:]), IndexOptions{Chunking: ChunkCDC}, 0.1},
		{"cdc all new", randBytes(10, 256<<10), IndexOptions{Chunking: ChunkCDC}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ni := mustIndex(t, tt.new, tt.o)
			p, err := NewPlan(ni, []Base{{Index: mustIndex(t, base, tt.o)}}, PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st := p.Stats()
			if got, limit := float64(st.FetchBytes)/float64(len(tt.new)), tt.maxFetchFrac; got > limit {
				t.Errorf("fetched fraction: got %.3f, want <= %.3f", got, limit)
			}
			if tt.maxFetchFrac == 1 && st.FetchBytes != int64(len(tt.new)) {
				t.Errorf("all new: fetch %d bytes, want %d", st.FetchBytes, len(tt.new))
			}
		})
	}
	// Fixed blocks do not survive a shift: that is why CDC exists.
	ni := mustIndex(t, cat([]byte("abc"), base), IndexOptions{})
	p, _ := NewPlan(ni, []Base{{Index: mustIndex(t, base, IndexOptions{})}}, PlanOptions{})
	if got := p.Stats().Copied; got != 0 {
		t.Errorf("fixed shifted: got %d copied blocks, want 0", got)
	}
}

func TestIndexWriterMatchesBuildIndex(t *testing.T) {
	img := cat(randBytes(11, 100000), make([]byte, 30000), randBytes(12, 5000))
	for _, o := range testChunkings {
		want := mustIndex(t, img, o)
		for _, split := range []int{1, 7, 63, 64, 65, 1000, 4096, 99999} {
			w, err := NewIndexWriter(o)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, iotest.OneByteReader(bytes.NewReader(img[:split]))); err != nil {
				t.Fatal(err)
			}
			for rest := img[split:]; len(rest) > 0; {
				n := min(len(rest), split)
				if _, err := w.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			got, err := w.Index()
			if err != nil {
				t.Fatal(err)
			}
			if !equalIndex(got, want) {
				t.Errorf("%+v split %d: IndexWriter index differs from BuildIndex", o, split)
			}
			if _, err := w.Write([]byte{1}); err == nil {
				t.Errorf("write after Index: got nil error, want one")
			}
		}
	}
}

func TestCDCChunkSizes(t *testing.T) {
	o := IndexOptions{Chunking: ChunkCDC, AvgSize: 1024}
	ix := mustIndex(t, randBytes(13, 1<<20), o)
	oo := ix.Options()
	for i, c := range ix.Chunks() {
		if c.Size > int64(oo.MaxSize) || (i < len(ix.Chunks())-1 && c.Size < int64(oo.MinSize)) {
			t.Fatalf("chunk %d: size %d outside [%d, %d]", i, c.Size, oo.MinSize, oo.MaxSize)
		}
	}
	avg := float64(ix.Length()) / float64(len(ix.Chunks()))
	if avg < 512 || avg > 2048 {
		t.Errorf("average chunk: got %.0f bytes, want near %d", avg, oo.AvgSize)
	}
}

func TestIndexMarshalRoundTrip(t *testing.T) {
	for _, o := range testChunkings {
		for _, img := range [][]byte{nil, {1}, randBytes(14, 50000)} {
			ix := mustIndex(t, img, o)
			b, err := ix.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseIndex(b)
			if err != nil {
				t.Fatalf("%+v %d bytes: %v", o, len(img), err)
			}
			if !equalIndex(got, ix) {
				t.Errorf("%+v %d bytes: parsed index differs", o, len(img))
			}
		}
	}
}

func TestParseIndexRejects(t *testing.T) {
	good, _ := mustIndex(t, randBytes(15, 10000), IndexOptions{Chunking: ChunkCDC, AvgSize: 1024}).MarshalBinary()
	fixed, _ := mustIndex(t, randBytes(15, 10000), IndexOptions{}).MarshalBinary()
	set := func(b []byte, i int, v ...byte) []byte { b = bytes.Clone(b); copy(b[i:], v); return b }
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"short header", good[:20]},
		{"magic", set(good, 0, 'X')},
		{"version", set(good, 4, 2)},
		{"chunking", set(good, 5, 9)},
		{"hash size small", set(good, 6, 8)},
		{"hash size large", set(good, 6, 33)},
		{"flags", set(good, 7, 1)},
		{"huge max", set(good, 16, 0xff, 0xff, 0xff, 0xff)},
		{"fixed sizes differ", set(fixed, 8, 0, 0, 0x20, 0)},
		{"huge count", set(good, 28, 0, 0, 0, 1, 0, 0, 0, 0)},
		{"count beyond data", set(good, 28, 0, 0, 0, 0, 0, 1, 0, 0)},
		{"length too short", set(good, 20, 0, 0, 0, 0, 0, 0, 0, 1)},
		{"fixed count mismatch", set(fixed, 35, 1)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(bytes.Clone(good), 0)},
		{"zero chunk size", set(good, indexHeaderSize, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseIndex(tt.data); !errors.Is(err, ErrCorruptIndex) {
				t.Errorf("got %v, want ErrCorruptIndex", err)
			}
		})
	}
}

func FuzzParseIndex(f *testing.F) {
	for _, o := range testChunkings {
		b, _ := mustIndex(f, randBytes(16, 20000), o).MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte(indexMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := ParseIndex(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptIndex) {
				t.Fatalf("error does not wrap ErrCorruptIndex: %v", err)
			}
			return
		}
		b, err := ix.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseIndex(b)
		if err != nil || !equalIndex(again, ix) {
			t.Fatalf("re-encoded index does not parse back: %v", err)
		}
	})
}

func TestPlanIndexMismatch(t *testing.T) {
	img := randBytes(17, 10000)
	ni := mustIndex(t, img, IndexOptions{})
	bi := mustIndex(t, img, IndexOptions{Chunking: ChunkCDC})
	if _, err := NewPlan(ni, []Base{{Index: bi}}, PlanOptions{}); !errors.Is(err, ErrIndexMismatch) {
		t.Errorf("got %v, want ErrIndexMismatch", err)
	}
}

func TestApplyCorruptChunk(t *testing.T) {
	base := randBytes(18, 64<<10)
	img := cat(base[:20000], randBytes(19, 9000), base[20000:])
	ni := mustIndex(t, img, IndexOptions{BlockSize: 1024})
	p, err := NewPlan(ni, []Base{{Index: mustIndex(t, base, ni.Options())}}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(img)
	bad[21000] ^= 1
	var requests atomic.Int64
	url := rangeServer(t, bad, &requests)
	err = Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, Source{Range: HTTPRange(http.DefaultClient, url)}, io.Discard)
	if !errors.Is(err, ErrCorruptChunk) {
		t.Errorf("range: got %v, want ErrCorruptChunk", err)
	}

	dir := t.TempDir()
	if _, err := WriteChunkStore(dir, ni, bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	var missing Chunk
	for i, c := range ni.Chunks() {
		if p.from[i].base < 0 {
			missing = c
			break
		}
	}
	name := filepath.Join(dir, ni.ChunkPath(missing))
	for _, corrupt := range []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("not zstd at all")},
		{"other chunk", mustZstd(t, randBytes(20, int(missing.Size)))},
		{"too long", mustZstd(t, randBytes(21, 3*int(missing.Size)))},
		{"empty", nil},
	} {
		if err := os.WriteFile(name, corrupt.data, 0o644); err != nil {
			t.Fatal(err)
		}
		err = Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, Source{Store: dirStore(dir)}, io.Discard)
		if !errors.Is(err, ErrCorruptChunk) {
			t.Errorf("store %s: got %v, want ErrCorruptChunk", corrupt.name, err)
		}
	}
	os.Remove(name)
	err = Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, Source{Store: dirStore(dir)}, io.Discard)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("store missing chunk: got %v, want ErrNotExist", err)
	}
}

func TestApplyNoRange(t *testing.T) {
	img := randBytes(22, 30000)
	ni := mustIndex(t, img, IndexOptions{})
	p, _ := NewPlan(ni, nil, PlanOptions{})
	for _, tt := range []struct {
		name    string
		handler http.HandlerFunc
		want    error
	}{
		{"200 whole file", func(w http.ResponseWriter, r *http.Request) { w.Write(img) }, ErrNoRange},
		{"wrong range", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-9/30000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(img[:10])
		}, ErrNoRange},
	} {
		srv := httptest.NewServer(tt.handler)
		err := Apply(t.Context(), p, nil, Source{Range: HTTPRange(srv.Client(), srv.URL)}, io.Discard)
		srv.Close()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestApplyResume(t *testing.T) {
	base := randBytes(23, 100000)
	img := cat(base[:30000], randBytes(24, 5000), base[31000:], randBytes(25, 3000))
	for _, o := range testChunkings {
		ni := mustIndex(t, img, o)
		p, err := NewPlan(ni, []Base{{Index: mustIndex(t, base, ni.Options())}}, PlanOptions{MaxGap: -1})
		if err != nil {
			t.Fatal(err)
		}
		var requests atomic.Int64
		url := rangeServer(t, img, &requests)
		dir := t.TempDir()
		if _, err := WriteChunkStore(dir, ni, bytes.NewReader(img)); err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{0, 1, 4095, 4096, 30001, 34999, int64(len(img)) - 1, int64(len(img))} {
			q, err := p.From(off)
			if err != nil {
				t.Fatal(err)
			}
			for _, src := range []Source{{Range: HTTPRange(http.DefaultClient, url)}, {Store: dirStore(dir)}} {
				var out bytes.Buffer
				if err := Apply(t.Context(), q, []io.ReaderAt{bytes.NewReader(base)}, src, &out); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), img[off:]) {
					t.Errorf("%+v resume at %d: got %d bytes, want %d (differ)", o, off, out.Len(), len(img)-int(off))
				}
			}
		}
		if _, err := p.From(int64(len(img)) + 1); err == nil {
			t.Errorf("resume past the end: got nil error, want one")
		}
	}
}

// TestApplyStaleBase checks that a base whose bytes changed after it was
// indexed is not trusted: its chunks are fetched instead.
func TestApplyStaleBase(t *testing.T) {
	base := randBytes(26, 50000)
	img := cat(base[:20000], []byte("new"), base[20000:])
	o := IndexOptions{Chunking: ChunkCDC, AvgSize: 1024}
	ni := mustIndex(t, img, o)
	p, _ := NewPlan(ni, []Base{{Index: mustIndex(t, base, o)}}, PlanOptions{})
	changed := bytes.Clone(base)
	for i := 0; i < len(changed); i += 3000 {
		changed[i] ^= 0xff
	}
	var requests atomic.Int64
	url := rangeServer(t, img, &requests)
	var out bytes.Buffer
	if err := Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(changed)}, Source{Range: HTTPRange(http.DefaultClient, url)}, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), img) {
		t.Errorf("got %d bytes, want %d (differ)", out.Len(), len(img))
	}
	if got, planned := requests.Load(), int64(p.Stats().Requests); got <= planned {
		t.Errorf("requests: got %d, want more than the %d planned", got, planned)
	}
}

// slotBuf is a slot written in order while it is read as a base.
type slotBuf struct {
	b   []byte
	off int
}

func (s *slotBuf) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	n := copy(p, s.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *slotBuf) Write(p []byte) (int, error) {
	if s.off+len(p) > len(s.b) {
		s.b = append(s.b, make([]byte, s.off+len(p)-len(s.b))...)
	}
	copy(s.b[s.off:], p)
	s.off += len(p)
	return len(p), nil
}

func TestApplyInPlace(t *testing.T) {
	running := randBytes(27, 80000)
	old := cat(randBytes(28, 30000), running[:40000]) // the release before
	// The new image moves a chunk of the old release backwards and one
	// forwards: only the first may be taken from the slot being written.
	img := cat(old[40000:50000], running[40000:], old[:30000])
	o := IndexOptions{BlockSize: 1000}
	ni := mustIndex(t, img, o)
	p, err := NewPlan(ni, []Base{{Index: mustIndex(t, running, o)}, {Index: mustIndex(t, old, o), InPlace: true}}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range ni.Chunks() {
		if l := p.from[i]; l.base == 1 && l.off < c.Offset {
			t.Fatalf("chunk %d at %d taken from the in-place base at %d, before it", i, c.Offset, l.off)
		}
	}
	slot := &slotBuf{b: bytes.Clone(old)}
	var requests atomic.Int64
	url := rangeServer(t, img, &requests)
	if err := Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(running), slot}, Source{Range: HTTPRange(http.DefaultClient, url)}, slot); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(slot.b[:len(img)], img) {
		t.Errorf("slot does not hold the new image")
	}
	if st := p.Stats(); st.Copied == 0 || st.FetchBytes > 35000 {
		t.Errorf("stats %+v: want copies and at most the old release's first 30000 bytes fetched", st)
	}
}

func TestApplyBadArguments(t *testing.T) {
	ni := mustIndex(t, randBytes(29, 10000), IndexOptions{})
	p, _ := NewPlan(ni, []Base{{Index: ni}}, PlanOptions{})
	if err := Apply(t.Context(), p, nil, Source{Store: dirStore(t.TempDir())}, io.Discard); err == nil || !strings.Contains(err.Error(), "base") {
		t.Errorf("missing base reader: got %v, want an error about bases", err)
	}
	if err := Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(nil)}, Source{}, io.Discard); err == nil {
		t.Errorf("no source: got nil error, want one")
	}
	if _, err := NewPlan(ni, []Base{{}}, PlanOptions{}); err == nil {
		t.Errorf("base without index: got nil error, want one")
	}
	if _, err := NewIndexWriter(IndexOptions{Chunking: ChunkCDC, AvgSize: 3000}); err == nil {
		t.Errorf("avg not a power of two: got nil error, want one")
	}
}

func mustZstd(t testing.TB, b []byte) []byte {
	t.Helper()
	e, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.EncodeAll(b, nil)
}

// equalIndex reports whether two indexes are identical (tests, resume).
func equalIndex(a, b *Index) bool {
	if a.opts != b.opts || a.length != b.length || len(a.chunks) != len(b.chunks) {
		return false
	}
	for i := range a.chunks {
		if a.chunks[i] != b.chunks[i] {
			return false
		}
	}
	return true
}

func TestHTTPStore(t *testing.T) {
	base := randBytes(37, 40000)
	img := cat(base[:10000], randBytes(38, 6000), base[10000:])
	ni := mustIndex(t, img, IndexOptions{Chunking: ChunkCDC, AvgSize: 1024})
	dir := t.TempDir()
	st, err := WriteChunkStore(dir, ni, bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if st.Written != st.Chunks || st.Chunks == 0 {
		t.Errorf("first write: %+v, want every chunk written", st)
	}
	again, err := WriteChunkStore(dir, ni, bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if again.Written != 0 || again.Bytes != st.Bytes {
		t.Errorf("second write: %+v, want nothing written and %d bytes", again, st.Bytes)
	}
	if _, err := WriteChunkStore(t.TempDir(), ni, bytes.NewReader(base)); err == nil {
		t.Errorf("store of another image: got nil error, want one")
	}
	var requests atomic.Int64
	srv := httptest.NewServer(http.StripPrefix("/chunks/", http.FileServer(http.Dir(dir))))
	defer srv.Close()
	counting := &countingDoer{c: srv.Client(), n: &requests}
	p, _ := NewPlan(ni, []Base{{Index: mustIndex(t, base, ni.Options())}}, PlanOptions{})
	var out bytes.Buffer
	if err := Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, Source{Store: HTTPStore(counting, srv.URL+"/chunks/")}, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), img) {
		t.Errorf("got %d bytes, want %d (differ)", out.Len(), len(img))
	}
	if got, want := requests.Load(), int64(p.Stats().Fetched); got != want {
		t.Errorf("store requests: got %d, want %d", got, want)
	}
	// A store without the chunks: a clear error, no output past the
	// first missing chunk.
	err = Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, Source{Store: HTTPStore(srv.Client(), srv.URL+"/nowhere")}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing store: got %v, want a 404 error", err)
	}
}

type countingDoer struct {
	c *http.Client
	n *atomic.Int64
}

func (d *countingDoer) Do(r *http.Request) (*http.Response, error) {
	d.n.Add(1)
	return d.c.Do(r)
}

// trackedBody records whether it was closed.
type trackedBody struct {
	io.Reader
	open *atomic.Int64
}

func (b trackedBody) Close() error { b.open.Add(-1); return nil }

func TestApplyClosesBodiesAndStops(t *testing.T) {
	base := randBytes(39, 60000)
	img := cat(base[:10000], randBytes(40, 9000), base[10000:40000], randBytes(41, 9000))
	ni := mustIndex(t, img, IndexOptions{BlockSize: 1024})
	p, _ := NewPlan(ni, []Base{{Index: mustIndex(t, base, ni.Options())}}, PlanOptions{MaxGap: -1})
	for _, tt := range []struct {
		name  string
		serve []byte
		want  error
	}{
		{"good", img, nil},
		{"corrupt", cat(img[:len(img)-1], []byte{img[len(img)-1] ^ 1}), ErrCorruptChunk},
		{"short", img[:len(img)-500], io.ErrUnexpectedEOF},
	} {
		var open atomic.Int64
		src := Source{Range: func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
			open.Add(1)
			end := min(off+n, int64(len(tt.serve)))
			return trackedBody{bytes.NewReader(tt.serve[off:end]), &open}, nil
		}}
		err := Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, src, io.Discard)
		if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
		if got := open.Load(); got != 0 {
			t.Errorf("%s: %d bodies left open", tt.name, got)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := Apply(ctx, p, []io.ReaderAt{bytes.NewReader(base)}, Source{Range: func(context.Context, int64, int64) (io.ReadCloser, error) {
		return nil, errors.New("must not be called")
	}}, io.Discard)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
}

func TestBuildIndexReadError(t *testing.T) {
	boom := errors.New("read failed")
	if _, err := BuildIndex(iotest.ErrReader(boom), IndexOptions{}); !errors.Is(err, boom) {
		t.Errorf("got %v, want the read error", err)
	}
	if _, err := BuildIndex(bytes.NewReader(nil), IndexOptions{Chunking: "rabin"}); err == nil {
		t.Errorf("unknown chunking: got nil error, want one")
	}
}
