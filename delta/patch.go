package delta

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math/bits"
	"os/exec"

	"github.com/klauspost/compress/zstd"
)

// Patch formats: the values of the TUF custom "format" field for patches.
const (
	// PatchFormat is the format [Diff] writes: frames that can be applied
	// from any frame boundary, so that an interrupted install resumes,
	// and copies that may carry byte differences (approximate matches).
	PatchFormat = "switchback-patch-v3"
	// PatchFormatV2 is version 2: the same frames with exact copies only.
	// [Diff] writes it when asked ([DiffOptions].Format), for devices
	// whose updater predates version 3; [Patch] and [ApplyPatch] read it.
	PatchFormatV2 = "switchback-patch-v2"
	// PatchFormatV1 is the format of earlier releases of this package: one
	// zstd stream, applied from its start only. [Patch] and [ApplyPatch]
	// still read it.
	PatchFormatV1 = "switchback-patch-v1"
)

// Errors callers branch on.
var (
	// ErrCorruptPatch is wrapped by every error about a malformed patch,
	// and when the patched output does not hash to what the patch says
	// (a wrong base or a corrupt patch).
	ErrCorruptPatch = errors.New("delta: corrupt patch")
	// ErrBaseMismatch is returned when the base is shorter than the patch
	// says, or cannot be read where the patch copies from.
	ErrBaseMismatch = errors.New("delta: base does not match the patch")
	// ErrBadCheckpoint is wrapped by errors about a [PatchCheckpoint]
	// that cannot be decoded or does not fit the patch it resumes.
	ErrBadCheckpoint = errors.New("delta: unusable patch checkpoint")
)

// Patch format, version 2 ([PatchFormat]). A header, then frames, each
// depending on nothing before it but its position in the output, up to the
// end of the new image:
//
//	header, 56 bytes, integers big endian:
//	0   4   magic "SBPT"
//	4   1   version, 2
//	5   3   flags, 0
//	8   8   base length
//	16  8   new image length
//	24  32  SHA-256 of the new image
//
//	frame, integers big endian:
//	0   4   A: length of the instruction section, at least 1
//	4   4   B: length of the literal section (0 if the frame has no
//	        literal bytes); A+B at most PatchMaxFrame
//	8   4   M: output bytes of the frame, at least 1
//	12  A   instructions: one zstd frame, decoding to at most
//	        PatchMaxInstructions bytes of records
//	12+A B  literals: one zstd frame, the literal bytes of the records,
//	        in order
//
//	record (in the instructions):
//	uvarint  literal length L: the next L literal bytes go to the output
//	uvarint  copy length C
//	varint   copy offset delta D (zigzag): the copy reads base bytes
//	         [p+D, p+D+C), where p is the end of the previous copy of
//	         the same frame (0 at the start of every frame); p becomes
//	         p+D+C
//
// Every record writes at least one byte. A frame's records write exactly
// its M bytes and use up both of its sections exactly; the M of all frames
// add up to the new image length, and nothing follows the last frame (an
// empty image has no frame). Both zstd windows are at most PatchMaxWindow.
// A frame thus decodes given only its patch offset and its output offset,
// the sum of the M before it: applying resumes at any frame boundary
// ([ApplyPatch], [PatchCheckpoint]). [Diff] ends a frame once its zstd data
// reaches about [DiffOptions].FrameSize or its output 64 MiB, so that a
// resumed install fetches at most about one frame again and rewrites at
// most 64 MiB. Instructions and literals compress better apart than
// interleaved (2% on an ext4 root file system); the decoder holds one
// frame's instructions, the literals stream.
//
// This is the bsdiff/VCDIFF idea (copy from anywhere in the base, add
// literals) without bsdiff's approximate matches, with the zstd entropy
// coder doing the rest: delta offsets of consecutive copies are small and
// literals compress.
//
// Version 3 ([PatchFormat]) is version 2 with version byte 3, approximate
// copies and a third section per frame, in this order on the wire:
//
//	frame, integers big endian:
//	0   4   A: length of the instruction section, at least 1
//	4   4   B: length of the literal section (0 if none)
//	8   4   M: output bytes of the frame, at least 1
//	12  4   X: length of the difference section (0 if no record of the
//	        frame is approximate); A+B+X at most PatchMaxFrame
//	16  A   instructions
//	16+A X  differences: one zstd frame, decoding to the difference bytes
//	        of the frame's approximate copies, in order
//	16+A+X B literals
//
// A record's copy length field is 2C+a: C the copy length, a = 1 for an
// approximate copy, whose output bytes are the base bytes plus the next C
// difference bytes, byte by byte modulo 256 (bsdiff's idea: code moved
// by a few bytes differs from its old copy in the addresses it holds, and
// those differences are mostly zeros, which compress to almost nothing).
// The difference section is used up exactly, like the others. A device
// holds a frame's compressed differences (at most PatchMaxFrame) while it
// streams its literals.
//
// Version 1 ([PatchFormatV1]) has the same header with version 1, followed
// by one zstd stream holding, for each record of the whole image in turn,
// L, the L literal bytes, C and D (p running across all records); the
// stream ends exactly after the last record.
const (
	patchMagic      = "SBPT"
	patchHeaderSize = 56
	frameHeaderSize = 12
	// frameHeaderSizeV3 is the frame header of version 3.
	frameHeaderSizeV3 = 16
	// PatchMaxWindow is the largest zstd window a patch may use; it
	// bounds the memory [Patch] needs, with its buffers, to about
	// 2*PatchMaxWindow.
	PatchMaxWindow = 8 << 20
	// PatchMaxFrame is the largest zstd data of one frame a version 2
	// patch may hold.
	PatchMaxFrame = 16 << 20
	// PatchMaxInstructions bounds the decoded instructions of one frame,
	// which [Patch] holds in memory.
	PatchMaxInstructions = 1 << 20
	// DefaultFrameSize is the default of [DiffOptions].FrameSize. On
	// the root file systems of examples/deltabench, 1 MiB frames make
	// patches 0.07% (ext4) and 0.04% (squashfs) larger than 2 MiB frames
	// and 0.6% smaller than 512 KiB ones (ext4).
	DefaultFrameSize = 1 << 20
)

