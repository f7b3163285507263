package updater

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// checkpointEvery is how many bytes pass between durable checkpoints of a
// transfer: at most this much is fetched again after a power cut, and the
// fsync cost is paid once per this many bytes. A variable so that tests can
// make checkpoints frequent.
var checkpointEvery int64 = 4 << 20

// maxFrameWindow bounds the history a zstd frame may ask the decoder to
// keep, and so the decoder's memory. Frames made by the repository package
// keep one frame (DefaultFrameSize, 4 MiB) at most.
const maxFrameWindow = 64 << 20

// pipeline is the download sink: bytes flow network → wire verifier (the
// TUF hashes) → [zstd decoder → image verifier] → slot writer, in stages
// that run on goroutines of their own and pass buffers of a shared pool
// (see writeBehind and hashStage): receiving, decompressing, hashing and
// writing overlap, and the bytes are hashed once for each digest the target
// has (the wire bytes for TUF, the image for its own digest when it is
// compressed). It keeps no more than the pool's buffers in memory, whatever
// the image size (plus, for compressed targets, the decoder's window: at
// most maxFrameWindow).
//
// A compressed target is a sequence of zstd frames. The pipeline finds the
// frame boundaries itself as the bytes pass (frameScanner) and decodes each
// frame with a fresh run of one reusable decoder, so that at a boundary the
// decoder holds no state: that is where it checkpoints (compressed offset,
// image offset and both verifier states), and where a resumed transfer
// starts again. A stream of one huge frame installs just the same, with no
// checkpoint inside the frame.
type pipeline struct {
	w        slots.Writer
	t        verify.Target
	pd       *pending
	st       *store
	log      *slog.Logger
	progress func(done, total int64)

	wire      *verify.Verifier
	off       int64 // wire bytes delivered
	lastCk    int64
	validator string // of the bytes being received

	// The slot is written through hs, which hashes (the wire verifier
	// for plain targets, the image one for compressed targets) and passes
	// on to wb; the plain path fills cur, which holds the bytes from
	// curOff, a buffer at a time.
	hs        *hashStage
	wb        *writeBehind
	light     *lightLog
	blockSize int
	cur       []byte
	curOff    int64
	rx        []byte // compressed targets: where Buffer has the bytes read

	// Compressed targets only. The decoder goroutine of the current frame
	// owns dec and imgOff until it sends on done; hs's goroutine owns img
	// while items are queued.
	img        *verify.Verifier
	dec        *zstd.Decoder
	frames     frameScanner
	pw         *framePipe // nil between frames
	done       chan error
	imgOff     int64 // image bytes written, complete frames only between frames
	frameStart int64 // wire offset of the current frame
	lastFrame  int64 // wire length of the last complete frame
	warned     bool
}

func newPipeline(t verify.Target, w slots.Writer, blockSize int, pd *pending, st *store, log *slog.Logger, progress func(done, total int64)) (*pipeline, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &pipeline{w: w, t: t, pd: pd, st: st, log: log, progress: progress, blockSize: max(blockSize, 1)}
	saved := *pd
	if err := p.reset(); err != nil {
		return nil, err
	}
	dir := filepath.Dir(st.path)
	durable := ckRecord{Offset: saved.Offset, WireOffset: saved.WireOffset, HashState: saved.HashState, ImageHashState: saved.ImageHashState, Validator: saved.Validator}
	resumed := false
	if lr, ok := readLight(dir, t.SHA256(), pd.Slot, w); ok && p.wireOffset(lr) > p.wireOffset(durable) {
		// The same boot, a slot whose writes outlive the process: the
		// light checkpoint is newer than the durable one and as good.
		if resumed = p.resume(lr); resumed {
			p.log.Info("transfer resumes from the light checkpoint of a process of this boot", "target", t.Path, "offset", lr.Offset, "durable_offset", saved.Offset)
		} else if err := p.reset(); err != nil {
			return nil, err
		}
	}
	if !resumed && saved.Offset > 0 && len(saved.HashState) > 0 && !p.resume(durable) {
		// An unusable checkpoint costs a re-download, nothing else.
		p.log.Warn("transfer checkpoint unusable; starting over", "target", t.Path, "offset", saved.Offset)
		if err := p.reset(); err != nil {
			return nil, err
		}
	}
	// The durable fields stay as saved until the next durable checkpoint.
	pd.Offset, pd.HashState, pd.Validator = saved.Offset, saved.HashState, saved.Validator
	pd.WireOffset, pd.ImageHashState = saved.WireOffset, saved.ImageHashState
	p.light = openLight(dir, t.SHA256(), pd.Slot, w)
	p.wb = newWriteBehind(w, p.blockSize, p.saveCheckpoint, p.light)
	if p.img != nil {
		p.hs = newHashStage(p.wb, func() *verify.Verifier { return p.img }, true, "target "+t.Path+", decompressed")
	} else {
		p.hs = newHashStage(p.wb, func() *verify.Verifier { return p.wire }, false, "target "+t.Path)
	}
	return p, nil
}

