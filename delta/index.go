package delta

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
)

// Chunking names how an image is cut into chunks.
type Chunking string

const (
	// ChunkFixed cuts the image into blocks of one size, aligned on
	// multiples of it. It matches file systems that allocate in blocks
	// (ext4: 4 KiB) best: a changed file changes only its own blocks.
	ChunkFixed Chunking = "fixed"
	// ChunkCDC cuts where a gear rolling hash of the last 64 bytes has
	// its top bits clear (content-defined chunking, FastCDC-style
	// normalised). Chunk borders follow content, so inserted or removed
	// bytes shift nothing after them: squashfs, tarballs, cpio.
	ChunkCDC Chunking = "cdc"
)

// Limits enforced by [ParseIndex] and [IndexOptions]. They bound the
// memory a device spends on an index: about 48 bytes per chunk.
const (
	// MaxChunks is the largest number of chunks in one index.
	MaxChunks = 1 << 22
	// MaxChunkSize is the largest chunk (and fixed block) size.
	MaxChunkSize = 4 << 20
	// MinChunkSize is the smallest block size and CDC minimum.
	MinChunkSize = 64
	// MaxImageSize is the largest image an index may describe.
	MaxImageSize = 1 << 42
)

// IndexFormat is the value of the TUF custom "format" field for chunk
// indexes produced by [Index.MarshalBinary].
const IndexFormat = "switchback-chunk-index-v1"

// Errors callers branch on.
var (
	// ErrCorruptIndex is wrapped by every error about a malformed index.
	ErrCorruptIndex = errors.New("delta: corrupt chunk index")
	// ErrIndexMismatch is returned when a base index was made with other
	// chunking parameters than the target index: recompute the base index
	// with the target's [Index.Options].
	ErrIndexMismatch = errors.New("delta: base index chunking differs from target index")
)

// IndexOptions choose how [BuildIndex] and [IndexWriter] cut an image.
// The zero value is fixed 4 KiB blocks with 16-byte chunk hashes.
type IndexOptions struct {
	// Chunking is ChunkFixed (default) or ChunkCDC.
	Chunking Chunking
	// BlockSize is the ChunkFixed block size; default 4096.
	BlockSize int
	// MinSize, AvgSize, MaxSize bound ChunkCDC chunks; defaults 1 KiB,
	// 4 KiB, 16 KiB (AvgSize a power of two; 4 KiB fetched the fewest
	// bytes on the squashfs pair of examples/deltabench). Setting only
	// AvgSize derives MinSize = AvgSize/4 and MaxSize = AvgSize*4.
	MinSize, AvgSize, MaxSize int
	// HashSize is how many leading bytes of each chunk's SHA-256 the
	// index keeps, 16 to 32; default 16. Chunk hashes only find chunks
	// and check them against the signed index (a forgery needs a second
	// preimage of 128 bits); the whole image is still verified against
	// its TUF target's full hash. 16 bytes halve the index, which is part
	// of every adaptive download.
	HashSize int
}

func (o IndexOptions) withDefaults() (IndexOptions, error) {
	if o.Chunking == "" {
		o.Chunking = ChunkFixed
	}
	if o.HashSize == 0 {
		o.HashSize = 16
	}
	if o.HashSize < 16 || o.HashSize > sha256.Size {
		return o, fmt.Errorf("delta: hash size %d not in [16, 32]", o.HashSize)
	}
	switch o.Chunking {
	case ChunkFixed:
		if o.BlockSize == 0 {
			o.BlockSize = 4096
		}
		if o.BlockSize < MinChunkSize || o.BlockSize > MaxChunkSize {
			return o, fmt.Errorf("delta: block size %d not in [%d, %d]", o.BlockSize, MinChunkSize, MaxChunkSize)
		}
		o.MinSize, o.AvgSize, o.MaxSize = o.BlockSize, o.BlockSize, o.BlockSize
	case ChunkCDC:
		if o.AvgSize == 0 {
			o.AvgSize = 4 << 10
		}
		if o.MinSize == 0 {
			o.MinSize = o.AvgSize / 4
		}
		if o.MaxSize == 0 {
			o.MaxSize = o.AvgSize * 4
		}
		if o.AvgSize&(o.AvgSize-1) != 0 || o.MinSize < MinChunkSize || o.MinSize > o.AvgSize ||
			o.AvgSize > o.MaxSize || o.MaxSize > MaxChunkSize {
			return o, fmt.Errorf("delta: CDC sizes min %d avg %d max %d: want %d <= min <= avg <= max <= %d, avg a power of two",
				o.MinSize, o.AvgSize, o.MaxSize, MinChunkSize, MaxChunkSize)
		}
		o.BlockSize = 0
	default:
		return o, fmt.Errorf("delta: unknown chunking %q", o.Chunking)
	}
	return o, nil
}

