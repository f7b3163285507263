package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Errors callers branch on to fall back to the next way of updating.
var (
	// ErrCorruptChunk is returned when a fetched chunk does not match its
	// hash in the index (or does not decompress to it).
	ErrCorruptChunk = errors.New("delta: corrupt chunk")
	// ErrNoRange is returned when the server answers a range request with
	// something other than the range: fetch the full image instead.
	// A [RangeFunc] must return an error wrapping it in that case.
	ErrNoRange = errors.New("delta: server does not serve byte ranges")
)

// RangeFunc returns bytes [off, off+n) of the uncompressed new image, as
// published beside its index. It must return an error wrapping
// [ErrNoRange] when the server ignores the range. On a device, the
// updater makes one backed by its download client; [HTTPRange] makes a
// plain one for tools and tests.
type RangeFunc func(ctx context.Context, off, n int64) (io.ReadCloser, error)

// StoreFunc returns the file at the relative path name of a chunk store
// (see [Index.ChunkPath] and [WriteChunkStore]). On a device, the updater
// makes one backed by its download client; [HTTPStore] makes a plain one
// for tools and tests.
type StoreFunc func(ctx context.Context, name string) (io.ReadCloser, error)

// Source is where [Apply] fetches missing chunks: byte ranges of the
// uncompressed image (few requests, raw bytes), a chunk store of
// individually compressed chunks (one request per chunk, compressed
// bytes) or byte ranges of a chunk pack (few requests, compressed bytes;
// see [WritePack]). Set exactly one.
type Source struct {
	Range RangeFunc
	Store StoreFunc
	Pack  *PackSource
	// Written, optional, reads back the image already written to the
	// output (by this Apply and by the earlier runs it resumes). With a
	// Store or a Pack, a missing chunk that appeared earlier in the image
	// is then copied from there instead of fetched again, so a pack
	// request already open is never left for it. What it reads is checked
	// against the chunk's hash like anything else; on a mismatch the chunk
	// is fetched. Unused with Range, whose requests cover repeats anyway.
	Written io.ReaderAt
}

// PackSource is a chunk pack published for the target index: its table
// (from [ParsePackTable], fetched and verified by the caller) and a
// RangeFunc returning byte ranges of the pack file.
type PackSource struct {
	Table *PackTable
	Range RangeFunc
	// MaxGap is the largest run of unneeded pack bytes fetched anyway
	// to merge two requests; default 1 KiB (measured on an ext4 pair,
	// 16 KiB fetched 29% more bytes for a third of the requests),
	// negative for never. The plan's MaxRequestBytes bounds a request.
	MaxGap int64
}

// Apply writes the image of p's target to w, in order, from p's start
// offset on (see [Plan.From]). It reads present chunks from bases (one
// io.ReaderAt per [Base] given to [NewPlan], same order) and fetches the
// others from src. Every chunk is checked against its hash before it is
// written: a fetched chunk that does not match fails with an error
// wrapping [ErrCorruptChunk]; a base chunk that does not match (the
// base changed since it was indexed) is fetched instead.
//
// Memory is bounded by the index's maximum chunk size (at most
// [MaxChunkSize]) and, for a store, one zstd decoder of that window.
// Apply does not verify the whole image: the caller hashes what it
// writes and checks it against the TUF target before using it.
func Apply(ctx context.Context, p *Plan, bases []io.ReaderAt, src Source, w io.Writer) error {
	n := 0
	for _, set := range []bool{src.Range != nil, src.Store != nil, src.Pack != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("delta: source needs exactly one of Range, Store and Pack")
	}
	if src.Pack != nil {
		if src.Pack.Range == nil || src.Pack.Table == nil {
			return errors.New("delta: pack source needs a table and a range function")
		}
		if want := distinctChunks(p.target); src.Pack.Table.Len() != want {
			return fmt.Errorf("%w: %d entries for %d distinct chunks", ErrCorruptPackTable, src.Pack.Table.Len(), want)
		}
	}
	for i := range p.from {
		if b := p.from[i].base; b >= 0 && int(b) >= len(bases) {
			return fmt.Errorf("delta: plan uses base %d, %d given", b, len(bases))
		}
	}
	a := &applier{p: p, bases: bases, src: src, w: w, buf: make([]byte, p.target.opts.MaxSize)}
	if src.Written != nil && src.Range == nil {
		a.firstAt = firstOccurrences(p.target)
	}
	if src.Pack != nil {
		a.entry = PackEntries(p.target)
		a.last, a.lastEntry = make([]byte, 0, p.target.opts.MaxSize), -1
		defer a.closePack()
	}
	if src.Store != nil || src.Pack != nil {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxMemory(uint64(max(p.target.opts.MaxSize, 128<<10))), zstd.WithDecoderMaxWindow(uint64(max(p.target.opts.MaxSize, 128<<10))))
		if err != nil {
			return err
		}
		defer d.Close()
		a.dec = d
	}
	return a.run(ctx)
}

type applier struct {
	p     *Plan
	bases []io.ReaderAt
	src   Source
	w     io.Writer
	buf   []byte
	cbuf  []byte // compressed chunk, store and pack
	dec   *zstd.Decoder

	// Pack only: the pack entry of each target chunk, and the open
	// range response with its read position and end in the pack.
	entry        []int
	rc           io.ReadCloser
	rcPos, rcEnd int64
	last         []byte // the chunk fetched last, entry lastEntry (-1: none)
	lastEntry    int

	// With src.Written: per target chunk, the first chunk with its hash.
	firstAt []int32
}