// frameMaxOutput is where Diff ends a frame whatever its size: it bounds
// what a resumed install writes again. A variable for tests.
var frameMaxOutput int64 = 64 << 20

// DiffOptions tune [Diff]. The zero value is what the benchmarks chose.
type DiffOptions struct {
	// BlockSize is the granularity at which the base is indexed: matches
	// of twice this length are always found, shorter ones only where they
	// continue the previous copy. Default 32, at least 8.
	BlockSize int
	// Level is the zstd level of both sections of every frame; default
	// zstd.SpeedBestCompression.
	Level zstd.EncoderLevel
	// FrameSize is the size of zstd data at which Diff ends a frame and
	// starts the next: what an interrupted install fetches again, at
	// most, when it resumes. Smaller frames compress a little worse.
	// Default [DefaultFrameSize]; from 1 KiB to PatchMaxFrame/2.
	FrameSize int
	// Format is the patch format written: [PatchFormat] (the default) or
	// [PatchFormatV2], exact copies only, for older updaters.
	Format string
	// Compress, if set, also compresses every section of every frame,
	// and its output is kept where it is smaller than the pure-Go
	// encoder's (which still decides where frames end). It must return
	// zstd data decoding to src with a window of at most PatchMaxWindow.
	// [ZstdCommand] makes one that runs the zstd program.
	Compress func(src []byte) ([]byte, error)
}

// check fills in the defaults of o and returns the patch version it
// asks for.
func (o *DiffOptions) check() (version byte, err error) {
	if o.BlockSize == 0 {
		o.BlockSize = 32
	}
	if o.BlockSize < 8 {
		return 0, fmt.Errorf("delta: diff block size %d below 8", o.BlockSize)
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedBestCompression
	}
	if o.FrameSize == 0 {
		o.FrameSize = DefaultFrameSize
	}
	if o.FrameSize < 1<<10 || o.FrameSize > PatchMaxFrame/2 {
		return 0, fmt.Errorf("delta: diff frame size %d outside [1 KiB, %d]", o.FrameSize, PatchMaxFrame/2)
	}
	switch o.Format {
	case "", PatchFormat:
		return 3, nil
	case PatchFormatV2:
		return 2, nil
	}
	return 0, fmt.Errorf("delta: diff cannot write format %q", o.Format)
}

