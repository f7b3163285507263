package delta

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// ErrCorruptPackTable reports a chunk pack table that does not parse.
var ErrCorruptPackTable = errors.New("delta: corrupt pack table")

const (
	packMagic   = "SBPK"
	packVersion = 1
)

// PackTable locates each distinct chunk of an image in its chunk pack:
// one static file holding the image's distinct chunks in image order
// (first appearance), each compressed as an independent zstd frame, so
// a device fetches missing chunks as coalesced byte ranges of one file
// instead of one request per chunk. Entry i is the i-th distinct chunk
// of the index the pack was written for.
//
// Format version 1: "SBPK", version byte 1, uvarint entry count, then one
// uvarint compressed length per entry; offsets are the running sums.
type PackTable struct {
	off []int64 // len(entries)+1 running offsets
}

// Len returns the number of entries.
func (t *PackTable) Len() int { return len(t.off) - 1 }

// Span returns where entry i lies in the pack: offset and length.
func (t *PackTable) Span(i int) (off, n int64) { return t.off[i], t.off[i+1] - t.off[i] }

// Size returns the pack's total length.
func (t *PackTable) Size() int64 { return t.off[len(t.off)-1] }

// MarshalBinary encodes the table in the version 1 format.
func (t *PackTable) MarshalBinary() ([]byte, error) {
	b := append([]byte(packMagic), packVersion)
	b = binary.AppendUvarint(b, uint64(t.Len()))
	for i := range t.Len() {
		_, n := t.Span(i)
		b = binary.AppendUvarint(b, uint64(n))
	}
	return b, nil
}

// ParsePackTable decodes and checks a version 1 pack table. It refuses
// more than [MaxChunks] entries, empty entries and entries larger than a
// compressed [MaxChunkSize] chunk can be, and allocates at most in
// proportion to len(data).
func ParsePackTable(data []byte) (*PackTable, error) {
	bad := func(format string, a ...any) (*PackTable, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrCorruptPackTable}, a...)...)
	}
	if len(data) < 5 || string(data[:4]) != packMagic {
		return bad("bad magic")
	}
	if data[4] != packVersion {
		return bad("unsupported version %d", data[4])
	}
	p := data[5:]
	count, k := uvarint(p)
	if k <= 0 {
		return bad("bad entry count")
	}
	p = p[k:]
	// Every entry takes at least one byte: this bounds the allocation.
	if count > MaxChunks || count > uint64(len(p)) {
		return bad("%d entries in %d bytes", count, len(p))
	}
	t := &PackTable{off: make([]int64, 1, count+1)}
	limit := uint64(packFrameLimit(MaxChunkSize))
	for i := range count {
		n, k := uvarint(p)
		if k <= 0 {
			return bad("entry %d truncated", i)
		}
		if n == 0 || n > limit {
			return bad("entry %d has length %d", i, n)
		}
		p = p[k:]
		t.off = append(t.off, t.off[len(t.off)-1]+int64(n))
	}
	if len(p) != 0 {
		return bad("%d trailing bytes", len(p))
	}
	return t, nil
}

// uvarint is binary.Uvarint refusing non-minimal encodings (k = 0), so
// a table has one encoding.
func uvarint(p []byte) (uint64, int) {
	n, k := binary.Uvarint(p)
	if k > 1 && p[k-1] == 0 {
		return 0, 0
	}
	return n, k
}

// packFrameLimit bounds the compressed size of a chunk of size n.
func packFrameLimit(n int64) int64 { return n + n/64 + 1024 }

// PackStats reports what [WritePack] did.
type PackStats struct {
	// Chunks is the number of distinct chunks; Bytes the pack's size.
	Chunks int
	Bytes  int64
}

// WritePack writes the chunk pack of image, whose index is ix, to w and
// returns its table. It reads image once, in order, and fails if a chunk
// does not match ix. Publisher side, beside [BuildIndex].
func WritePack(w io.Writer, ix *Index, image io.Reader) (*PackTable, PackStats, error) {
	var st PackStats
	enc, err := chunkEncoder(ix)
	if err != nil {
		return nil, st, err
	}
	defer enc.Close()
	t := &PackTable{off: []int64{0}}
	buf := make([]byte, ix.opts.MaxSize)
	var cbuf []byte
	seen := make(map[[32]byte]bool)
	for _, c := range ix.chunks {
		b := buf[:c.Size]
		if _, err := io.ReadFull(image, b); err != nil {
			return nil, st, fmt.Errorf("delta: reading image at %d: %w", c.Offset, err)
		}
		if s := sha256.Sum256(b); string(s[:ix.opts.HashSize]) != string(c.Hash[:ix.opts.HashSize]) {
			return nil, st, fmt.Errorf("delta: image bytes %d-%d do not match the index", c.Offset, c.Offset+c.Size-1)
		}
		if seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		cbuf = enc.EncodeAll(b, cbuf[:0])
		if _, err := w.Write(cbuf); err != nil {
			return nil, st, fmt.Errorf("delta: writing pack: %w", err)
		}
		t.off = append(t.off, t.off[len(t.off)-1]+int64(len(cbuf)))
		st.Chunks++
	}
	st.Bytes = t.Size()
	return t, st, nil
}

// PackEntries maps each chunk of ix to its entry in the pack table
// written for ix (the chunk's first appearance among distinct chunks).
func PackEntries(ix *Index) []int {
	e := make([]int, len(ix.chunks))
	first := make(map[[32]byte]int)
	for i, c := range ix.chunks {
		j, ok := first[c.Hash]
		if !ok {
			j = len(first)
			first[c.Hash] = j
		}
		e[i] = j
	}
	return e
}