// firstOccurrences returns, for each chunk of ix, the index of the first
// chunk with the same hash.
func firstOccurrences(ix *Index) []int32 {
	f := make([]int32, len(ix.chunks))
	first := make(map[[32]byte]int32, len(ix.chunks))
	for i, c := range ix.chunks {
		j, ok := first[c.Hash]
		if !ok {
			j = int32(i)
			first[c.Hash] = j
		}
		f[i] = j
	}
	return f
}

func (a *applier) run(ctx context.Context) error {
	cs := a.p.target.chunks
	reqs := a.p.reqs
	for i := a.p.first; i < len(cs); {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := cs[i]
		if l := a.p.from[i]; l.base >= 0 {
			b := a.buf[:c.Size]
			n, _ := a.bases[l.base].ReadAt(b, l.off)
			if n == len(b) && a.check(c, b) {
				if err := a.write(c, b); err != nil {
					return err
				}
				i++
				continue
			}
			// The base no longer holds the chunk: fetch it alone.
			if err := a.fetchOne(ctx, i); err != nil {
				return err
			}
			i++
			continue
		}
		if a.src.Store != nil || a.src.Pack != nil {
			if err := a.fetchMissing(ctx, i); err != nil {
				return err
			}
			i++
			continue
		}
		for len(reqs) > 0 && reqs[0].end <= i {
			reqs = reqs[1:]
		}
		if len(reqs) == 0 || reqs[0].first > i {
			// Not planned (cannot happen with plans made by NewPlan).
			if err := a.fetchOne(ctx, i); err != nil {
				return err
			}
			i++
			continue
		}
		if err := a.fetchRange(ctx, reqs[0].first, reqs[0].end); err != nil {
			return err
		}
		i = reqs[0].end
	}
	return nil
}

func (a *applier) check(c Chunk, b []byte) bool {
	s := sha256.Sum256(b)
	hs := a.p.target.opts.HashSize
	return bytes.Equal(s[:hs], c.Hash[:hs])
}

// write writes a verified chunk, skipping what lies before the start.
func (a *applier) write(c Chunk, b []byte) error {
	if skip := a.p.start - c.Offset; skip > 0 {
		b = b[skip:]
	}
	if _, err := a.w.Write(b); err != nil {
		return fmt.Errorf("delta: writing image at %d: %w", max(c.Offset, a.p.start), err)
	}
	return nil
}

// fetchRange fetches chunks [first, end) in one range request.
func (a *applier) fetchRange(ctx context.Context, first, end int) error {
	cs := a.p.target.chunks
	off := cs[first].Offset
	n := cs[end-1].Offset + cs[end-1].Size - off
	rc, err := a.src.Range(ctx, off, n)
	if err != nil {
		return fmt.Errorf("delta: fetching bytes %d-%d: %w", off, off+n-1, err)
	}
	defer rc.Close()
	for i := first; i < end; i++ {
		c := cs[i]
		b := a.buf[:c.Size]
		if _, err := io.ReadFull(rc, b); err != nil {
			return fmt.Errorf("delta: reading bytes %d-%d: %w", c.Offset, c.Offset+c.Size-1, err)
		}
		if !a.check(c, b) {
			return fmt.Errorf("%w: bytes %d-%d do not match hash %s", ErrCorruptChunk, c.Offset, c.Offset+c.Size-1, a.p.target.HashString(c))
		}
		if err := a.write(c, b); err != nil {
			return err
		}
	}
	return nil
}

// fetchMissing writes missing chunk i: copied from the output written so
// far when it appeared earlier in the image (see [Source].Written), else
// fetched.
func (a *applier) fetchMissing(ctx context.Context, i int) error {
	if a.firstAt != nil && int(a.firstAt[i]) < i && (a.src.Pack == nil || a.entry[i] != a.lastEntry) {
		cs := a.p.target.chunks
		c := cs[i]
		b := a.buf[:c.Size]
		if n, _ := a.src.Written.ReadAt(b, cs[a.firstAt[i]].Offset); n == len(b) && a.check(c, b) {
			return a.write(c, b)
		}
	}
	return a.fetchOne(ctx, i)
}

// fetchOne fetches chunk i alone, from whichever source there is.
func (a *applier) fetchOne(ctx context.Context, i int) error {
	c := a.p.target.chunks[i]
	if a.src.Range != nil {
		return a.fetchRange(ctx, i, i+1)
	}
	if a.src.Pack != nil {
		return a.fetchPacked(ctx, i)
	}
	name := a.p.target.ChunkPath(c)
	rc, err := a.src.Store(ctx, name)
	if err != nil {
		return fmt.Errorf("delta: fetching chunk %s: %w", name, err)
	}
	defer rc.Close()
	// A compressed chunk is at most a little larger than the chunk.
	limit := c.Size + c.Size/64 + 1024
	if int64(cap(a.cbuf)) < limit+1 {
		a.cbuf = make([]byte, 0, limit+1)
	}
	cb := a.cbuf[:limit+1]
	n, err := io.ReadFull(rc, cb)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("delta: reading chunk %s: %w", name, err)
	}
	if int64(n) > limit {
		return fmt.Errorf("%w: %s larger than %d bytes", ErrCorruptChunk, name, limit)
	}
	out, err := a.dec.DecodeAll(cb[:n], a.buf[:0])
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorruptChunk, name, err)
	}
	if int64(len(out)) != c.Size || !a.check(c, out) {
		return fmt.Errorf("%w: %s does not match its hash", ErrCorruptChunk, name)
	}
	return a.write(c, out)
}