// ZstdCommand returns a [DiffOptions].Compress that runs the zstd
// program at level (1 to 19; the C encoder at 19 makes patches smaller
// than the pure-Go one: measured in examples/deltabench), with its
// window bounded by PatchMaxWindow. It fails when zstd is not installed.
// Publisher side; devices never need it.
func ZstdCommand(level int) (func(src []byte) ([]byte, error), error) {
	if level < 1 || level > 19 {
		return nil, fmt.Errorf("delta: zstd level %d outside 1 to 19", level)
	}
	path, err := exec.LookPath("zstd")
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	wlog := bits.Len(uint(PatchMaxWindow)) - 1
	args := []string{"-q", "-c", fmt.Sprintf("-%d", level), fmt.Sprintf("--zstd=wlog=%d", wlog), "--no-check", "--single-thread"}
	return func(src []byte) ([]byte, error) {
		cmd := exec.Command(path, args...)
		cmd.Stdin = bytes.NewReader(src)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("delta: zstd: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		return out.Bytes(), nil
	}, nil
}

// Diff writes to w a patch (format [PatchFormat]) that turns base (its
// first baseSize bytes) into the image read from newImage. Publisher side:
// the repository tool runs it for each release a device may still run, and
// publishes the patch as a TUF target of kind "patch" whose base is the
// SHA-256 of that release.
//
// Diff holds base and the new image in memory and an index of 4 bytes
// per BlockSize bytes of base (for two 512 MiB images: about 1.2 GiB),
// and one frame of the patch. Publishers have memory; devices only run
// [Patch].
func Diff(base io.ReaderAt, baseSize int64, newImage io.Reader, w io.Writer, opts DiffOptions) error {
	version, err := opts.check()
	if err != nil {
		return err
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
		if fi, err := r.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() <= MaxImageSize && int64(int(fi.Size())) == fi.Size() {
			nb.Grow(int(fi.Size()) + 1)
		}
	}
	if _, err := nb.ReadFrom(io.LimitReader(newImage, MaxImageSize+1)); err != nil {
		return fmt.Errorf("delta: reading new image: %w", err)
	}
	cur := nb.Bytes()
	if int64(len(cur)) > MaxImageSize {
		return fmt.Errorf("delta: new image larger than %d bytes", int64(MaxImageSize))
	}
	h := patchHeader{version: version, baseLen: uint64(baseSize), newLen: uint64(len(cur)), sum: sha256.Sum256(cur)}
	if _, err := w.Write(h.marshal()); err != nil {
		return err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(opts.Level), zstd.WithWindowSize(PatchMaxWindow),
		zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	insEnc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(opts.Level), zstd.WithWindowSize(PatchMaxWindow),
		zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	fw := &frameWriter{w: w, enc: enc, insEnc: insEnc, size: opts.FrameSize, maxOut: frameMaxOutput, v3: version == 3, compress: opts.Compress}
	fw.enc.Reset(&fw.buf)
	if err := diff(old, cur, opts.BlockSize, fw); err != nil {
		enc.Close()
		insEnc.Close()
		return err
	}
	return fw.close()
}

// frameWriter cuts the records into frames.
type frameWriter struct {
	w      io.Writer
	enc    *zstd.Encoder // literals, streaming into buf
	insEnc *zstd.Encoder // instructions, at the end of the frame
	buf    bytes.Buffer  // literal section of the current frame
	ins    []byte        // instructions of the current frame
	size   int           // zstd data at which a frame ends
	maxOut int64         // output at which a frame ends
	out    int64         // output of the current frame's records
	lits   int64         // literal bytes of the current frame
	p      int           // end of the previous copy in this frame
	// The encoder writes a block of zstd data once it has a block of
	// input (128 KiB): pending is the input since its output last grew,
	// counted as if it did not compress, and seen the output length then.
	pending, seen int
	sec           []byte
	// Version 3: the difference bytes of the frame's approximate copies.
	v3    bool
	diffs []byte
	dsec  []byte
	// With DiffOptions.Compress: the frame's literal bytes.
	compress func([]byte) ([]byte, error)
	rawLits  []byte
}

// smaller returns what f.compress makes of raw when that is smaller
// than z, else z.
func (f *frameWriter) smaller(raw, z []byte) ([]byte, error) {
	if f.compress == nil || len(raw) == 0 {
		return z, nil
	}
	alt, err := f.compress(raw)
	if err != nil {
		return nil, err
	}
	if len(alt) < len(z) {
		return alt, nil
	}
	return z, nil
}

// weight estimates the zstd data of the frame so far, from above for the
// literals; instructions compress about tenfold.
func (f *frameWriter) weight() int {
	if f.buf.Len() != f.seen {
		f.seen, f.pending = f.buf.Len(), 0
	}
	// Differences are mostly zeros: they compress at least tenfold.
	return f.buf.Len() + f.pending + len(f.ins)/8 + len(f.diffs)/16
}

// full reports whether the frame should end before the next record.
func (f *frameWriter) full() bool {
	return f.weight() >= f.size || f.out >= f.maxOut || len(f.ins) > PatchMaxInstructions-3*binary.MaxVarintLen64 ||
		len(f.diffs) >= PatchMaxFrame/4
}

// add writes the record (lit, copy base[off:off+n]), split across frames
// where a frame ends. A copy with diff (len n) is approximate.
func (f *frameWriter) add(lit []byte, off, n int, diff []byte) error {
	for len(lit) > 0 || n > 0 {
		if f.full() {
			if err := f.endFrame(); err != nil {
				return err
			}
		}
		// A long literal goes in pieces, so that the frame size is
		// checked between them.
		room := f.maxOut - f.out
		l := int(min(int64(len(lit)), room, int64(max(f.size-f.weight(), 1<<10))))
		c := 0
		if l == len(lit) {
			c = int(min(int64(n), room-int64(l)))
		}
		var d []byte
		if diff != nil {
			d, diff = diff[:c], diff[c:]
		}
		if err := f.put(lit[:l], off, c, d); err != nil {
			return err
		}
		lit, off, n = lit[l:], off+c, n-c
	}
	return nil
}

// put adds one record to the current frame; diff, when not nil, makes
// the copy approximate.
func (f *frameWriter) put(lit []byte, off, n int, diff []byte) error {
	if _, err := f.enc.Write(lit); err != nil {
		return err
	}
	if f.compress != nil {
		f.rawLits = append(f.rawLits, lit...)
	}
	d := 0
	if n > 0 {
		d = off - f.p
		f.p = off + n
	}
	f.ins = binary.AppendUvarint(f.ins, uint64(len(lit)))
	switch {
	case !f.v3:
		f.ins = binary.AppendUvarint(f.ins, uint64(n))
	case diff != nil && n > 0:
		f.ins = binary.AppendUvarint(f.ins, uint64(n)<<1|1)
		f.diffs = append(f.diffs, diff...)
	default:
		f.ins = binary.AppendUvarint(f.ins, uint64(n)<<1)
	}
	f.ins = binary.AppendVarint(f.ins, int64(d))
	f.out += int64(len(lit) + n)
	f.lits += int64(len(lit))
	f.pending += len(lit)
	return nil
}

// endFrame writes the current frame and starts the next.
func (f *frameWriter) endFrame() error {
	if err := f.enc.Close(); err != nil {
		return err
	}
	f.sec = f.insEnc.EncodeAll(f.ins, f.sec[:0])
	sec, err := f.smaller(f.ins, f.sec)
	if err != nil {
		return err
	}
	lits := f.buf.Bytes()
	if f.lits == 0 {
		lits = nil
	}
	if lits, err = f.smaller(f.rawLits, lits); err != nil {
		return err
	}
	var hdr [frameHeaderSizeV3]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(len(sec)))
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(lits)))
	binary.BigEndian.PutUint32(hdr[8:], uint32(f.out))
	parts := [][]byte{hdr[:frameHeaderSize], sec, lits}
	if f.v3 {
		f.dsec = f.dsec[:0]
		dsec := f.dsec
		if len(f.diffs) > 0 {
			f.dsec = f.insEnc.EncodeAll(f.diffs, f.dsec)
			if dsec, err = f.smaller(f.diffs, f.dsec); err != nil {
				return err
			}
		}
		binary.BigEndian.PutUint32(hdr[12:], uint32(len(dsec)))
		parts = [][]byte{hdr[:], sec, dsec, lits}
	}
	for _, b := range parts {
		if _, err := f.w.Write(b); err != nil {
			return err
		}
	}
	f.diffs, f.rawLits = f.diffs[:0], f.rawLits[:0]
	f.buf.Reset()
	f.enc.Reset(&f.buf)
	f.ins = f.ins[:0]
	f.out, f.lits, f.p, f.pending, f.seen = 0, 0, 0, 0, 0
	return nil
}