// wireOffset is where a transfer resumed from ck continues on the wire.
func (p *pipeline) wireOffset(ck ckRecord) int64 {
	if p.img != nil {
		return ck.WireOffset
	}
	return ck.Offset
}

// resume sets the pipeline to continue after ck, and reports whether ck is
// consistent (its hash states are at its offsets).
func (p *pipeline) resume(ck ckRecord) bool {
	wireOff := p.wireOffset(ck)
	ok := wireOff > 0 && len(ck.HashState) > 0 && p.wire.UnmarshalBinary(ck.HashState) == nil && p.wire.Written() == wireOff
	if ok && p.img != nil {
		ok = len(ck.ImageHashState) > 0 && p.img.UnmarshalBinary(ck.ImageHashState) == nil && p.img.Written() == ck.Offset
	}
	if !ok {
		return false
	}
	p.off, p.lastCk, p.frameStart = wireOff, wireOff, wireOff
	p.validator = ck.Validator
	p.pd.resumed = true
	if p.img != nil {
		p.imgOff = ck.Offset
	}
	return true
}

// saveCheckpoint records a durable checkpoint; the slot is synced up to
// it. It runs on the write-behind goroutine, which owns the state while a
// transfer runs.
func (p *pipeline) saveCheckpoint(ck *ckRecord) error {
	p.pd.Offset, p.pd.HashState, p.pd.Validator = ck.Offset, ck.HashState, ck.Validator
	if p.img != nil {
		p.pd.WireOffset, p.pd.ImageHashState = ck.WireOffset, ck.ImageHashState
	}
	return p.st.save()
}

// reset starts the stream over from byte zero.
func (p *pipeline) reset() error {
	// The old stream is discarded, and with it any error it ended with.
	_ = p.stopFrame(errRestarted)
	if p.wb != nil {
		// Bytes of the old stream still queued are written before
		// anything of the new one; the state is the main goroutine's
		// again once they are.
		if p.cur != nil {
			p.wb.free <- p.cur
			p.cur = nil
		}
		if err := p.hs.flush(); err != nil {
			return err
		}
		p.light.clear()
	}
	p.validator = ""
	p.pd.resumed = false
	wire, err := verify.NewVerifier(p.t.Length, p.t.Hashes)
	if err != nil {
		return err
	}
	p.wire, p.off, p.lastCk, p.imgOff, p.frameStart, p.lastFrame = wire, 0, 0, 0, 0, 0
	p.frames = frameScanner{}
	p.pd.Offset, p.pd.HashState, p.pd.Validator = 0, nil, ""
	p.pd.WireOffset, p.pd.ImageHashState = 0, nil
	switch p.t.Custom.Compression {
	case "":
	case verify.CompressionZstd:
		d := p.t.Custom.Uncompressed
		if d == nil {
			return fmt.Errorf("target %s: compressed, but the uncompressed digest is missing: %w", p.t.Path, verify.ErrVerification)
		}
		sum, err := hex.DecodeString(d.SHA256)
		if err != nil {
			return fmt.Errorf("uncompressed digest: %w", err)
		}
		if p.img, err = verify.NewVerifier(d.Length, map[string][]byte{"sha256": sum}); err != nil {
			return err
		}
		if p.dec == nil {
			// Frame checksums (xxhash) are not checked: the image's
			// SHA-256 and the TUF hashes of the frames are.
			p.dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxFrameWindow),
				zstd.IgnoreChecksum(true))
			if err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("target %s: unsupported compression %q", p.t.Path, p.t.Custom.Compression)
	}
	return nil
}