// Chunk is one chunk of an image.
type Chunk struct {
	// Offset and Size place the chunk in the image.
	Offset int64
	Size   int64
	// Hash is the chunk's SHA-256 truncated to the index's HashSize;
	// the bytes after it are zero.
	Hash [sha256.Size]byte
}

// Index lists the chunks of one image. It is immutable once built and
// safe for concurrent use.
type Index struct {
	opts   IndexOptions
	length int64
	chunks []Chunk
}

// Options returns the chunking parameters the index was made with, with
// defaults filled in. Pass them to [NewIndexWriter] to index a base so
// that it matches.
func (ix *Index) Options() IndexOptions { return ix.opts }

// Length is the length of the image in bytes.
func (ix *Index) Length() int64 { return ix.length }

// Chunks returns the chunks in image order. The slice is shared: do not
// modify it.
func (ix *Index) Chunks() []Chunk { return ix.chunks }

// HashString formats a chunk hash as the index keeps it, in hex.
func (ix *Index) HashString(c Chunk) string { return hex.EncodeToString(c.Hash[:ix.opts.HashSize]) }

// sameChunking reports whether two indexes cut images the same way.
func (ix *Index) sameChunking(o *Index) bool { return ix.opts == o.opts }

// BuildIndex reads an uncompressed image to its end and returns its chunk
// index. Publishers run it on each release image; devices run it only
// when the index of a slot is missing or stale (see [IndexWriter]).
func BuildIndex(r io.Reader, opts IndexOptions) (*Index, error) {
	w, err := NewIndexWriter(opts)
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyBuffer(w, r, make([]byte, 256<<10)); err != nil {
		return nil, fmt.Errorf("delta: indexing image: %w", err)
	}
	return w.Index()
}

// IndexWriter computes the chunk index of the bytes written to it, in
// order. The updater tees an image into one as it writes a slot, and
// persists the result beside the slot, so that the slot is a ready delta
// base at the next update without a hashing pass. Its memory is the index
// itself. It is not safe for concurrent use.
type IndexWriter struct {
	opts         IndexOptions
	h            hash.Hash
	size         int64 // bytes in the current chunk
	off          int64 // offset of the current chunk
	roll         uint64
	maskS, maskL uint64
	chunks       []Chunk
	cut          bool
	done         bool
	err          error
}

// NewIndexWriter returns an IndexWriter that cuts as opts says.
func NewIndexWriter(opts IndexOptions) (*IndexWriter, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &IndexWriter{opts: o, h: sha256.New()}
	if o.Chunking == ChunkCDC {
		b := bits.TrailingZeros(uint(o.AvgSize))
		// Normalised chunking: harder to cut before the average, easier
		// after, so sizes cluster near it. Top bits: in a gear hash they
		// depend on the last 64 bytes, the low bits on the last few only.
		w.maskS = ^uint64(0) << (64 - min(b+2, 63))
		w.maskL = ^uint64(0) << (64 - max(b-2, 1))
	}
	return w, nil
}