// close writes the last frame, if it has records.
func (f *frameWriter) close() error {
	defer f.insEnc.Close()
	if f.out > 0 {
		return f.endFrame()
	}
	return f.enc.Close()
}

const rollPrime = 0x100000001b3

// diff finds copies of old in cur and writes the records.
func diff(old, cur []byte, B int, fw *frameWriter) error {
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

	prev := 0          // end of the previous copy in old
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
			e, be, err := fw.match(cur, old, lit, i, cand)
			if err != nil {
				return err
			}
			prev = be
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
		return fw.add(cur[lit:], 0, 0, nil)
	}
	return nil
}

// match writes the literal cur[lit:i] and a copy of the match of cur[i:]
// at old[cand:], extended both ways: exactly, then (version 3) through
// small differences, bsdiff-style. It returns where the copy ends in cur
// and in old.
func (f *frameWriter) match(cur, old []byte, lit, i, cand int) (e, be int, err error) {
	s, bs := i, cand
	for s > lit && bs > 0 && cur[s-1] == old[bs-1] {
		s--
		bs--
	}
	e, be = i, cand
	for e < len(cur) && be < len(old) && cur[e] == old[be] {
		e++
		be++
	}
	if !f.v3 {
		return e, be, f.add(cur[lit:s], bs, e-s, nil)
	}
	back := approxExtent(cur, old, s-1, bs-1, -1, s-lit)
	fwd := approxExtent(cur, old, e, be, 1, len(cur)-e)
	return e + fwd, be + fwd, f.addApprox(cur, old, lit, s-back, bs-back, s, e, e+fwd)
}

// approxExtent returns how far, from cur[i] and old[j] in direction dir
// (1 or -1) and at most limit bytes, an approximate copy should reach:
// the length where matching bytes most outnumber differing ones (bsdiff's
// rule), scanning until the differences lead by approxSlack.
func approxExtent(cur, old []byte, i, j, dir, limit int) int {
	best, bestLen, score := 0, 0, 0
	for k := 0; k < limit && i >= 0 && j >= 0 && i < len(cur) && j < len(old); k++ {
		if cur[i] == old[j] {
			score++
		} else {
			score--
		}
		if score > best {
			best, bestLen = score, k+1
		}
		if score < best-approxSlack {
			break
		}
		i, j = i+dir, j+dir
	}
	return bestLen
}

// approxSlack is how far differences may lead matches before an
// approximate extension stops looking.
const approxSlack = 16

// minExactInApprox is the shortest exact match kept as an exact copy
// inside an approximate one; shorter ones travel as zero differences.
const minExactInApprox = 64

