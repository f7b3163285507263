package delta

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"

	"github.com/klauspost/compress/zstd"
)

// PatchFormat is the value of the TUF custom "format" field for patches
// made by [Diff].
const PatchFormat = "switchback-patch-v1"

// Errors callers branch on.
var (
	// ErrCorruptPatch is wrapped by every error about a malformed patch,
	// and when the patched output does not hash to what the patch says
	// (a wrong base or a corrupt patch).
	ErrCorruptPatch = errors.New("delta: corrupt patch")
	// ErrBaseMismatch is returned when the base is shorter than the patch
	// says, or cannot be read where the patch copies from.
	ErrBaseMismatch = errors.New("delta: base does not match the patch")
)

// Patch format, version 1. A header, then one zstd stream (window at most
// [PatchMaxWindow]) holding records up to the end of the new image:
//
//	header, 56 bytes, integers big endian:
//	0   4   magic "SBPT"
//	4   1   version, 1
//	5   3   flags, 0
//	8   8   base length
//	16  8   new image length
//	24  32  SHA-256 of the new image
//
//	record (inside the zstd stream):
//	uvarint  literal length L
//	L bytes  literal: copied to the output
//	uvarint  copy length C
//	varint   copy offset delta D (zigzag): the copy reads base bytes
//	         [p+D, p+D+C), where p is the end of the previous copy
//	         (0 at first); p becomes p+D+C
//
// Every record writes at least one byte; the stream ends exactly after
// the record that completes the image. This is the bsdiff/VCDIFF idea
// (copy from anywhere in the base, add literals) without bsdiff's
// approximate matches, with the zstd entropy coder doing the rest: delta
// offsets of consecutive copies are small and literals compress.
const (
	patchMagic      = "SBPT"
	patchVersion    = 1
	patchHeaderSize = 56
	// PatchMaxWindow is the largest zstd window a patch may use; it
	// bounds the memory [Patch] needs, with its copy buffer, to about
	// 2*PatchMaxWindow.
	PatchMaxWindow = 8 << 20
)

// DiffOptions tune [Diff]. The zero value is what the benchmarks chose.
type DiffOptions struct {
	// BlockSize is the granularity at which the base is indexed: matches
	// of twice this length are always found, shorter ones only where they
	// continue the previous copy. Default 32, at least 8.
	BlockSize int
	// Level is the zstd level of the record stream; default
	// zstd.SpeedBestCompression.
	Level zstd.EncoderLevel
}

// Diff writes to w a patch that turns base (its first baseSize bytes) into
// the image read from newImage. Publisher side: the repository tool runs
// it for each release a device may still run, and publishes the patch as
// a TUF target of kind "patch" whose base is the SHA-256 of that release.
//
// Diff holds base and the new image in memory and an index of 4 bytes
// per BlockSize bytes of base (for two 512 MiB images: about 1.2 GiB).
// Publishers have memory; devices only run [Patch].
func Diff(base io.ReaderAt, baseSize int64, newImage io.Reader, w io.Writer, opts DiffOptions) error {
	if opts.BlockSize == 0 {
		opts.BlockSize = 32
	}
	if opts.BlockSize < 8 {
		return fmt.Errorf("delta: diff block size %d below 8", opts.BlockSize)
	}
	if opts.Level == 0 {
		opts.Level = zstd.SpeedBestCompression
	}
	if baseSize < 0 || baseSize > MaxImageSize {
		return fmt.Errorf("delta: base size %d out of range", baseSize)
	}
	old := make([]byte, baseSize)
	if n, err := base.ReadAt(old, 0); n < len(old) {
		return fmt.Errorf("delta: reading base: %w", err)
	}
	// Size the buffer up front when the reader knows its size, so that
	// reading does not double the memory.
	var nb bytes.Buffer
	switch r := newImage.(type) {
	case interface{ Len() int }:
		nb.Grow(r.Len() + 1)
	case interface{ Stat() (fs.FileInfo, error) }:
		if fi, err := r.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() <= MaxImageSize {
			nb.Grow(int(fi.Size()) + 1)
		}
	}
	if _, err := nb.ReadFrom(io.LimitReader(newImage, MaxImageSize+1)); err != nil {
		return fmt.Errorf("delta: reading new image: %w", err)
	}
	cur := nb.Bytes()
	if len(cur) > MaxImageSize {
		return fmt.Errorf("delta: new image larger than %d bytes", int64(MaxImageSize))
	}
	hdr := make([]byte, patchHeaderSize)
	copy(hdr, patchMagic)
	hdr[4] = patchVersion
	binary.BigEndian.PutUint64(hdr[8:], uint64(baseSize))
	binary.BigEndian.PutUint64(hdr[16:], uint64(len(cur)))
	sum := sha256.Sum256(cur)
	copy(hdr[24:], sum[:])
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(opts.Level), zstd.WithWindowSize(PatchMaxWindow),
		zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(enc, 256<<10)
	if err := diff(old, cur, opts.BlockSize, bw); err != nil {
		enc.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		enc.Close()
		return err
	}
	return enc.Close()
}