// DecodePackChunk decompresses frame, the pack bytes of chunk c of ix,
// into dst (capacity at least c.Size) and checks it against c's hash.
// A frame that does not decode or match fails with [ErrCorruptChunk].
func DecodePackChunk(dec *zstd.Decoder, ix *Index, c Chunk, frame, dst []byte) ([]byte, error) {
	if int64(len(frame)) > packFrameLimit(c.Size) {
		return nil, fmt.Errorf("%w: pack frame of %d bytes for a %d-byte chunk", ErrCorruptChunk, len(frame), c.Size)
	}
	out, err := dec.DecodeAll(frame, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: pack chunk %s: %v", ErrCorruptChunk, ix.HashString(c), err)
	}
	s := sha256.Sum256(out)
	if int64(len(out)) != c.Size || string(s[:ix.opts.HashSize]) != string(c.Hash[:ix.opts.HashSize]) {
		return nil, fmt.Errorf("%w: pack chunk %s does not match its hash", ErrCorruptChunk, ix.HashString(c))
	}
	return out, nil
}

// distinctChunks counts the distinct chunks of ix.
func distinctChunks(ix *Index) int {
	seen := make(map[[32]byte]struct{}, len(ix.chunks))
	for _, c := range ix.chunks {
		seen[c.Hash] = struct{}{}
	}
	return len(seen)
}

// packScanLimit bounds how many chunks one look-ahead for a coalesced
// pack request visits, so a long run of present chunks costs linear time.
const packScanLimit = 4096

// fetchPacked fetches chunk i from the pack (or repeats the chunk it
// fetched last, when i is the same chunk). Every range response is read
// to its end, since servers send (and bill) what was asked whether it is
// read or not: a chunk whose frame lies in the open response is read
// from it; a repeat of a chunk fetched earlier (its frame lies before the
// open response's position), while that response still has frames to
// come, is fetched by a request of its own; otherwise a new request
// covers the chunk's frame and those of the next missing chunks (see
// packRequestEnd).
func (a *applier) fetchPacked(ctx context.Context, i int) error {
	t := a.src.Pack.Table
	off, n := t.Span(a.entry[i])
	if a.entry[i] == a.lastEntry {
		// A run of one repeated chunk (zero blocks): no request.
		return a.write(a.p.target.chunks[i], a.last)
	}
	if a.rc != nil && off >= a.rcPos && off+n <= a.rcEnd {
		return a.readPacked(i, a.rc, true, off-a.rcPos, n)
	}
	if a.rc != nil && off < a.rcPos && a.rcPos < a.rcEnd {
		rc, err := a.src.Pack.Range(ctx, off, n)
		if err != nil {
			return fmt.Errorf("delta: fetching pack bytes %d-%d: %w", off, off+n-1, err)
		}
		defer rc.Close()
		return a.readPacked(i, rc, false, 0, n)
	}
	a.closePack()
	end := a.packRequestEnd(i, off+n)
	rc, err := a.src.Pack.Range(ctx, off, end-off)
	if err != nil {
		return fmt.Errorf("delta: fetching pack bytes %d-%d: %w", off, end-1, err)
	}
	a.rc, a.rcPos, a.rcEnd = rc, off, end
	return a.readPacked(i, a.rc, true, 0, n)
}

// packRequestEnd returns where a pack request that starts with the frame
// of missing chunk i, ending at end, should end: it also covers the
// frames of the next missing chunks while the unneeded bytes between
// two of them stay within MaxGap and the request within the plan's
// MaxRequestBytes. Repeats of chunks earlier in the pack are left out.
func (a *applier) packRequestEnd(i int, end int64) int64 {
	cs, t := a.p.target.chunks, a.src.Pack.Table
	off, _ := t.Span(a.entry[i])
	gap := a.src.Pack.MaxGap
	if gap == 0 {
		gap = 1 << 10
	}
	for k, scanned := i+1, 0; k < len(cs) && scanned < packScanLimit; k, scanned = k+1, scanned+1 {
		if a.p.from[k].base >= 0 {
			continue
		}
		o2, n2 := t.Span(a.entry[k])
		if o2 < end {
			continue // a repeat of an earlier chunk
		}
		if o2-end > gap || o2+n2-off > a.p.opts.MaxRequestBytes {
			break
		}
		end = o2 + n2
	}
	return end
}

// readPacked skips skip bytes of r, then reads the n-byte frame of chunk
// i, decodes, checks and writes it. When r is the open response (open),
// its position advances; on a read error it is closed.
func (a *applier) readPacked(i int, r io.Reader, open bool, skip, n int64) error {
	c := a.p.target.chunks[i]
	off, _ := a.src.Pack.Table.Span(a.entry[i])
	fail := func(from, to int64, err error) error {
		if open {
			a.closePack()
		}
		return fmt.Errorf("delta: reading pack bytes %d-%d: %w", from, to, err)
	}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, r, skip); err != nil {
			return fail(off-skip, off-1, err)
		}
	}
	if n > packFrameLimit(c.Size) {
		return fmt.Errorf("%w: pack frame of %d bytes for a %d-byte chunk", ErrCorruptChunk, n, c.Size)
	}
	if int64(cap(a.cbuf)) < n {
		a.cbuf = make([]byte, n)
	}
	frame := a.cbuf[:n]
	if _, err := io.ReadFull(r, frame); err != nil {
		return fail(off, off+n-1, err)
	}
	if open {
		a.rcPos = off + n
	}
	out, err := DecodePackChunk(a.dec, a.p.target, c, frame, a.last[:0])
	if err != nil {
		a.lastEntry = -1
		return err
	}
	a.last, a.lastEntry = out, a.entry[i]
	return a.write(c, out)
}

// closePack closes the open pack response, if any.
func (a *applier) closePack() {
	if a.rc != nil {
		a.rc.Close()
		a.rc = nil
	}
}