// addApprox writes the literal cur[lit:as], then cur[as:ae] as copies
// from old at ab: exact for [s, e) when that is long, approximate around
// it (and through it when short).
func (f *frameWriter) addApprox(cur, old []byte, lit, as, ab, s, e, ae int) error {
	diffOf := func(from, to int) []byte {
		d := make([]byte, to-from)
		for k := range d {
			d[k] = cur[from+k] - old[ab+from-as+k]
		}
		return d
	}
	if e-s >= minExactInApprox || (as == s && ae == e) {
		var d []byte
		if as < s {
			d = diffOf(as, s)
		}
		if err := f.add(cur[lit:as], ab, s-as, d); err != nil {
			return err
		}
		if err := f.add(nil, ab+s-as, e-s, nil); err != nil {
			return err
		}
		if ae > e {
			return f.add(nil, ab+e-as, ae-e, diffOf(e, ae))
		}
		return nil
	}
	return f.add(cur[lit:as], ab, ae-as, diffOf(as, ae))
}

// patchHeader is the header of a patch, either version.
type patchHeader struct {
	version         byte
	baseLen, newLen uint64
	sum             [sha256.Size]byte
}

func (h patchHeader) marshal() []byte {
	b := make([]byte, patchHeaderSize)
	copy(b, patchMagic)
	b[4] = h.version
	binary.BigEndian.PutUint64(b[8:], h.baseLen)
	binary.BigEndian.PutUint64(b[16:], h.newLen)
	copy(b[24:], h.sum[:])
	return b
}

// parsePatchHeader decodes and checks a header.
func parsePatchHeader(b []byte) (patchHeader, error) {
	var h patchHeader
	if string(b[:4]) != patchMagic {
		return h, fmt.Errorf("bad magic %q", b[:4])
	}
	if h.version = b[4]; h.version < 1 || h.version > 3 {
		return h, fmt.Errorf("unsupported version %d", b[4])
	}
	if b[5]|b[6]|b[7] != 0 {
		return h, errors.New("unknown flags")
	}
	h.baseLen = binary.BigEndian.Uint64(b[8:])
	h.newLen = binary.BigEndian.Uint64(b[16:])
	if h.baseLen > MaxImageSize || h.newLen > MaxImageSize {
		return h, fmt.Errorf("lengths %d, %d above %d", h.baseLen, h.newLen, uint64(MaxImageSize))
	}
	copy(h.sum[:], b[24:])
	return h, nil
}

// PatchCheckpoint is a frame boundary of a version 2 patch, where
// [ApplyPatch] can resume: the first PatchOffset bytes of the patch made
// the first OutputOffset bytes of the image. Besides the offsets it holds
// the patch header and the hash state of the output so far; persist it
// with MarshalBinary. The zero value is not a checkpoint.
type PatchCheckpoint struct {
	PatchOffset  int64
	OutputOffset int64
	hdr          patchHeader
	hash         []byte // sha256 state of the output so far
}

// checkpoint encoding: magic "SBPC", version 1, the patch header, the two
// offsets (big endian), then the SHA-256 state (the rest).
const (
	checkpointMagic = "SBPC"
	checkpointFixed = 5 + patchHeaderSize + 16
	// maxHashState bounds the marshalled SHA-256 state (108 bytes today).
	maxHashState = 256
)

// MarshalBinary encodes the checkpoint (about 200 bytes).
func (c PatchCheckpoint) MarshalBinary() ([]byte, error) {
	if c.hdr.version < 2 || len(c.hash) == 0 {
		return nil, fmt.Errorf("%w: not a checkpoint", ErrBadCheckpoint)
	}
	b := make([]byte, 0, checkpointFixed+len(c.hash))
	b = append(b, checkpointMagic...)
	b = append(b, 1)
	b = append(b, c.hdr.marshal()...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.PatchOffset))
	b = binary.BigEndian.AppendUint64(b, uint64(c.OutputOffset))
	return append(b, c.hash...), nil
}

// UnmarshalBinary decodes a checkpoint made by MarshalBinary and checks
// it; errors wrap [ErrBadCheckpoint].
func (c *PatchCheckpoint) UnmarshalBinary(b []byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadCheckpoint}, a...)...)
	}
	if len(b) < checkpointFixed || len(b) > checkpointFixed+maxHashState {
		return bad("%d bytes", len(b))
	}
	if string(b[:4]) != checkpointMagic || b[4] != 1 {
		return bad("bad magic or version")
	}
	h, err := parsePatchHeader(b[5:])
	if err != nil {
		return bad("%v", err)
	}
	if h.version < 2 {
		return bad("patch version %d does not resume", h.version)
	}
	po := binary.BigEndian.Uint64(b[5+patchHeaderSize:])
	oo := binary.BigEndian.Uint64(b[5+patchHeaderSize+8:])
	if po < patchHeaderSize || po > 2*MaxImageSize || oo > h.newLen {
		return bad("offsets %d, %d do not fit the patch", po, oo)
	}
	hs := b[checkpointFixed:]
	d := sha256.New()
	if err := d.(encoding.BinaryUnmarshaler).UnmarshalBinary(hs); err != nil {
		return bad("hash state: %v", err)
	}
	*c = PatchCheckpoint{PatchOffset: int64(po), OutputOffset: int64(oo), hdr: h, hash: bytes.Clone(hs)}
	return nil
}