var errRestarted = errors.New("transfer restarted")

// startFrame starts decoding a frame whose bytes the pipeline then writes
// into pw.
func (p *pipeline) startFrame() {
	pr := newFramePipe()
	p.pw, p.done = pr, make(chan error, 1)
	p.frameStart = p.off
	p.frames.limit, p.frames.limited = p.img.Length()-p.imgOff, true
	go func() {
		err := p.decodeFrame(pr)
		pr.closeRead(err)
		p.done <- err
	}()
}

// decodeFrame decodes one frame (or skips a skippable one) into buffers
// that go to the image verifier and the slot.
func (p *pipeline) decodeFrame(r io.Reader) error {
	if err := p.dec.Reset(r); err != nil {
		return fmt.Errorf("zstd decoder: %w", err)
	}
	for {
		buf := p.wb.buffer()
		n, rerr := fill(p.dec, buf[:cap(buf)])
		if n == 0 {
			p.wb.free <- buf
		} else {
			if err := p.hs.send(hsItem{buf: buf[:n], off: p.imgOff}); err != nil {
				return err
			}
			p.imgOff += int64(n)
		}
		switch {
		case rerr == io.EOF:
			return nil
		case errors.Is(rerr, errRestarted):
			return rerr
		case rerr != nil:
			// Bytes that do not decode are not the signed release: a
			// verification failure, counted as such.
			return fmt.Errorf("%w: target %s: zstd frame at byte %d: %w", verify.ErrVerification, p.t.Path, p.frameStart, rerr)
		}
	}
}

// fill reads into buf until it is full or r fails (io.EOF included).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// framePipe passes the compressed bytes of a frame to the decoder
// goroutine through a few buffers (unlike io.Pipe, whose writer waits for
// the reader): the sender hashes and scans the next bytes while the
// decoder decodes the ones before. Up to framePipeDepth buffers of at most
// framePipeBuf bytes are in flight.
type framePipe struct {
	ch    chan []byte
	rdone chan struct{}
	werr  error // set before ch is closed
	rerr  error // set before rdone is closed
	cur   []byte
	buf   []byte // the buffer cur is in, returned once read
}

const (
	framePipeDepth = 4
	framePipeBuf   = 256 << 10
)

var framePipeBufs = sync.Pool{New: func() any { b := make([]byte, framePipeBuf); return &b }}

func newFramePipe() *framePipe {
	return &framePipe{ch: make(chan []byte, framePipeDepth), rdone: make(chan struct{})}
}

// Write queues a copy of b; it fails with the reader's error once the
// reader is closed.
func (fp *framePipe) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		select {
		case <-fp.rdone:
			return n, fp.rerr
		default:
		}
		bp := framePipeBufs.Get().(*[]byte)
		k := copy(*bp, b[n:])
		select {
		case fp.ch <- (*bp)[:k]:
			n += k
		case <-fp.rdone:
			return n, fp.rerr
		}
	}
	return n, nil
}

// closeWrite ends the stream: the reader gets io.EOF after the bytes
// queued when err is nil; otherwise the bytes still queued are dropped and
// the reader gets err next, as from io.PipeWriter.CloseWithError. Called
// once.
func (fp *framePipe) closeWrite(err error) {
	if err == nil {
		err = io.EOF
	} else {
		for drained := false; !drained; {
			select {
			case <-fp.ch:
			default:
				drained = true
			}
		}
	}
	fp.werr = err
	close(fp.ch)
}

// Read is the decoder's end.
func (fp *framePipe) Read(p []byte) (int, error) {
	for len(fp.cur) == 0 {
		if fp.buf != nil {
			b := fp.buf[:cap(fp.buf)]
			framePipeBufs.Put(&b)
			fp.buf = nil
		}
		b, ok := <-fp.ch
		if !ok {
			return 0, fp.werr
		}
		fp.cur, fp.buf = b, b
	}
	n := copy(p, fp.cur)
	fp.cur = fp.cur[n:]
	return n, nil
}

// closeRead ends the reader: later writes fail with err (io.ErrClosedPipe
// when nil). Called once.
func (fp *framePipe) closeRead(err error) {
	if err == nil {
		err = io.ErrClosedPipe
	}
	fp.rerr = err
	close(fp.rdone)
}