// Write indexes p. It fails only after [IndexWriter.Index], or past
// [MaxChunks] or [MaxImageSize].
func (w *IndexWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("delta: write to a finished IndexWriter")
	}
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	if w.off+w.size+int64(n) > MaxImageSize {
		w.err = fmt.Errorf("delta: image larger than %d bytes", int64(MaxImageSize))
		return 0, w.err
	}
	for len(p) > 0 {
		cut := w.next(p)
		w.h.Write(p[:cut])
		w.size += int64(cut)
		p = p[cut:]
		if w.boundary() {
			if err := w.emit(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// next returns how many bytes of p belong to the current chunk, updating
// the rolling hash; boundary then says whether the chunk ends there.
func (w *IndexWriter) next(p []byte) int {
	o := &w.opts
	if o.Chunking == ChunkFixed {
		return min(len(p), int(int64(o.BlockSize)-w.size))
	}
	i := 0
	// The gear hash forgets bytes older than 64: skip what cannot matter.
	if skip := int64(o.MinSize-64) - w.size; skip > 0 {
		if int64(len(p)) <= skip {
			return len(p)
		}
		i = int(skip)
		w.roll = 0
	}
	roll, size := w.roll, w.size
	for ; i < len(p); i++ {
		roll = roll<<1 + gear[p[i]]
		s := size + int64(i) + 1
		if s < int64(o.MinSize) {
			continue
		}
		mask := w.maskL
		if s < int64(o.AvgSize) {
			mask = w.maskS
		}
		if roll&mask == 0 || s >= int64(o.MaxSize) {
			w.roll = 0
			w.cut = true
			return i + 1
		}
	}
	w.roll = roll
	return len(p)
}

func (w *IndexWriter) boundary() bool {
	if w.opts.Chunking == ChunkFixed {
		return w.size == int64(w.opts.BlockSize)
	}
	c := w.cut
	w.cut = false
	return c
}

func (w *IndexWriter) emit() error {
	if len(w.chunks) >= MaxChunks {
		w.err = fmt.Errorf("delta: more than %d chunks", MaxChunks)
		return w.err
	}
	c := Chunk{Offset: w.off, Size: w.size}
	w.h.Sum(c.Hash[:0])
	clear(c.Hash[w.opts.HashSize:])
	w.chunks = append(w.chunks, c)
	w.off += w.size
	w.size = 0
	w.roll = 0
	w.h.Reset()
	return nil
}

// Index ends the image and returns its index. Later writes fail.
func (w *IndexWriter) Index() (*Index, error) {
	if w.err != nil {
		return nil, w.err
	}
	if !w.done {
		w.done = true
		if w.size > 0 {
			if err := w.emit(); err != nil {
				return nil, err
			}
		}
	}
	return &Index{opts: w.opts, length: w.off, chunks: w.chunks}, nil
}

// The gear table: 256 pseudo-random words, the first 8 bytes (big endian)
// of SHA-256("switchback gear " || byte i). Fixed by the format: changing
// it changes every CDC index.
var gear = func() (t [256]uint64) {
	for i := range t {
		s := sha256.Sum256(append([]byte("switchback gear "), byte(i)))
		t[i] = binary.BigEndian.Uint64(s[:8])
	}
	return t
}()

// Index binary format, version 1 (all integers big endian):
//
//	offset size field
//	0      4    magic "SBIX"
//	4      1    version, 1
//	5      1    chunking: 1 fixed, 2 cdc
//	6      1    hash size in bytes, 16..32
//	7      1    flags, 0
//	8      4    min chunk size (fixed: block size)
//	12     4    average chunk size (fixed: block size)
//	16     4    max chunk size (fixed: block size)
//	20     8    image length
//	28     8    chunk count
//	36     ...  entries, in image order. cdc: uvarint chunk size, then
//	            the hash; fixed: the hash only (every block is block
//	            size long but the last, which holds the rest).
//
// Nothing follows the last entry.
const (
	indexMagic      = "SBIX"
	indexVersion    = 1
	indexHeaderSize = 36
)

// MarshalBinary encodes the index in the version 1 format.
func (ix *Index) MarshalBinary() ([]byte, error) {
	o := ix.opts
	per := o.HashSize
	if o.Chunking == ChunkCDC {
		per += binary.MaxVarintLen32
	}
	b := make([]byte, indexHeaderSize, indexHeaderSize+len(ix.chunks)*per)
	copy(b, indexMagic)
	b[4] = indexVersion
	b[5] = 1
	if o.Chunking == ChunkCDC {
		b[5] = 2
	}
	b[6] = byte(o.HashSize)
	binary.BigEndian.PutUint32(b[8:], uint32(o.MinSize))
	binary.BigEndian.PutUint32(b[12:], uint32(o.AvgSize))
	binary.BigEndian.PutUint32(b[16:], uint32(o.MaxSize))
	binary.BigEndian.PutUint64(b[20:], uint64(ix.length))
	binary.BigEndian.PutUint64(b[28:], uint64(len(ix.chunks)))
	for _, c := range ix.chunks {
		if o.Chunking == ChunkCDC {
			b = binary.AppendUvarint(b, uint64(c.Size))
		}
		b = append(b, c.Hash[:o.HashSize]...)
	}
	return b, nil
}

// ParseIndex decodes and checks an index in the version 1 format. It
// allocates at most in proportion to len(data) and refuses indexes beyond
// [MaxChunks], [MaxChunkSize] and [MaxImageSize].
func ParseIndex(data []byte) (*Index, error) {
	h, err := parseIndexHeader(data)
	if err != nil {
		return nil, err
	}
	chunks, err := parseIndexEntries(h, data[indexHeaderSize:])
	if err != nil {
		return nil, err
	}
	return &Index{opts: h.opts, length: int64(h.length), chunks: chunks}, nil
}

// indexHeader is the checked header of an encoded index.
type indexHeader struct {
	opts          IndexOptions // with defaults filled in, as the writer had them
	length, count uint64
}

// corruptIndex returns an error wrapping ErrCorruptIndex.
func corruptIndex(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorruptIndex}, a...)...)
}