// PatchOptions tune [ApplyPatch]. The zero value applies a patch from its
// start without checkpoints, as [Patch] does.
type PatchOptions struct {
	// From, if set, resumes at this checkpoint (from a Checkpoint call of
	// an earlier run over the same patch and base): the patch reader
	// starts at byte From.PatchOffset of the patch, and the writer
	// receives the image from byte From.OutputOffset on.
	From *PatchCheckpoint
	// Checkpoint, if set, is called after every frame of a version 2
	// patch, when exactly PatchOffset bytes have been read from the
	// patch reader (ApplyPatch never reads ahead of a frame) and exactly
	// OutputOffset bytes of the image written (this run's bytes plus
	// From.OutputOffset). It runs on ApplyPatch's goroutine; its error
	// ends ApplyPatch. Version 1 patches make no checkpoints.
	Checkpoint func(PatchCheckpoint) error
}

// Patch applies a patch made by [Diff] (format [PatchFormat] or
// [PatchFormatV1]) to base and writes the new image to w, in order, as a
// stream. Memory is bounded by [PatchMaxWindow] and small buffers,
// whatever the image size. It checks the output against the SHA-256 in
// the patch and fails with [ErrCorruptPatch] if it differs (having
// written it: the caller verifies what it wrote against the TUF target
// anyway, and never uses an image Patch failed on).
//
// Patch is [ApplyPatch] with no options; use that to resume.
func Patch(base io.ReaderAt, patch io.Reader, w io.Writer) error {
	return ApplyPatch(base, patch, w, PatchOptions{})
}

// ApplyPatch is [Patch] with checkpoints at frame boundaries and resume
// from one of them (see [PatchOptions]). To resume after an interruption,
// keep the last checkpoint durably together with the output written
// before it (sync the output first), then call ApplyPatch with From set,
// the patch from byte From.PatchOffset (an HTTP Range request), and a
// writer that continues at From.OutputOffset. The output hash check covers
// the whole image, the bytes before the checkpoint through its hash state.
func ApplyPatch(base io.ReaderAt, patch io.Reader, w io.Writer, opts PatchOptions) error {
	a := &patchApplier{base: base, w: w, buf: make([]byte, 64<<10)}
	if opts.From != nil {
		c := opts.From
		if c.hdr.version < 2 || len(c.hash) == 0 {
			return fmt.Errorf("%w: not a checkpoint", ErrBadCheckpoint)
		}
		a.hdr, a.patchOff, a.done = c.hdr, uint64(c.PatchOffset), uint64(c.OutputOffset)
		a.h = sha256.New()
		if err := a.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(c.hash); err != nil {
			return fmt.Errorf("%w: hash state: %v", ErrBadCheckpoint, err)
		}
	} else {
		b := make([]byte, patchHeaderSize)
		if _, err := io.ReadFull(patch, b); err != nil {
			return a.bad("reading header: %w", err)
		}
		h, err := parsePatchHeader(b)
		if err != nil {
			return a.bad("%v", err)
		}
		a.hdr, a.patchOff, a.h = h, patchHeaderSize, sha256.New()
	}
	a.out = io.MultiWriter(w, a.h)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(PatchMaxWindow), zstd.WithDecoderMaxMemory(MaxImageSize))
	if err != nil {
		return err
	}
	defer dec.Close()
	a.dec = dec
	a.r = bufio.NewReaderSize(nil, 64<<10)
	if a.hdr.version == 3 {
		// The differences stream beside the literals: a second decoder.
		ddec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(PatchMaxWindow), zstd.WithDecoderMaxMemory(MaxImageSize))
		if err != nil {
			return err
		}
		defer ddec.Close()
		a.ddec, a.dr, a.dbuf = ddec, bufio.NewReaderSize(nil, 64<<10), make([]byte, len(a.buf))
	}
	if a.hdr.version == 1 {
		err = a.stream(patch)
	} else {
		err = a.frames(patch, opts.Checkpoint)
	}
	if err != nil {
		return err
	}
	if got := a.h.Sum(nil); !bytes.Equal(got, a.hdr.sum[:]) {
		return a.bad("output hashes to %x, patch says %x: wrong base or corrupt patch", got, a.hdr.sum)
	}
	return nil
}

// patchApplier is one run of ApplyPatch.
type patchApplier struct {
	base     io.ReaderAt
	w        io.Writer
	out      io.Writer // w and h
	h        hash.Hash
	hdr      patchHeader
	dec      *zstd.Decoder
	r        *bufio.Reader // decoded records
	buf      []byte
	patchOff uint64 // patch bytes consumed (version 2, between frames)
	done     uint64 // output bytes written, this run's and before

	// Version 3: the difference section's decoder, its compressed bytes
	// and decoded stream, and a buffer of difference bytes.
	ddec  *zstd.Decoder
	dsec  []byte
	dr    *bufio.Reader
	dbuf  []byte
	diffs io.Reader // the current frame's differences; nil: none
}