const rollPrime = 0x100000001b3

// diff finds copies of old in cur and writes the records.
func diff(old, cur []byte, B int, w *bufio.Writer) error {
	// Index every aligned block of old by its rolling hash.
	nblocks := len(old) / B
	tbits := max(bits.Len(uint(2*nblocks)), 4)
	table := make([]uint32, 1<<tbits) // block index + 1; 0 is empty
	slot := func(h uint64) uint64 { return (h * 0x9e3779b97f4a7c15) >> (64 - tbits) }
	var pow uint64 = 1 // rollPrime^B, to drop the outgoing byte
	for range B {
		pow *= rollPrime
	}
	hashOf := func(b []byte) uint64 {
		var h uint64
		for _, c := range b {
			h = h*rollPrime + uint64(c)
		}
		return h
	}
	for k := nblocks - 1; k >= 0; k-- { // first occurrence wins
		table[slot(hashOf(old[k*B:k*B+B]))] = uint32(k + 1)
	}

	var rec []byte
	prev := 0 // end of the previous copy in old
	emit := func(lit []byte, copyOff, copyLen int) error {
		rec = binary.AppendUvarint(rec[:0], uint64(len(lit)))
		if _, err := w.Write(rec); err != nil {
			return err
		}
		if _, err := w.Write(lit); err != nil {
			return err
		}
		rec = binary.AppendUvarint(rec[:0], uint64(copyLen))
		d := 0
		if copyLen > 0 {
			d = copyOff - prev
			prev = copyOff + copyLen
		}
		rec = binary.AppendVarint(rec, int64(d))
		_, err := w.Write(rec)
		return err
	}
	const minCont = 12 // shortest copy taken where the last one left off
	lit, i := 0, 0
	var h uint64
	if len(cur) >= B {
		h = hashOf(cur[:B])
	}
	for i+B <= len(cur) {
		cand, ok := -1, false
		// Same alignment as the last copy, past the literal so far: a
		// changed run of bytes of the same length.
		if c := prev + (i - lit); c+minCont <= len(old) && i+minCont <= len(cur) && bytes.Equal(cur[i:i+minCont], old[c:c+minCont]) {
			cand, ok = c, true
		} else if k := table[slot(h)]; k != 0 {
			c := int(k-1) * B
			if bytes.Equal(cur[i:i+B], old[c:c+B]) {
				cand, ok = c, true
			}
		}
		if ok {
			s, bs := i, cand
			for s > lit && bs > 0 && cur[s-1] == old[bs-1] {
				s--
				bs--
			}
			e, be := i, cand
			for e < len(cur) && be < len(old) && cur[e] == old[be] {
				e++
				be++
			}
			if err := emit(cur[lit:s], bs, e-s); err != nil {
				return err
			}
			lit, i = e, e
			if i+B <= len(cur) {
				h = hashOf(cur[i : i+B])
			}
			continue
		}
		if i+B < len(cur) {
			h = h*rollPrime + uint64(cur[i+B]) - pow*uint64(cur[i])
		}
		i++
	}
	if lit < len(cur) {
		return emit(cur[lit:], 0, 0)
	}
	return nil
}