// endFrame waits for the decoder to finish the frame.
func (p *pipeline) endFrame() error {
	p.pw.closeWrite(nil)
	err := <-p.done
	p.pw, p.done = nil, nil
	return err
}

// stopFrame abandons the frame in progress, if any, and returns the error
// its decoder ended with.
func (p *pipeline) stopFrame(cause error) error {
	if p.pw == nil {
		return nil
	}
	p.pw.closeWrite(cause)
	err := <-p.done
	p.pw, p.done = nil, nil
	return err
}

// resumeOffset is where the transfer continues.
func (p *pipeline) resumeOffset() int64 { return p.off }

// Write implements download.Sink.
func (p *pipeline) Write(b []byte) (int, error) {
	if p.img != nil {
		if err := p.writeFrames(b); err != nil {
			return 0, err
		}
	} else if err := p.writePlain(b); err != nil {
		return 0, err
	}
	p.reportProgress()
	return len(b), nil
}

// Buffer implements download.BufferSink. For a plain target it is the room
// left in the buffer being filled, which then goes to the hash stage and
// the slot as it is: the bytes are read from the network into the buffer
// they are written from, with no copy in between. Compressed bytes are
// scanned and passed to the decoder, from a buffer of the pipeline's own.
func (p *pipeline) Buffer() []byte {
	if p.img != nil {
		if p.rx == nil {
			p.rx = make([]byte, wbBufSize)
		}
		return p.rx
	}
	if p.cur == nil {
		p.cur, p.curOff = p.wb.buffer(), p.off
	}
	return p.cur[len(p.cur):cap(p.cur)]
}

// Commit implements download.BufferSink: the first n bytes of Buffer are
// delivered.
func (p *pipeline) Commit(n int) error {
	if p.img != nil {
		_, err := p.Write(p.rx[:n])
		return err
	}
	if err := p.takePlain(n); err != nil {
		return err
	}
	p.reportProgress()
	return nil
}

func (p *pipeline) reportProgress() {
	if p.progress != nil {
		p.progress(p.off, p.t.Length)
	}
}