func (a *patchApplier) bad(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorruptPatch}, args...)...)
}

// stream applies a version 1 patch: one zstd stream to its end.
func (a *patchApplier) stream(patch io.Reader) error {
	if err := a.dec.Reset(patch); err != nil {
		return a.bad("zstd stream: %w", err)
	}
	a.r.Reset(corruptReader{a.dec})
	if err := a.records(a.r, a.r, a.hdr.newLen); err != nil {
		return err
	}
	if _, err := a.r.ReadByte(); err != io.EOF {
		return a.bad("data after the end of the image (%v)", err)
	}
	return nil
}

// section starts decoding the next n bytes of the patch, one zstd frame,
// into a.r.
func (a *patchApplier) section(patch io.Reader, n uint32, what string) (*io.LimitedReader, error) {
	lr := &io.LimitedReader{R: patch, N: int64(n)}
	if err := a.dec.Reset(lr); err != nil {
		return nil, a.bad("patch byte %d: %s: zstd: %w", a.patchOff, what, err)
	}
	a.r.Reset(corruptReader{a.dec})
	return lr, nil
}

// sectionEnd checks that a section was used up exactly.
func (a *patchApplier) sectionEnd(lr *io.LimitedReader, what string) error {
	if _, err := a.r.ReadByte(); err != io.EOF {
		return a.bad("patch byte %d: %s: data after the frame's records (%v)", a.patchOff, what, err)
	}
	if lr.N != 0 {
		return a.bad("patch byte %d: %s: %d bytes after the zstd data", a.patchOff, what, lr.N)
	}
	return nil
}

// frames applies the frames of a version 2 patch from a.patchOff on.
func (a *patchApplier) frames(patch io.Reader, ck func(PatchCheckpoint) error) error {
	var ins bytes.Buffer
	for a.done < a.hdr.newLen {
		hs, na, nb, nx, m, err := a.frameHeader(patch)
		if err != nil {
			return err
		}
		lr, err := a.section(patch, na, "instructions")
		if err != nil {
			return err
		}
		ins.Reset()
		if _, err := ins.ReadFrom(io.LimitReader(a.r, PatchMaxInstructions+1)); err != nil {
			return a.bad("patch byte %d: instructions: %w", a.patchOff, err)
		}
		if ins.Len() > PatchMaxInstructions {
			return a.bad("patch byte %d: instructions over %d bytes", a.patchOff, PatchMaxInstructions)
		}
		if err := a.sectionEnd(lr, "instructions"); err != nil {
			return err
		}
		if err := a.differences(patch, nx); err != nil {
			return err
		}
		var lits io.Reader = bytes.NewReader(nil)
		if nb > 0 {
			if lr, err = a.section(patch, nb, "literals"); err != nil {
				return err
			}
			lits = a.r
		}
		if err := a.records(&ins, lits, a.done+m); err != nil {
			return err
		}
		if ins.Len() != 0 {
			return a.bad("patch byte %d: %d bytes of instructions after the frame's records", a.patchOff, ins.Len())
		}
		if nb > 0 {
			if err := a.sectionEnd(lr, "literals"); err != nil {
				return err
			}
		}
		if a.diffs != nil {
			if _, err := a.dr.ReadByte(); err != io.EOF {
				return a.bad("patch byte %d: differences: data after the frame's copies (%v)", a.patchOff, err)
			}
		}
		a.patchOff += uint64(hs) + uint64(na) + uint64(nb) + uint64(nx)
		if ck == nil {
			continue
		}
		state, err := a.h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return err
		}
		if err := ck(PatchCheckpoint{PatchOffset: int64(a.patchOff), OutputOffset: int64(a.done), hdr: a.hdr, hash: state}); err != nil {
			return err
		}
	}
	var b [1]byte
	if n, err := io.ReadFull(patch, b[:]); n > 0 || err != io.EOF {
		return a.bad("data after the last frame (%v)", err)
	}
	return nil
}

// frameHeader reads and checks the next frame header: its size, the
// lengths of the instruction, literal and difference sections (0 before
// version 3) and the frame's output bytes.
func (a *patchApplier) frameHeader(patch io.Reader) (hs int, na, nb, nx uint32, m uint64, err error) {
	var fh [frameHeaderSizeV3]byte
	hs = frameHeaderSize
	if a.hdr.version == 3 {
		hs = frameHeaderSizeV3
	}
	if _, err := io.ReadFull(patch, fh[:hs]); err != nil {
		return 0, 0, 0, 0, 0, a.bad("patch byte %d, output %d: frame header: %w", a.patchOff, a.done, err)
	}
	na, nb = binary.BigEndian.Uint32(fh[0:]), binary.BigEndian.Uint32(fh[4:])
	m, nx = uint64(binary.BigEndian.Uint32(fh[8:])), binary.BigEndian.Uint32(fh[12:])
	if na == 0 || uint64(na)+uint64(nb)+uint64(nx) > PatchMaxFrame {
		return 0, 0, 0, 0, 0, a.bad("patch byte %d: frame of %d+%d+%d bytes, want 1 to %d", a.patchOff, na, nb, nx, PatchMaxFrame)
	}
	if m == 0 || m > a.hdr.newLen-a.done {
		return 0, 0, 0, 0, 0, a.bad("patch byte %d: frame writes %d bytes at output %d of %d", a.patchOff, m, a.done, a.hdr.newLen)
	}
	return hs, na, nb, nx, m, nil
}

