package delta

import (
	"errors"
	"fmt"
)

// Base is an image the device already holds, described by its chunk
// index: the running slot, or the inactive slot that still holds the
// release before. Its bytes are read at apply time from the io.ReaderAt
// given to [Apply] at the same position.
type Base struct {
	// Index is the base's chunk index, made with the target index's
	// [Index.Options] (by an [IndexWriter] when the slot was written, or
	// by [BuildIndex] over the slot when that was lost).
	Index *Index
	// InPlace says the new image is being written over this base, in
	// order (the inactive slot is both base and destination). Its chunks
	// are then used only where they still hold their old bytes: at or
	// after the position being written.
	InPlace bool
}

// PlanOptions bound the range requests of a plan. The zero value is
// sensible.
type PlanOptions struct {
	// MaxRequestBytes bounds the bytes one range request asks for;
	// default 8 MiB. A single chunk larger than it gets its own request.
	MaxRequestBytes int64
	// MaxGap is the largest run of present bytes fetched anyway to merge
	// two requests into one; default 16 KiB, negative for never.
	MaxGap int64
}

func (o PlanOptions) withDefaults() PlanOptions {
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 8 << 20
	}
	if o.MaxGap < 0 {
		o.MaxGap = 0
	} else if o.MaxGap == 0 {
		o.MaxGap = 16 << 10
	}
	return o
}

// Plan says, chunk by chunk, where each chunk of a new image comes from:
// a base the device holds, or the server. It is made by [NewPlan] and
// carried out by [Apply]. A Plan is immutable and safe for concurrent use.
type Plan struct {
	target *Index
	opts   PlanOptions
	start  int64 // output offset Apply starts at
	first  int   // chunk holding start
	from   []loc // per chunk of target
	reqs   []request
}

// loc is where a chunk is taken from: base index and offset, or base -1
// for the server.
type loc struct {
	base int32
	off  int64
}

// request is one range request: chunks [first, end) of the target.
type request struct{ first, end int }

// PlanStats sums up a plan from its start offset on.
type PlanStats struct {
	// Chunks is the number of chunks written; Copied of them come from a
	// base, Fetched from the server.
	Chunks, Copied, Fetched int
	// CopyBytes and FetchBytes are the bytes of those chunks.
	CopyBytes, FetchBytes int64
	// Requests and RangeBytes are what fetching with a [Source] Range
	// costs: requests made and bytes asked for (missing chunks and the
	// gaps merged between them).
	// Fetching from a [Source] Store costs one request per fetched chunk.
	Requests   int
	RangeBytes int64
}

// NewPlan finds every chunk of target already present in a base and
// plans to fetch the others. Bases are tried in order for each chunk;
// list the running slot first. Every base index must have been made with
// target's options, or NewPlan fails with [ErrIndexMismatch]. Memory is
// about 64 bytes per chunk of the target and of the bases.
func NewPlan(target *Index, bases []Base, opts PlanOptions) (*Plan, error) {
	if target == nil {
		return nil, errors.New("delta: nil target index")
	}
	for i, b := range bases {
		if b.Index == nil {
			return nil, fmt.Errorf("delta: base %d has no index", i)
		}
		if !b.Index.sameChunking(target) {
			return nil, fmt.Errorf("%w: base %d %+v, target %+v", ErrIndexMismatch, i, b.Index.opts, target.opts)
		}
	}
	p := &Plan{target: target, opts: opts.withDefaults(), from: make([]loc, len(target.chunks))}
	// Safe bases: the first place a hash is found. In-place bases: the
	// last place, the one that stays unwritten longest.
	type key = [32]byte
	safe := make(map[key]loc)
	inplace := make(map[key]loc)
	for bi, b := range bases {
		for _, c := range b.Index.chunks {
			l := loc{base: int32(bi), off: c.Offset}
			if b.InPlace {
				if prev, ok := inplace[c.Hash]; !ok || prev.base == l.base {
					inplace[c.Hash] = l
				}
				continue
			}
			if _, ok := safe[c.Hash]; !ok {
				safe[c.Hash] = l
			}
		}
	}
	for i, c := range target.chunks {
		l, ok := safe[c.Hash]
		if !ok {
			l, ok = inplace[c.Hash]
			ok = ok && l.off >= c.Offset
		}
		if !ok {
			l = loc{base: -1}
		}
		p.from[i] = l
	}
	p.reqs = p.requests()
	return p, nil
}