// writePlain copies b into the buffers Buffer gives and takes them.
func (p *pipeline) writePlain(b []byte) error {
	for len(b) > 0 {
		n := copy(p.Buffer(), b)
		if err := p.takePlain(n); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// takePlain takes the n bytes placed after the end of the buffer being
// filled: it passes the buffer to the hash stage and the slot when it is
// full (with a light checkpoint), or when a durable checkpoint is due, at
// the first block boundary checkpointEvery bytes after the last.
func (p *pipeline) takePlain(n int) error {
	if room := p.t.Length - p.off; int64(n) > room {
		// The wire verifier, on the hash stage, would fail anyway:
		// refuse at once, without queueing the bytes.
		return fmt.Errorf("target %s: %w: stream longer than the expected %d bytes", p.t.Path, verify.ErrVerification, p.t.Length)
	}
	p.cur = p.cur[:len(p.cur)+n]
	p.off += int64(n)
	due := p.off-p.lastCk >= checkpointEvery && p.off%int64(p.blockSize) == 0
	if len(p.cur) == cap(p.cur) || due {
		return p.pushPlain(due)
	}
	return nil
}

func (p *pipeline) pushPlain(durable bool) error {
	it := hsItem{buf: p.cur, off: p.curOff}
	p.cur = nil
	if durable || p.light != nil {
		it.ck, it.durable = &ckRecord{Offset: p.off, Validator: p.validator}, durable
		if durable {
			p.lastCk = p.off
		}
	}
	return p.hs.send(it)
}

// writeFrames passes compressed bytes to the decoder frame by frame and
// checkpoints at frame boundaries.
func (p *pipeline) writeFrames(b []byte) error {
	for len(b) > 0 {
		if p.pw == nil {
			p.startFrame()
		}
		n, end, serr := p.frames.scan(b)
		if n > 0 {
			if _, err := p.wire.Write(b[:n]); err != nil {
				return err
			}
			if _, err := p.pw.Write(b[:n]); err != nil {
				return err // the decoder's error
			}
			p.off += int64(n)
			b = b[n:]
		}
		if serr != nil {
			return fmt.Errorf("%w: target %s: zstd stream at byte %d: %w", verify.ErrVerification, p.t.Path, p.off, serr)
		}
		if !end {
			if !p.warned && p.off-p.frameStart > 2*checkpointEvery {
				p.warned = true
				p.log.Info("compressed target has frames longer than the checkpoint interval: an interrupted transfer restarts from the start of the frame",
					"target", p.t.Path, "frame_offset", p.frameStart, "checkpoint_every", checkpointEvery)
			}
			continue
		}
		if err := p.endFrame(); err != nil {
			return err
		}
		p.lastFrame = p.off - p.frameStart
		// Checkpoint here unless the next boundary is expected within the
		// interval, so that checkpoints stay about checkpointEvery apart.
		if p.off-p.lastCk+p.lastFrame > checkpointEvery {
			if err := p.checkpoint(true); err != nil {
				return err
			}
		} else if p.light != nil {
			if err := p.checkpoint(false); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkpoint queues a checkpoint of a compressed transfer at a frame
// boundary, where the image so far is exactly the decoded complete frames:
// durable (the write-behind goroutine syncs the slot, then saves the state:
// the state never claims bytes the slot might have lost) or, if durable is
// false, light. The hash stage adds the image verifier's state once it has
// hashed the frames' bytes.
func (p *pipeline) checkpoint(durable bool) error {
	hs, err := p.wire.MarshalBinary()
	if err != nil {
		return err
	}
	ck := &ckRecord{Offset: p.imgOff, WireOffset: p.off, HashState: hs, Validator: p.validator}
	if durable {
		p.lastCk = p.off
	}
	return p.hs.send(hsItem{ck: ck, durable: durable})
}

// SetValidator implements download.ValidatorSink: the validator goes with
// the next checkpoints, so that a resume after a crash sends If-Range.
func (p *pipeline) SetValidator(v string) error {
	p.validator = v
	return nil
}

// resumeValidator is the validator of the bytes the transfer resumes after.
func (p *pipeline) resumeValidator() string { return p.validator }

// Restart implements download.Sink: the server will send everything again.
func (p *pipeline) Restart() error { return p.reset() }

// close ends the transfer: the decoder, if any, and then the write-behind
// goroutine, once everything received is in the slot. It returns the first
// error: a compressed stream that ends inside a frame is refused.
func (p *pipeline) close() error {
	err := p.closeDecoder()
	if p.cur != nil && len(p.cur) == 0 {
		// Asked for by Buffer, nothing read into it.
		p.wb.free <- p.cur
		p.cur = nil
	}
	if p.cur != nil {
		it := hsItem{buf: p.cur, off: p.curOff}
		p.cur = nil
		if serr := p.hs.send(it); err == nil {
			err = serr
		}
	}
	if werr := p.hs.close(); err == nil {
		err = werr
	}
	p.light.close()
	return err
}

// closeDecoder ends the decoder, if any, and returns its error: a
// compressed stream that ends inside a frame is refused.
func (p *pipeline) closeDecoder() error {
	if p.img == nil {
		return nil
	}
	defer p.dec.Close()
	if p.pw != nil || !p.frames.atBoundary() {
		_ = p.stopFrame(io.ErrUnexpectedEOF)
		return fmt.Errorf("%w: target %s: zstd stream ends inside a frame at byte %d", verify.ErrVerification, p.t.Path, p.off)
	}
	return nil
}

// verify checks every byte: the wire bytes against the TUF target and, for
// compressed targets, the image against the signed uncompressed digest.
// Verified, the checkpoint fields of compressed transfers are cleared.
func (p *pipeline) verify() error {
	if err := p.wire.Verify(); err != nil {
		return fmt.Errorf("target %s: %w", p.t.Path, err)
	}
	if p.img != nil {
		if err := p.img.Verify(); err != nil {
			return fmt.Errorf("target %s, decompressed: %w", p.t.Path, err)
		}
		p.pd.WireOffset, p.pd.ImageHashState = 0, nil
	}
	p.light.remove()
	return nil
}

// readAhead writes the first length bytes of r to w (a verifier), reading
// on a goroutine of its own up to readAheadBuffers buffers ahead, so that a
// read-back runs at the speed of the slot or of the hash, whichever is
// slower, not of both added. A reader that ends early ends the copy without
// error (the verifier reports the missing bytes); any other read error is
// returned.
func readAhead(ctx context.Context, w io.Writer, r io.ReaderAt, length int64) error {
	type chunk struct {
		b   []byte
		err error
	}
	full := make(chan chunk, readAheadBuffers)
	free := make(chan []byte, readAheadBuffers+1)
	for range readAheadBuffers + 1 {
		free <- nil // allocated on first use
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(full)
		for off := int64(0); off < length; {
			var b []byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			if b == nil {
				b = make([]byte, min(readAheadSize, length))
			}
			n, err := r.ReadAt(b[:min(int64(len(b)), length-off)], off)
			select {
			case full <- chunk{b[:n], err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
			off += int64(n)
		}
	}()
	for c := range full {
		if _, err := w.Write(c.b); err != nil {
			return err
		}
		if c.err == io.EOF {
			return nil
		}
		if c.err != nil {
			return c.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		free <- c.b[:cap(c.b)]
	}
	return nil
}

// The read-ahead of a read-back: 4 MiB in flight at most.
const (
	readAheadBuffers = 3
	readAheadSize    = 1 << 20
)

// frameScanner finds the boundaries of zstd frames (RFC 8878) in a stream
// fed in pieces of any size, reading only headers: the magic number, the
// frame header, the 3-byte block headers and the optional checksum. It
// holds a few bytes whatever the stream. Skippable frames are frames too.
// It refuses what a decoder would refuse anyway, earlier and more clearly:
// unknown magic, reserved bits, dictionaries, windows over maxFrameWindow,
// blocks over 128 KiB and a declared content size over limit.
type frameScanner struct {
	st   scanState
	hdr  [14]byte // the header field being collected
	nhdr int
	skip int64 // bytes left of a block, checksum or skippable frame
	desc byte  // frame header descriptor
	last bool  // the current block is the frame's last
	// limit is the largest content size a frame may declare, when
	// limited is set.
	limit   int64
	limited bool
}

type scanState uint8

const (
	scanMagic    scanState = iota // 4 bytes
	scanDesc                      // 1 byte: frame header descriptor
	scanHeader                    // window, dictionary id, content size
	scanBlock                     // 3-byte block header
	scanBody                      // block content
	scanChecksum                  // 4-byte content checksum
	scanSkipSize                  // 4-byte size of a skippable frame
	scanSkipBody                  // content of a skippable frame
)

const (
	zstdMagic      = 0xFD2FB528
	skippableMagic = 0x184D2A50 // the low 4 bits are free
	maxBlockSize   = 128 << 10
)

// atBoundary reports whether the bytes so far are whole frames.
func (s *frameScanner) atBoundary() bool { return s.st == scanMagic && s.nhdr == 0 }

// need is the size of the header field the state collects.
func (s *frameScanner) need() int {
	switch s.st {
	case scanMagic, scanSkipSize:
		return 4
	case scanDesc:
		return 1
	case scanBlock:
		return 3
	case scanHeader:
		n := [4]int{0, 1, 2, 4}[s.desc&3] // dictionary id
		single := s.desc&0x20 != 0
		if !single {
			n++ // window descriptor
		}
		switch fcs := s.desc >> 6; {
		case fcs == 0 && single:
			n++
		case fcs > 0:
			n += 1 << fcs
		}
		return n
	}
	return 0
}

// scan consumes bytes of b up to the end of the current frame at most. It
// returns how many it consumed and whether the frame ended there. After an
// error the scanner is unusable.
func (s *frameScanner) scan(b []byte) (n int, end bool, err error) {
	for n < len(b) {
		switch s.st {
		case scanBody, scanChecksum, scanSkipBody:
			k := int(min(s.skip, int64(len(b)-n)))
			n += k
			s.skip -= int64(k)
			if s.skip > 0 {
				return n, false, nil
			}
			if s.skipped() {
				return n, true, nil
			}
			continue
		}
		k := copy(s.hdr[s.nhdr:s.need()], b[n:])
		s.nhdr += k
		n += k
		if s.nhdr < s.need() {
			return n, false, nil
		}
		end, err := s.field()
		if err != nil || end {
			return n, end, err
		}
	}
	return n, false, nil
}

// skipped moves on after a block, checksum or skippable frame, and reports
// whether the frame ended.
func (s *frameScanner) skipped() bool {
	if s.st == scanBody && !s.last {
		s.st = scanBlock
		return false
	}
	if s.st == scanBody && s.desc&0x04 != 0 {
		return s.skipTo(scanChecksum, 4)
	}
	s.st, s.nhdr = scanMagic, 0
	return true
}

func (s *frameScanner) skipTo(st scanState, n int64) bool {
	s.st, s.skip = st, n
	if n == 0 {
		return s.skipped()
	}
	return false
}

// field interprets a complete header field.
func (s *frameScanner) field() (end bool, err error) {
	h := s.hdr[:s.nhdr]
	s.nhdr = 0
	switch s.st {
	case scanMagic:
		switch m := binary.LittleEndian.Uint32(h); {
		case m == zstdMagic:
			s.st = scanDesc
		case m&^0xF == skippableMagic:
			s.st = scanSkipSize
		default:
			return false, fmt.Errorf("not a zstd frame (magic %#08x)", m)
		}
	case scanSkipSize:
		return s.skipTo(scanSkipBody, int64(binary.LittleEndian.Uint32(h))), nil
	case scanDesc:
		s.desc = h[0]
		if s.desc&0x08 != 0 {
			return false, errors.New("zstd frame header: reserved bit set")
		}
		s.st = scanHeader
	case scanHeader:
		return false, s.frameHeader(h)
	case scanBlock:
		return s.blockHeader(h)
	}
	return false, nil
}

// frameHeader checks the fields of a frame header after its descriptor:
// window, dictionary id and content size.
func (s *frameScanner) frameHeader(h []byte) error {
	single := s.desc&0x20 != 0
	var window int64
	if !single {
		exp, mant := h[0]>>3, int64(h[0]&7)
		base := int64(1) << (10 + exp)
		window = base + base/8*mant
		h = h[1:]
	}
	dn := [4]int{0, 1, 2, 4}[s.desc&3]
	var dict uint64
	for i := dn - 1; i >= 0; i-- {
		dict = dict<<8 | uint64(h[i])
	}
	if dict != 0 {
		return fmt.Errorf("zstd frame needs dictionary %d, which the updater does not have", dict)
	}
	content, err := frameContentSize(h[dn:])
	if err != nil {
		return err
	}
	if single {
		window = content
	}
	if window > maxFrameWindow {
		return fmt.Errorf("zstd frame wants a %d-byte window, more than the %d allowed", window, maxFrameWindow)
	}
	if s.limited && content > s.limit {
		return fmt.Errorf("zstd frame declares %d bytes, more than the %d left of the image", content, s.limit)
	}
	s.st = scanBlock
	return nil
}

// frameContentSize reads the content size field of a frame header (of 0,
// 1, 2, 4 or 8 bytes); -1 when the frame does not declare it.
func frameContentSize(h []byte) (int64, error) {
	switch len(h) {
	case 1:
		return int64(h[0]), nil
	case 2:
		return int64(binary.LittleEndian.Uint16(h)) + 256, nil
	case 4:
		return int64(binary.LittleEndian.Uint32(h)), nil
	case 8:
		v := binary.LittleEndian.Uint64(h)
		if v > math.MaxInt64 {
			return 0, fmt.Errorf("zstd frame declares %d bytes", v)
		}
		return int64(v), nil
	}
	return -1, nil
}

// blockHeader reads a block header and skips to the block's end.
func (s *frameScanner) blockHeader(h []byte) (end bool, err error) {
	v := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
	s.last = v&1 != 0
	size := int64(v >> 3)
	typ := (v >> 1) & 3
	if typ == 3 {
		return false, errors.New("zstd block of reserved type")
	}
	if size > maxBlockSize {
		return false, fmt.Errorf("zstd block of %d bytes, more than %d", size, maxBlockSize)
	}
	if typ == 1 { // RLE: one byte repeated size times
		size = 1
	}
	return s.skipTo(scanBody, size), nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// relativeURL returns target's path relative to base, so that it can be
// fetched from a mirror.
func relativeURL(base, target string) string {
	b, err1 := url.Parse(base)
	t, err2 := url.Parse(target)
	if err1 != nil || err2 != nil {
		return target
	}
	return strings.TrimPrefix(t.Path, strings.TrimSuffix(b.Path, "/")+"/")
}

func joinURL(base, rel string) string {
	return strings.TrimSuffix(base, "/") + "/" + strings.TrimPrefix(rel, "/")
}