// differences reads the n-byte difference section of a version 3 frame
// into memory and starts decoding it into a.dr (a.diffs); n = 0: none.
func (a *patchApplier) differences(patch io.Reader, n uint32) error {
	a.diffs = nil
	if n == 0 {
		return nil
	}
	if cap(a.dsec) < int(n) {
		a.dsec = make([]byte, n)
	}
	a.dsec = a.dsec[:n]
	if _, err := io.ReadFull(patch, a.dsec); err != nil {
		return a.bad("patch byte %d: differences: %w", a.patchOff, err)
	}
	if err := a.ddec.Reset(bytes.NewReader(a.dsec)); err != nil {
		return a.bad("patch byte %d: differences: zstd: %w", a.patchOff, err)
	}
	a.dr.Reset(corruptReader{a.ddec})
	a.diffs = a.dr
	return nil
}

// records applies records, their fields read from ins and their literal
// bytes from lits, until the output reaches end. Copy offsets start from
// 0.
func (a *patchApplier) records(ins io.ByteReader, lits io.Reader, end uint64) error {
	var prev uint64
	for a.done < end {
		litLen, err := binary.ReadUvarint(ins)
		if err != nil {
			return a.bad("at output %d: literal length: %w", a.done, err)
		}
		if litLen > end-a.done {
			return a.bad("at output %d: literal of %d bytes past the end", a.done, litLen)
		}
		n, err := io.CopyBuffer(a.out, io.LimitReader(lits, int64(litLen)), a.buf)
		if err != nil {
			return err
		}
		if uint64(n) != litLen {
			return a.bad("at output %d: literal truncated", a.done)
		}
		a.done += litLen
		copyLen, err := binary.ReadUvarint(ins)
		if err != nil {
			return a.bad("at output %d: copy length: %w", a.done, err)
		}
		approx := false
		if a.hdr.version == 3 {
			approx, copyLen = copyLen&1 == 1, copyLen>>1
			if approx && (a.diffs == nil || copyLen == 0) {
				return a.bad("at output %d: approximate copy without differences", a.done)
			}
		}
		d, err := binary.ReadVarint(ins)
		if err != nil {
			return a.bad("at output %d: copy offset: %w", a.done, err)
		}
		if litLen == 0 && copyLen == 0 {
			return a.bad("at output %d: empty record", a.done)
		}
		if copyLen > end-a.done {
			return a.bad("at output %d: copy of %d bytes past the end", a.done, copyLen)
		}
		if copyLen == 0 {
			continue
		}
		start := int64(prev) + d
		if start < 0 || uint64(start) > a.hdr.baseLen || copyLen > a.hdr.baseLen-uint64(start) {
			return a.bad("at output %d: copy of base bytes [%d, +%d) outside a %d-byte base", a.done, start, copyLen, a.hdr.baseLen)
		}
		if err := a.copyBase(start, int64(copyLen), approx); err != nil {
			return err
		}
		prev = uint64(start) + copyLen
		a.done += copyLen
	}
	return nil
}

// copyBase writes base bytes [start, start+n) to the output, plus the
// next n difference bytes when approx.
func (a *patchApplier) copyBase(start, n int64, approx bool) error {
	for off, e := start, start+n; off < e; {
		k := min(int64(len(a.buf)), e-off)
		m, err := a.base.ReadAt(a.buf[:k], off)
		if int64(m) < k {
			return fmt.Errorf("%w: reading base at %d: %v", ErrBaseMismatch, off, err)
		}
		if approx {
			if err := a.addDifferences(a.buf[:k]); err != nil {
				return err
			}
		}
		if _, err := a.out.Write(a.buf[:k]); err != nil {
			return err
		}
		off += k
	}
	return nil
}

// addDifferences adds the next len(b) difference bytes to b.
func (a *patchApplier) addDifferences(b []byte) error {
	d := a.dbuf[:len(b)]
	if _, err := io.ReadFull(a.diffs, d); err != nil {
		return a.bad("at output %d: differences: %w", a.done, err)
	}
	for k := range b {
		b[k] += d[k]
	}
	return nil
}

// corruptReader marks every error of the record stream but its end as
// a corrupt patch, so that callers can tell them from write errors.
type corruptReader struct{ r io.Reader }

func (c corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %w", ErrCorruptPatch, err)
	}
	return n, err
}
