package delta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// mustPack writes the pack of img and returns it and its parsed table
// (through MarshalBinary and ParsePackTable, as a device gets it).
func mustPack(t testing.TB, ix *Index, img []byte) ([]byte, *PackTable) {
	t.Helper()
	var pack bytes.Buffer
	tab, st, err := WritePack(&pack, ix, bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Bytes, int64(pack.Len()); got != want {
		t.Errorf("pack stats: got %d bytes, want %d", got, want)
	}
	b, _ := tab.MarshalBinary()
	tab2, err := ParsePackTable(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tab2.off, tab.off; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("table round trip: got %v, want %v", got, want)
	}
	return pack.Bytes(), tab2
}

func TestApplyPackRoundTrip(t *testing.T) {
	forEachPlan(t, func(t *testing.T, _ int, pair imagePair, ni *Index, p *Plan) {
		pack, tab := mustPack(t, ni, pair.new)
		var requests atomic.Int64
		url := rangeServer(t, pack, &requests)
		applyFrom(t, p, pair, Source{Pack: &PackSource{Table: tab, Range: HTTPRange(http.DefaultClient, url)}}, "pack")
		st := p.Stats()
		if st.Fetched == 0 && requests.Load() != 0 {
			t.Errorf("nothing missing: got %d requests, want 0", requests.Load())
		}
		// Coalescing: never more requests than missing chunks.
		if got, limit := requests.Load(), int64(st.Fetched); got > limit {
			t.Errorf("requests: got %d, want <= %d", got, limit)
		}
	})
}

// TestApplyPackCoalesces checks that an all-new image comes in few
// requests, bounded by MaxRequestBytes, rather than one per chunk.
func TestApplyPackCoalesces(t *testing.T) {
	img := cat(randBytes(20, 64<<10), make([]byte, 64<<10))
	ni := mustIndex(t, img, IndexOptions{BlockSize: 1024})
	p, err := NewPlan(ni, nil, PlanOptions{MaxRequestBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pack, tab := mustPack(t, ni, img)
	var requests atomic.Int64
	url := rangeServer(t, pack, &requests)
	var out bytes.Buffer
	src := Source{Pack: &PackSource{Table: tab, Range: HTTPRange(http.DefaultClient, url)}}
	if err := Apply(t.Context(), p, nil, src, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), img) {
		t.Fatal("pack apply: output differs")
	}
	// 64 random blocks plus one zero block, all in one request.
	if got, want := tab.Len(), 65; got != want {
		t.Errorf("pack entries: got %d, want %d", got, want)
	}
	if got, want := requests.Load(), int64(1); got != want {
		t.Errorf("requests: got %d, want %d", got, want)
	}
}

func TestApplyPackRejects(t *testing.T) {
	base := randBytes(21, 32<<10)
	img := cat(base[:8192], randBytes(22, 8192), base[16384:])
	ni := mustIndex(t, img, IndexOptions{BlockSize: 4096})
	p, err := NewPlan(ni, []Base{{Index: mustIndex(t, base, ni.Options())}}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pack, tab := mustPack(t, ni, img)
	other, otherTab := mustPack(t, mustIndex(t, base[:16384], ni.Options()), base[:16384])
	cut, _ := tab.Span(2) // a missing block's frame
	flipped := bytes.Clone(pack)
	for i := range tab.Len() {
		off, n := tab.Span(i)
		flipped[off+n/2] ^= 0xff
	}
	noRange := func(b []byte) RangeFunc {
		return HTTPRange(http.DefaultClient, newNoRangeServer(t, b))
	}
	var reqs atomic.Int64
	tests := []struct {
		name string
		src  *PackSource
		want error
	}{
		{"corrupt frames", &PackSource{Table: tab, Range: HTTPRange(http.DefaultClient, rangeServer(t, flipped, &reqs))}, ErrCorruptChunk},
		{"another image's pack", &PackSource{Table: otherTab, Range: HTTPRange(http.DefaultClient, rangeServer(t, other, &reqs))}, ErrCorruptPackTable},
		{"truncated pack", &PackSource{Table: tab, Range: HTTPRange(http.DefaultClient, rangeServer(t, pack[:cut+1], &reqs))}, nil},
		{"server without range", &PackSource{Table: tab, Range: noRange(pack)}, ErrNoRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, Source{Pack: tt.src}, &out)
			if err == nil {
				t.Fatal("got no error, want one")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestApplyPackResume applies from every chunk boundary and mid-chunk
// offset, as after an interrupted install.
func TestApplyPackResume(t *testing.T) {
	base := randBytes(23, 40<<10)
	img := cat(base[:5000], randBytes(24, 3000), base[5000:])
	ni := mustIndex(t, img, IndexOptions{Chunking: ChunkCDC, AvgSize: 1024})
	p, err := NewPlan(ni, []Base{{Index: mustIndex(t, base, ni.Options())}}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pack, tab := mustPack(t, ni, img)
	var reqs atomic.Int64
	src := Source{Pack: &PackSource{Table: tab, Range: HTTPRange(http.DefaultClient, rangeServer(t, pack, &reqs))}}
	for _, off := range []int64{0, 1, 4999, 5000, 6500, 8000, int64(len(img)) - 1, int64(len(img))} {
		q, err := p.From(off)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := Apply(t.Context(), q, []io.ReaderAt{bytes.NewReader(base)}, src, &out); err != nil {
			t.Fatalf("from %d: %v", off, err)
		}
		if !bytes.Equal(out.Bytes(), img[off:]) {
			t.Errorf("from %d: got %d bytes, want %d (differ)", off, out.Len(), len(img)-int(off))
		}
	}
}

func TestParsePackTable(t *testing.T) {
	good, _ := (&PackTable{off: []int64{0, 5, 9}}).MarshalBinary()
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"good", good, true},
		{"empty table", []byte("SBPK\x01\x00"), true},
		{"empty", nil, false},
		{"bad magic", []byte("SBPX\x01\x00"), false},
		{"version 2", []byte("SBPK\x02\x00"), false},
		{"no count", []byte("SBPK\x01"), false},
		{"zero length entry", []byte("SBPK\x01\x01\x00"), false},
		{"count beyond data", []byte("SBPK\x01\x05\x01"), false},
		{"trailing", append(bytes.Clone(good), 0), false},
		{"huge entry", []byte("SBPK\x01\x01\xff\xff\xff\xff\x0f"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePackTable(tt.data)
			if got := err == nil; got != tt.ok {
				t.Fatalf("got err %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrCorruptPackTable) {
				t.Errorf("got %v, want ErrCorruptPackTable", err)
			}
		})
	}
}

func FuzzParsePackTable(f *testing.F) {
	img := randBytes(25, 20000)
	for _, o := range testChunkings {
		var pack bytes.Buffer
		tab, _, err := WritePack(&pack, mustIndex(f, img, o), bytes.NewReader(img))
		if err != nil {
			f.Fatal(err)
		}
		b, _ := tab.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte("SBPK\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := ParsePackTable(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptPackTable) {
				t.Fatalf("error does not wrap ErrCorruptPackTable: %v", err)
			}
			return
		}
		b, _ := tab.MarshalBinary()
		if !bytes.Equal(b, data) {
			t.Fatalf("re-encoding differs: got %x, want %x", b, data)
		}
	})
}

// newNoRangeServer serves b whole, ignoring Range headers.
func newNoRangeServer(t *testing.T, b []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(b) }))
	t.Cleanup(srv.Close)
	return srv.URL + "/pack"
}

// countingRange serves byte ranges of b and records, per response, the
// bytes asked for and the bytes read before Close.
type countingRange struct {
	b           []byte
	asked, read atomic.Int64
	requests    atomic.Int64
	shortClosed atomic.Int64 // responses closed before their end
}

func (c *countingRange) Range(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n <= 0 || off+n > int64(len(c.b)) {
		return nil, fmt.Errorf("range %d+%d outside %d bytes", off, n, len(c.b))
	}
	c.requests.Add(1)
	c.asked.Add(n)
	return &countedBody{r: bytes.NewReader(c.b[off : off+n]), c: c, n: n}, nil
}

type countedBody struct {
	r    *bytes.Reader
	c    *countingRange
	n    int64
	done int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.done += int64(n)
	b.c.read.Add(int64(n))
	return n, err
}

func (b *countedBody) Close() error {
	if b.done < b.n {
		b.c.shortClosed.Add(1)
	}
	return nil
}

// TestApplyPackReadsWhatItAsks checks that every pack response is read to
// its end when the new image repeats chunks that appeared earlier in it
// (the look-ahead leaves repeats out of a request): servers send what
// was asked whether it is read or not. Before the fix, a repeat closed
// the open response and its remaining frames were asked for again.
// With Written, repeats are copied from the output: fewer requests.
func TestApplyPackReadsWhatItAsks(t *testing.T) {
	blocks := make([][]byte, 8)
	for i := range blocks {
		blocks[i] = randBytes(uint64(40+i), 1024)
	}
	base := randBytes(39, 4096)
	// Missing blocks 0..7, with repeats of 1 and 3 far from their first
	// appearance, and a base block between them (its frame, over the
	// 1 KiB gap, splits the requests in two).
	img := cat(blocks[0], blocks[1], blocks[2], blocks[3], blocks[4], blocks[1], blocks[5],
		base[:1024], blocks[6], blocks[3], blocks[7], blocks[1])
	ni := mustIndex(t, img, IndexOptions{BlockSize: 1024})
	p, err := NewPlan(ni, []Base{{Index: mustIndex(t, base, ni.Options())}}, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pack, tab := mustPack(t, ni, img)
	for _, tt := range []struct {
		name         string
		written      bool
		wantRequests int64
	}{
		{"without written", false, 5},
		{"with written", true, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cr := &countingRange{b: pack}
			out := &slotBuf{}
			src := Source{Pack: &PackSource{Table: tab, Range: cr.Range}}
			if tt.written {
				src.Written = out
			}
			if err := Apply(t.Context(), p, []io.ReaderAt{bytes.NewReader(base)}, src, out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.b, img) {
				t.Fatal("output differs")
			}
			if got := cr.shortClosed.Load(); got != 0 {
				t.Errorf("responses closed before their end: got %d, want 0", got)
			}
			if asked, read := cr.asked.Load(), cr.read.Load(); asked != read {
				t.Errorf("bytes asked %d, read %d: want equal", asked, read)
			}
			if got := cr.requests.Load(); got != tt.wantRequests {
				t.Errorf("requests: got %d, want %d", got, tt.wantRequests)
			}
		})
	}
}

// TestPlanPackBytes checks PackBytes against what Apply asks of the pack
// when no gap is merged, from the start and resumed, with the slot being
// written as Written (repeats copied).
func TestPlanPackBytes(t *testing.T) {
	for _, pair := range imagePairs() {
		t.Run(pair.name, func(t *testing.T) {
			ni := mustIndex(t, pair.new, testChunkings[2])
			bi := mustIndex(t, pair.base, ni.Options())
			pack, tab := mustPack(t, ni, pair.new)
			p, err := NewPlan(ni, []Base{{Index: bi}}, PlanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, from := range []int64{0, int64(len(pair.new) / 2)} {
				q, err := p.From(from)
				if err != nil {
					t.Fatal(err)
				}
				want, err := q.PackBytes(tab)
				if err != nil {
					t.Fatal(err)
				}
				slot := &slotBuf{b: bytes.Clone(pair.new[:from]), off: int(from)}
				cr := &countingRange{b: pack}
				src := Source{Pack: &PackSource{Table: tab, Range: cr.Range, MaxGap: -1}, Written: slot}
				if err := Apply(t.Context(), q, []io.ReaderAt{bytes.NewReader(pair.base)}, src, slot); err != nil {
					t.Fatal(err)
				}
				if got := cr.asked.Load(); got != want {
					t.Errorf("from %d: Apply asked %d pack bytes, PackBytes says %d", from, got, want)
				}
			}
		})
	}
	_, otherTab := mustPack(t, mustIndex(t, randBytes(40, 50000), testChunkings[2]), randBytes(40, 50000))
	p, err := NewPlan(mustIndex(t, randBytes(41, 9000), testChunkings[2]), nil, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PackBytes(otherTab); !errors.Is(err, ErrCorruptPackTable) {
		t.Errorf("another image's table: got %v, want ErrCorruptPackTable", err)
	}
}