// parseIndexHeader decodes and checks the header of an index and the
// bounds it sets (chunk count against the bytes that follow it).
func parseIndexHeader(data []byte) (indexHeader, error) {
	var h indexHeader
	if len(data) < indexHeaderSize {
		return h, corruptIndex("%d bytes, shorter than the header", len(data))
	}
	if string(data[:4]) != indexMagic {
		return h, corruptIndex("bad magic %q", data[:4])
	}
	if data[4] != indexVersion {
		return h, corruptIndex("unsupported version %d", data[4])
	}
	if data[7] != 0 {
		return h, corruptIndex("unknown flags %#x", data[7])
	}
	opts, err := parseIndexOptions(data)
	if err != nil {
		return h, err
	}
	h = indexHeader{opts: opts, length: binary.BigEndian.Uint64(data[20:]), count: binary.BigEndian.Uint64(data[28:])}
	if h.length > MaxImageSize {
		return h, corruptIndex("image length %d above %d", h.length, uint64(MaxImageSize))
	}
	if h.count > MaxChunks {
		return h, corruptIndex("%d chunks, more than %d", h.count, MaxChunks)
	}
	// Every entry takes at least the hash (and a byte of size with CDC):
	// check before allocating, so the allocation is bounded by the input.
	minEntry := uint64(opts.HashSize)
	if opts.Chunking == ChunkCDC {
		minEntry++
	}
	if rest := uint64(len(data) - indexHeaderSize); h.count*minEntry > rest {
		return h, corruptIndex("%d chunks in %d bytes", h.count, rest)
	}
	if opts.Chunking == ChunkFixed {
		bs := uint64(opts.BlockSize)
		if want := (h.length + bs - 1) / bs; h.count != want {
			return h, corruptIndex("%d blocks for %d bytes of %d-byte blocks, want %d", h.count, h.length, bs, want)
		}
	} else if (h.length == 0) != (h.count == 0) || h.count*uint64(opts.MaxSize) < h.length {
		return h, corruptIndex("%d chunks cannot hold %d bytes", h.count, h.length)
	}
	return h, nil
}

// parseIndexOptions decodes the chunking parameters of an index header
// (bytes 5-19) and checks them as IndexOptions are checked: an index
// holds exactly the options its writer had, defaults filled in.
func parseIndexOptions(data []byte) (IndexOptions, error) {
	var o IndexOptions
	switch data[5] {
	case 1:
		o.Chunking = ChunkFixed
	case 2:
		o.Chunking = ChunkCDC
	default:
		return o, corruptIndex("unknown chunking %d", data[5])
	}
	o.HashSize = int(data[6])
	mn := binary.BigEndian.Uint32(data[8:])
	avg := binary.BigEndian.Uint32(data[12:])
	mx := binary.BigEndian.Uint32(data[16:])
	if mx > MaxChunkSize {
		return o, corruptIndex("max chunk size %d above %d", mx, MaxChunkSize)
	}
	o.MinSize, o.AvgSize, o.MaxSize = int(mn), int(avg), int(mx)
	if o.Chunking == ChunkFixed {
		if mn != avg || avg != mx {
			return o, corruptIndex("fixed chunking with sizes %d/%d/%d", mn, avg, mx)
		}
		o.BlockSize = int(mn)
		o.MinSize, o.AvgSize, o.MaxSize = 0, 0, 0
	}
	opts, err := o.withDefaults()
	if err != nil || (o.Chunking == ChunkCDC && (opts.MinSize != int(mn) || opts.AvgSize != int(avg) || opts.MaxSize != int(mx))) ||
		o.HashSize == 0 {
		return o, corruptIndex("bad parameters: %v", err)
	}
	return opts, nil
}

// parseIndexEntries decodes the h.count entries in rest, which must end
// with the last one, into chunks covering exactly h.length bytes.
func parseIndexEntries(h indexHeader, rest []byte) ([]Chunk, error) {
	opts, hs := h.opts, h.opts.HashSize
	chunks := make([]Chunk, h.count)
	var off uint64
	for i := range chunks {
		size := min(uint64(opts.BlockSize), h.length-off)
		if opts.Chunking == ChunkCDC {
			v, n := binary.Uvarint(rest)
			if n <= 0 {
				return nil, corruptIndex("chunk %d: bad size", i)
			}
			rest = rest[n:]
			last := i == len(chunks)-1
			if v == 0 || v > uint64(opts.MaxSize) || (!last && v < uint64(opts.MinSize)) || v > h.length-off {
				return nil, corruptIndex("chunk %d: size %d out of bounds", i, v)
			}
			size = v
		}
		if len(rest) < hs {
			return nil, corruptIndex("chunk %d: truncated hash", i)
		}
		c := &chunks[i]
		c.Offset, c.Size = int64(off), int64(size)
		copy(c.Hash[:], rest[:hs])
		rest = rest[hs:]
		off += size
	}
	if off != h.length {
		return nil, corruptIndex("chunks cover %d bytes, header says %d", off, h.length)
	}
	if len(rest) != 0 {
		return nil, corruptIndex("%d bytes after the last chunk", len(rest))
	}
	return chunks, nil
}