// Patch applies a patch made by [Diff] to base and writes the new image
// to w, in order, as a stream. Memory is bounded by [PatchMaxWindow] and
// small buffers, whatever the image size. It checks the output against
// the SHA-256 in the patch and fails with [ErrCorruptPatch] if it differs
// (having written it: the caller verifies what it wrote against the TUF
// target anyway, and never uses an image Patch failed on).
//
// Patch does not resume: the patch is small, so an interrupted install
// runs Patch again from the start and skips the bytes already written.
func Patch(base io.ReaderAt, patch io.Reader, w io.Writer) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrCorruptPatch}, a...)...)
	}
	hdr := make([]byte, patchHeaderSize)
	if _, err := io.ReadFull(patch, hdr); err != nil {
		return bad("reading header: %v", err)
	}
	if string(hdr[:4]) != patchMagic {
		return bad("bad magic %q", hdr[:4])
	}
	if hdr[4] != patchVersion {
		return bad("unsupported version %d", hdr[4])
	}
	if hdr[5]|hdr[6]|hdr[7] != 0 {
		return bad("unknown flags")
	}
	baseLen := binary.BigEndian.Uint64(hdr[8:])
	newLen := binary.BigEndian.Uint64(hdr[16:])
	if baseLen > MaxImageSize || newLen > MaxImageSize {
		return bad("lengths %d, %d above %d", baseLen, newLen, uint64(MaxImageSize))
	}
	var want [sha256.Size]byte
	copy(want[:], hdr[24:])

	dec, err := zstd.NewReader(patch, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(PatchMaxWindow), zstd.WithDecoderMaxMemory(MaxImageSize))
	if err != nil {
		return err
	}
	defer dec.Close()
	r := bufio.NewReaderSize(corruptReader{dec}, 64<<10)
	h := sha256.New()
	out := io.MultiWriter(w, h)
	buf := make([]byte, 64<<10)
	var done, prev uint64
	for done < newLen {
		litLen, err := binary.ReadUvarint(r)
		if err != nil {
			return bad("at output %d: literal length: %v", done, err)
		}
		if litLen > newLen-done {
			return bad("at output %d: literal of %d bytes past the end", done, litLen)
		}
		n, err := io.CopyBuffer(out, io.LimitReader(r, int64(litLen)), buf)
		if err != nil {
			return err
		}
		if uint64(n) != litLen {
			return bad("at output %d: literal truncated", done)
		}
		done += litLen
		copyLen, err := binary.ReadUvarint(r)
		if err != nil {
			return bad("at output %d: copy length: %v", done, err)
		}
		d, err := binary.ReadVarint(r)
		if err != nil {
			return bad("at output %d: copy offset: %v", done, err)
		}
		if litLen == 0 && copyLen == 0 {
			return bad("at output %d: empty record", done)
		}
		if copyLen > newLen-done {
			return bad("at output %d: copy of %d bytes past the end", done, copyLen)
		}
		if copyLen == 0 {
			continue
		}
		start := int64(prev) + d
		if start < 0 || uint64(start) > baseLen || copyLen > baseLen-uint64(start) {
			return bad("at output %d: copy of base bytes [%d, +%d) outside a %d-byte base", done, start, copyLen, baseLen)
		}
		for off, end := start, start+int64(copyLen); off < end; {
			n := min(int64(len(buf)), end-off)
			m, err := base.ReadAt(buf[:n], off)
			if int64(m) < n {
				return fmt.Errorf("%w: reading base at %d: %v", ErrBaseMismatch, off, err)
			}
			if _, err := out.Write(buf[:n]); err != nil {
				return err
			}
			off += n
		}
		prev = uint64(start) + copyLen
		done += copyLen
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return bad("data after the end of the image (%v)", err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		return bad("output hashes to %x, patch says %x: wrong base or corrupt patch", got, want)
	}
	return nil
}

// corruptReader marks every error of the record stream but its end as
// a corrupt patch, so that callers can tell them from write errors.
type corruptReader struct{ r io.Reader }

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %v", ErrCorruptPatch, err)
	}
	return n, err
}