// Target returns the index of the image the plan produces.
func (p *Plan) Target() *Index { return p.target }

// Start returns the output offset [Apply] starts writing at.
func (p *Plan) Start() int64 { return p.start }

// From returns the same plan resumed at output offset off: [Apply] then
// writes the image from off on (chunks before it are skipped; the chunk
// holding off is read whole to verify it, and written from off).
func (p *Plan) From(off int64) (*Plan, error) {
	if off < 0 || off > p.target.length {
		return nil, fmt.Errorf("delta: resume offset %d outside image of %d bytes", off, p.target.length)
	}
	q := *p
	q.start = off
	q.first = p.chunkAt(off)
	q.reqs = q.requests()
	return &q, nil
}

// chunkAt returns the index of the chunk holding off (len at the end).
func (p *Plan) chunkAt(off int64) int {
	cs := p.target.chunks
	lo, hi := 0, len(cs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cs[m].Offset+cs[m].Size <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// requests coalesces the missing chunks from p.first on into range
// requests of at most MaxRequestBytes, merging across gaps of present
// chunks up to MaxGap bytes.
func (p *Plan) requests() []request {
	var reqs []request
	cs := p.target.chunks
	for i := p.first; i < len(cs); {
		if p.from[i].base >= 0 {
			i++
			continue
		}
		r := request{first: i, end: i + 1}
		size := cs[i].Size
		for j := i + 1; j < len(cs); {
			if p.from[j].base < 0 {
				if size+cs[j].Size > p.opts.MaxRequestBytes {
					break
				}
				size += cs[j].Size
				j++
				r.end = j
				continue
			}
			// A gap of present chunks: merge over it if small enough and
			// a missing chunk follows within the bounds.
			k, gap := j, int64(0)
			for k < len(cs) && p.from[k].base >= 0 && gap <= p.opts.MaxGap {
				gap += cs[k].Size
				k++
			}
			if k == len(cs) || p.from[k].base >= 0 || gap > p.opts.MaxGap ||
				size+gap+cs[k].Size > p.opts.MaxRequestBytes {
				break
			}
			size += gap + cs[k].Size
			j = k + 1
			r.end = j
		}
		reqs = append(reqs, r)
		i = r.end
	}
	return reqs
}

// Stats sums up the plan from its start offset on.
func (p *Plan) Stats() PlanStats {
	var s PlanStats
	cs := p.target.chunks
	for i := p.first; i < len(cs); i++ {
		s.Chunks++
		if p.from[i].base >= 0 {
			s.Copied++
			s.CopyBytes += cs[i].Size
			continue
		}
		s.Fetched++
		s.FetchBytes += cs[i].Size
	}
	s.Requests = len(p.reqs)
	for _, r := range p.reqs {
		last := cs[r.end-1]
		s.RangeBytes += last.Offset + last.Size - cs[r.first].Offset
	}
	return s
}

// PackBytes returns the bytes of the pack frames [Apply] fetches to carry
// out p from a chunk pack whose table is t: the frame of each distinct
// missing chunk from the start offset on, once (a repeat is copied from
// what was written). The unneeded bytes a request merges over, at most
// [PackSource].MaxGap each, come on top. It fails with
// [ErrCorruptPackTable] when t was not written for p's target.
func (p *Plan) PackBytes(t *PackTable) (int64, error) {
	if want := distinctChunks(p.target); t.Len() != want {
		return 0, fmt.Errorf("%w: %d entries for %d distinct chunks", ErrCorruptPackTable, t.Len(), want)
	}
	entries := PackEntries(p.target)
	seen := make(map[int]bool)
	var n int64
	for i := p.first; i < len(p.from); i++ {
		if e := entries[i]; p.from[i].base < 0 && !seen[e] {
			seen[e] = true
			_, size := t.Span(e)
			n += size
		}
	}
	return n, nil
}
