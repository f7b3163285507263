package updater

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/internal/durable"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// Transfer methods of a pending install, cheapest first. Persisted.
const (
	methodPatch    = "patch"    // a static patch from the running image
	methodAdaptive = "adaptive" // chunks the device has, the rest fetched
	methodFull     = "full"     // the whole image
)

// ChunkStoreDir is where, under the targets base URL, the chunk store of
// adaptive deltas lives when a full image is compressed (so byte ranges of
// it cannot serve chunks): "<TargetsURL>/chunks/<hh>/<hash>.zst"
// (delta.StoreDir: the layout is defined once, in package delta, for the
// publisher and the devices). Chunk files need no TUF entry of their own:
// each is checked against the hash in the signed chunk index, and the
// whole image against its TUF target.
const ChunkStoreDir = delta.StoreDir

// errLocal marks failures of the device itself (a slot write, a state
// save) during a delta: they are not a reason to fall back to another
// method, which would fail the same way.
var errLocal = errors.New("device I/O")

// maxIndexLength bounds a chunk index kept in memory: 64 MiB indexes
// images of several hundred GiB with 4 KiB blocks.
const maxIndexLength = 64 << 20

// transferBest writes the image of t into slot by the method expected to
// fetch the fewest bytes, and falls back to the next one on any failure;
// the full image is the last, and the only one when nothing is expected
// to cost less (see deltaMethods). Whatever the method, the result is
// verified against the image's signed digest before Install goes on.
func (u *Updater) transferBest(ctx context.Context, c *Component, slot slots.Slot, t verify.Target, pd *pending, bs slots.BootStatus) error {
	pd.resumed = false
	for _, m := range u.deltaMethods(ctx, c, slot, t, pd, bs) {
		if done, err := u.tryMethod(ctx, c, pd, m); done {
			return err
		}
	}
	if pd.Method != methodFull {
		pd.Method = methodFull
		pd.resetTransfer()
		if err := u.st.save(); err != nil {
			return err
		}
	}
	return u.transfer(ctx, c, slot, t, pd)
}

// deltaMethod is a way to write the new image other than fetching it in
// full, with the bytes it is expected to fetch.
type deltaMethod struct {
	name     string
	expected int64
	run      func() error
}

// deltaMethods returns the delta methods worth trying for t, cheapest
// first, from sizes signed in the targets metadata: a static patch costs
// its length; an adaptive delta its index's length plus the missing
// chunks, which only the index tells. Before fetching the index, the
// missing chunks are taken to cost at least what a patch from the
// running image costs (they carry the same new content, less well
// compressed: 1.1-3x the patch on every pair measured), so a patch comes
// first; once the index is fetched, transferAdaptive refines the
// estimate and gives up (errCostly) when it reaches the full image's.
// A method expected to cost as much as the full image is left out.
func (u *Updater) deltaMethods(ctx context.Context, c *Component, slot slots.Slot, t verify.Target, pd *pending, bs slots.BootStatus) []deltaMethod {
	running := u.slotByName(c, bs.Booted)
	if _, ok := t.ImageDigest(); !ok || running == nil {
		return nil
	}
	full := t.Length
	var ms []deltaMethod
	var patchLen int64
	base := u.st.component(c.Name).Slots[running.Name()]
	if base.Complete && base.Image != "" {
		if p, ok := verify.SelectPatch(u.targets, t, base.Image, func(f string) bool {
			return f == delta.PatchFormat || f == delta.PatchFormatV2 || f == delta.PatchFormatV1
		}); ok {
			patchLen = p.Length
			ms = append(ms, deltaMethod{methodPatch, p.Length, func() error { return u.transferPatch(ctx, slot, running, t, p, pd) }})
		}
	}
	if ix, ok := verify.SelectChunkIndex(u.targets, t, func(f string) bool { return f == delta.IndexFormat }); ok {
		ms = append(ms, deltaMethod{methodAdaptive, ix.Length + patchLen, func() error {
			return u.transferAdaptive(ctx, c, slot, running, t, ix, pd, full)
		}})
	}
	slices.SortStableFunc(ms, func(a, b deltaMethod) int { return cmp.Compare(a.expected, b.expected) })
	kept := ms[:0]
	for _, m := range ms {
		if m.expected < full || pd.Method == m.name {
			kept = append(kept, m)
			continue
		}
		u.log.Info("delta not worth it", "component", c.Name, "method", m.name, "expected_bytes", m.expected, "full_bytes", full)
	}
	return kept
}

// tryMethod runs m unless the pending install already uses another
// method. It reports done when the install should stop here: m worked,
// or failed in a way the next method would too (the device itself, an
// interruption). Otherwise m's failure is reported and the next method
// gets its turn.
func (u *Updater) tryMethod(ctx context.Context, c *Component, pd *pending, m deltaMethod) (done bool, err error) {
	if pd.Method != "" && pd.Method != m.name {
		return false, nil
	}
	if pd.Method != m.name {
		pd.Method = m.name
		pd.resetTransfer()
		if err := u.st.save(); err != nil {
			return true, err
		}
	}
	u.log.Info("transfer", "component", c.Name, "method", m.name, "expected_bytes", m.expected)
	err = m.run()
	if err == nil {
		return true, nil
	}
	if ctx.Err() != nil || errors.Is(err, errLocal) || errors.Is(err, errInterrupted) {
		// Interrupted, or the device itself failed (slot, state):
		// not the delta's fault. Resume this method next time.
		return true, err
	}
	if errors.Is(err, errCostly) {
		u.log.Info("delta not worth it", "component", c.Name, "method", m.name, "err", err)
	} else {
		u.log.Warn("delta failed, falling back", "component", c.Name, "method", m.name, "err", err)
		u.emit(ErrorEvent{Component: c.Name, Op: m.name, Err: err})
	}
	pd.Method = ""
	return false, nil
}

// errCostly is returned by a delta method that finds, once it knows more,
// that it would fetch at least as much as the full image.
var errCostly = errors.New("expected to fetch at least the full image's bytes")

func (u *Updater) slotByName(c *Component, name string) slots.Slot {
	for _, s := range c.Slots {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// imageWriter writes an image in order into a slot, hashing it, with a
// durable checkpoint every checkpointEvery bytes.
type imageWriter struct {
	w      slots.Writer
	v      *verify.Verifier
	off    int64
	lastCk int64
	ck     func(off int64, state []byte) error // nil: no checkpoints
}

func (iw *imageWriter) Write(b []byte) (int, error) {
	if _, err := iw.v.Write(b); err != nil {
		return 0, err
	}
	if _, err := iw.w.WriteAt(b, iw.off); err != nil {
		return 0, fmt.Errorf("%w: write slot: %w", errLocal, err)
	}
	iw.off += int64(len(b))
	if iw.ck != nil && iw.off-iw.lastCk >= checkpointEvery {
		if err := iw.w.Sync(); err != nil {
			return 0, fmt.Errorf("%w: sync slot: %w", errLocal, err)
		}
		state, err := iw.v.MarshalBinary()
		if err != nil {
			return 0, err
		}
		if err := iw.ck(iw.off, state); err != nil {
			return 0, fmt.Errorf("%w: %w", errLocal, err)
		}
		iw.lastCk = iw.off
	}
	return len(b), nil
}

func imageVerifier(t verify.Target) (*verify.Verifier, int64, error) {
	d, ok := t.ImageDigest()
	if !ok {
		return nil, 0, fmt.Errorf("target %s: no image digest", t.Path)
	}
	v, err := verify.NewDigestVerifier(d)
	return v, d.Length, err
}

// transferPatch applies the static patch p to the running slot's image,
// streaming: network → patch verifier → patch decoder → image verifier →
// slot. A patch of format delta.PatchFormat (or V2) is a sequence of frames that
// each decode on their own: at frame boundaries the slot is synced and a
// checkpoint saved (patch offset, image offset, both hash states and the
// decoder's checkpoint), and an interrupted install resumes there with a
// Range request. A version 1 patch starts again from its first byte.
func (u *Updater) transferPatch(ctx context.Context, slot, running slots.Slot, t, p verify.Target, pd *pending) error {
	s := &patchSink{u: u, t: t, p: p, pd: pd}
	if err := s.resetVerifiers(); err != nil {
		return err
	}
	if err := s.resumeCheckpoint(); err != nil {
		return err
	}
	base, err := running.Reader(ctx)
	if err != nil {
		return fmt.Errorf("patch base: %w", err)
	}
	defer base.Close()
	s.base = base
	w, err := slot.Writer(ctx, s.length)
	if err != nil {
		return fmt.Errorf("open slot %s: %w", slot.Name(), err)
	}
	defer w.Close()
	s.w = w
	req := download.Request{URLs: u.mirrorsOf(p.URL), Length: p.Length}
	if s.from != nil {
		req.Offset, req.Validator = s.from.PatchOffset, pd.Validator
	}
	s.start()
	_, ferr := u.fetch(ctx, req, s)
	if err := s.fetchError(ctx, ferr, s.finish(ferr)); err != nil {
		return err
	}
	if err := s.wire.Verify(); err != nil {
		return fmt.Errorf("patch %s: %w", p.Path, err)
	}
	if err := s.img.Verify(); err != nil {
		return fmt.Errorf("patched image: %w", err)
	}
	if err := w.Sync(); err != nil {
		return fmt.Errorf("%w: sync slot: %w", errLocal, err)
	}
	pd.WireOffset, pd.ImageHashState, pd.PatchCheckpoint = 0, nil, nil
	return nil
}

// resumeCheckpoint sets the sink to resume after the checkpoint of an
// interrupted patch transfer, if the state has one: patch and image
// offsets, both hash states and the decoder's checkpoint, all consistent.
// An unusable checkpoint is dropped, and the patch starts over.
func (s *patchSink) resumeCheckpoint() error {
	pd, u := s.pd, s.u
	if pd.WireOffset == 0 {
		return nil
	}
	var ck delta.PatchCheckpoint
	ok := ck.UnmarshalBinary(pd.PatchCheckpoint) == nil && ck.PatchOffset == pd.WireOffset && ck.OutputOffset == pd.Offset &&
		s.wire.UnmarshalBinary(pd.HashState) == nil && s.wire.Written() == pd.WireOffset &&
		s.img.UnmarshalBinary(pd.ImageHashState) == nil && s.img.Written() == pd.Offset
	if ok {
		s.from, s.lastCk, s.lastBoundary = &ck, ck.PatchOffset, ck.PatchOffset
		pd.resumed = true
		u.log.Info("resuming patch", "patch", s.p.Path, "patch_offset", ck.PatchOffset, "image_offset", ck.OutputOffset)
		return nil
	}
	// An unusable checkpoint costs a re-download, nothing else.
	u.log.Warn("patch checkpoint unusable; starting over", "patch", s.p.Path, "offset", pd.WireOffset)
	if err := s.resetVerifiers(); err != nil {
		return err
	}
	pd.resetTransfer()
	if err := u.st.save(); err != nil {
		return fmt.Errorf("%w: %w", errLocal, err)
	}
	return nil
}

// fetchError is the error of a patch transfer whose fetch ended with ferr
// and whose decoder, slot or state ended with perr (either may be nil).
func (s *patchSink) fetchError(ctx context.Context, ferr, perr error) error {
	switch {
	case ferr != nil && perr != nil && errors.Is(ferr, download.ErrSink):
		// The decoder (or the slot, or a state save) failed; the fetch
		// ended because of it.
		return fmt.Errorf("patch %s: %w", s.p.Path, perr)
	case ferr != nil:
		var se *download.StatusError
		if s.progressed && ctx.Err() == nil && !errors.As(ferr, &se) && !errors.Is(ferr, download.ErrLength) && !errors.Is(ferr, download.ErrSink) {
			// The link broke after this run saved a checkpoint: resume
			// the patch next time rather than fetch something bigger.
			return fmt.Errorf("patch %s: %w: %w", s.p.Path, errInterrupted, ferr)
		}
		return fmt.Errorf("patch %s: %w", s.p.Path, ferr)
	case perr != nil:
		return fmt.Errorf("patch %s: %w", s.p.Path, perr)
	}
	return nil
}

// errInterrupted marks a transfer cut off by the network after it made
// durable progress: the same method resumes next time.
var errInterrupted = errors.New("transfer interrupted")

// patchSink is the download sink of a patch: it passes the patch bytes to
// a decoder goroutine (delta.ApplyPatch) through a pipe, and saves the
// checkpoints the decoder reports. The decoder reads the pipe through the
// wire verifier and never reads past a frame before reporting its end, so
// at a checkpoint both verifiers have seen exactly the bytes it names.
type patchSink struct {
	u      *Updater
	t, p   verify.Target
	pd     *pending
	base   io.ReaderAt
	w      slots.Writer
	length int64 // of the image

	wire, img *verify.Verifier
	from      *delta.PatchCheckpoint // where this run of the decoder starts

	pw   *io.PipeWriter
	done chan error

	// mu guards pd and the state file: checkpoints are saved on the
	// decoder's goroutine, validators set on the fetching one.
	mu           sync.Mutex
	lastCk       int64 // patch offset of the last checkpoint saved
	lastBoundary int64 // patch offset of the last frame boundary
	progressed   bool  // a checkpoint was saved since this transfer (re)started
}

func (s *patchSink) resetVerifiers() error {
	img, length, err := imageVerifier(s.t)
	if err != nil {
		return err
	}
	wire, err := s.p.Verifier()
	if err != nil {
		return err
	}
	s.img, s.length, s.wire = img, length, wire
	s.from, s.lastCk, s.lastBoundary = nil, 0, 0
	s.pd.resumed = false
	return nil
}

// start runs the decoder from s.from (or the patch's start).
func (s *patchSink) start() {
	pr, pw := io.Pipe()
	s.pw, s.done = pw, make(chan error, 1)
	var off int64
	if s.from != nil {
		off = s.from.OutputOffset
	}
	in, out, opts := io.TeeReader(pr, s.wire), &imageWriter{w: s.w, v: s.img, off: off}, delta.PatchOptions{From: s.from, Checkpoint: s.checkpoint}
	go func() {
		err := delta.ApplyPatch(s.base, in, out, opts)
		pr.CloseWithError(err)
		s.done <- err
	}()
}

// finish ends the patch stream (with the fetch's error, if any) and
// returns the decoder's error; nil if no decoder runs.
func (s *patchSink) finish(ferr error) error {
	if s.done == nil {
		return nil
	}
	if ferr != nil {
		s.pw.CloseWithError(ferr)
	} else {
		s.pw.Close()
	}
	err := <-s.done
	s.pw, s.done = nil, nil
	return err
}

// checkpoint runs on the decoder's goroutine at every frame boundary. Like
// the pipeline, it saves one when the next boundary is not expected within
// the checkpoint interval: slot synced first, so that the state never
// claims bytes the slot might have lost.
func (s *patchSink) checkpoint(c delta.PatchCheckpoint) error {
	frame := c.PatchOffset - s.lastBoundary
	s.lastBoundary = c.PatchOffset
	if c.PatchOffset-s.lastCk+frame <= checkpointEvery {
		return nil
	}
	if s.wire.Written() != c.PatchOffset || s.img.Written() != c.OutputOffset {
		return fmt.Errorf("patch checkpoint at %d, %d: verifiers at %d, %d", c.PatchOffset, c.OutputOffset, s.wire.Written(), s.img.Written())
	}
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("%w: sync slot: %w", errLocal, err)
	}
	ws, err := s.wire.MarshalBinary()
	if err != nil {
		return err
	}
	is, err := s.img.MarshalBinary()
	if err != nil {
		return err
	}
	cb, err := c.MarshalBinary()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pd := s.pd
	pd.Offset, pd.WireOffset, pd.HashState, pd.ImageHashState, pd.PatchCheckpoint = c.OutputOffset, c.PatchOffset, ws, is, cb
	if err := s.u.st.save(); err != nil {
		return fmt.Errorf("%w: %w", errLocal, err)
	}
	s.lastCk, s.progressed = c.PatchOffset, true
	return nil
}

// Write implements download.Sink.
func (s *patchSink) Write(b []byte) (int, error) {
	if s.pw == nil {
		return 0, errRestarted // a failed Restart left no decoder
	}
	return s.pw.Write(b)
}

// SetValidator implements download.ValidatorSink: saved with the next
// checkpoint, so that a resume sends If-Range.
func (s *patchSink) SetValidator(v string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pd.Validator = v
	return nil
}

// Restart implements download.Sink: the server sends the patch again from
// its first byte (it ignored Range, or the file changed). The decoder
// starts over, and the checkpoint is dropped first.
func (s *patchSink) Restart() error {
	_ = s.finish(errRestarted)
	if err := s.resetVerifiers(); err != nil {
		return err
	}
	s.mu.Lock()
	s.pd.resetTransfer()
	s.progressed = false
	err := s.u.st.save()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", errLocal, err)
	}
	s.start()
	return nil
}

// transferAdaptive builds the image from chunks the device holds — in the
// running slot and in the slot being written — and fetches the others:
// from the chunk pack when published, else byte ranges of the
// uncompressed full image, or the chunk store when the image is
// compressed. Once the index is fetched and the plan made, it gives up
// with errCostly when the missing chunks are expected to cost full bytes
// or more: their pack frames, from the pack table, or else
// adaptiveEstimate. It checkpoints like a full transfer
// and resumes at the output offset.
func (u *Updater) transferAdaptive(ctx context.Context, c *Component, slot, running slots.Slot, t, ixT verify.Target, pd *pending, full int64) error {
	ixBytes, ix, err := u.fetchIndex(ctx, ixT)
	if err != nil {
		return err
	}
	imgV, length, err := imageVerifier(t)
	if err != nil {
		return err
	}
	if ix.Length() != length {
		return fmt.Errorf("chunk index %s describes %d bytes, the image has %d", ixT.Path, ix.Length(), length)
	}
	bases, err := u.adaptiveBases(ctx, c, slot, running, ix)
	if err != nil {
		return err
	}
	defer bases.close()
	plan, err := delta.NewPlan(ix, bases.bases, delta.PlanOptions{})
	if err != nil {
		return err
	}
	if plan, imgV, err = resumePlan(plan, imgV, t, pd); err != nil {
		return err
	}
	ps, est, err := u.priceAdaptive(ctx, t, ixT, plan, length)
	if err != nil {
		return err
	}
	u.log.Info("adaptive delta", "component", c.Name, "target", t.Path, "expected_bytes", est, "stats", fmt.Sprintf("%+v", plan.Stats()))
	if est >= full {
		return fmt.Errorf("%w: adaptive delta %d bytes, full image %d", errCostly, est, full)
	}
	w, err := slot.Writer(ctx, length)
	if err != nil {
		return fmt.Errorf("open slot %s: %w", slot.Name(), err)
	}
	defer w.Close()
	out := &imageWriter{w: w, v: imgV, off: plan.Start(), lastCk: plan.Start(), ck: func(off int64, state []byte) error {
		pd.Offset, pd.HashState = off, state
		return u.st.save()
	}}
	// Repeated chunks are copied from what is written, read back.
	var written io.ReaderAt
	if sr, err := slot.Reader(ctx); err == nil {
		defer sr.Close()
		written = sr
	}
	if err := u.applyAdaptive(ctx, c, t, ixT, ps, plan, bases.readers, written, out); err != nil {
		return err
	}
	if err := imgV.Verify(); err != nil {
		return fmt.Errorf("image built from chunks: %w", err)
	}
	if err := w.Sync(); err != nil {
		return err
	}
	return u.saveIndex(t, ixBytes)
}

// priceAdaptive returns the chunk pack published for the index ixT (nil
// when there is none to use) and the bytes plan is expected to fetch.
// With the pack's table they are known: the frames of the missing
// chunks, compressed one by one (a whole image compresses better, so
// adaptiveEstimate's ratio can be under the truth). It fails only when
// ctx is done.
func (u *Updater) priceAdaptive(ctx context.Context, t, ixT verify.Target, plan *delta.Plan, length int64) (*delta.PackSource, int64, error) {
	ps, err := u.packSource(ctx, ixT, plan.Target())
	if err == nil {
		var n int64
		if n, err = plan.PackBytes(ps.Table); err == nil {
			return ps, n, nil
		}
	}
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	u.log.Info("no chunk pack", "index", ixT.Path, "err", err)
	return nil, adaptiveEstimate(plan.Stats(), t, length), nil
}

// adaptiveEstimate returns the bytes an adaptive delta planned as st is
// expected to fetch: for an uncompressed image, the byte ranges planned
// (a chunk pack, when there is one, costs less); for a compressed one,
// the missing chunks' bytes compressed as well as the full image target
// is (t's signed length over the image's).
func adaptiveEstimate(st delta.PlanStats, t verify.Target, imageLength int64) int64 {
	if t.Custom.Compression == "" || imageLength <= 0 || t.Length >= imageLength {
		return max(st.RangeBytes, st.FetchBytes)
	}
	return int64(float64(st.FetchBytes) * float64(t.Length) / float64(imageLength))
}

// resumePlan resumes plan at the pending install's checkpoint when its
// hash state is usable, and otherwise starts over (fresh verifier).
func resumePlan(plan *delta.Plan, imgV *verify.Verifier, t verify.Target, pd *pending) (*delta.Plan, *verify.Verifier, error) {
	if pd.Offset <= 0 || len(pd.HashState) == 0 {
		return plan, imgV, nil
	}
	if err := imgV.UnmarshalBinary(pd.HashState); err == nil && imgV.Written() == pd.Offset {
		q, err := plan.From(pd.Offset)
		// The slot's bytes before the offset are trusted from the
		// checkpoint: Install reads them back before arming.
		pd.resumed = err == nil
		return q, imgV, err
	}
	pd.Offset, pd.HashState = 0, nil
	fresh, _, err := imageVerifier(t)
	return plan, fresh, err
}

// adaptiveBaseSet is the bases of an adaptive delta and their readers,
// open until close.
type adaptiveBaseSet struct {
	bases   []delta.Base
	readers []io.ReaderAt
	closers []io.Closer
}

func (b *adaptiveBaseSet) close() {
	for _, c := range b.closers {
		c.Close()
	}
}

// adaptiveBases opens the bases of an adaptive delta: the running slot
// (its stored index, or one computed once over it), and the slot being
// written when it still holds the release before, used in place.
func (u *Updater) adaptiveBases(ctx context.Context, c *Component, slot, running slots.Slot, ix *delta.Index) (*adaptiveBaseSet, error) {
	cs := u.st.component(c.Name)
	rr, err := running.Reader(ctx)
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", running.Name(), err)
	}
	set := &adaptiveBaseSet{closers: []io.Closer{rr}}
	rc := cs.Slots[running.Name()]
	rlen := rr.Size()
	if rc.Complete && rc.Length > 0 {
		rlen = rc.Length
	}
	rix, err := u.baseIndex(rc.Image, io.NewSectionReader(rr, 0, rlen), ix.Options())
	if err != nil {
		set.close()
		return nil, fmt.Errorf("index of slot %s: %w", running.Name(), err)
	}
	set.bases = append(set.bases, delta.Base{Index: rix})
	set.readers = append(set.readers, rr)
	if was := cs.Slots[slot.Name()].Was; was != "" {
		if pix, err := u.loadIndex(was); err == nil && sameOptions(pix, ix) {
			if sr, err := slot.Reader(ctx); err == nil {
				set.closers = append(set.closers, sr)
				set.bases = append(set.bases, delta.Base{Index: pix, InPlace: true})
				set.readers = append(set.readers, sr)
			}
		}
	}
	return set, nil
}

// applyAdaptive carries out plan into out: from the chunk pack ps first,
// when published (few requests, compressed bytes); without one, or on any
// failure of it (corrupt, no byte ranges), on from the last verified byte
// with the chunk store (compressed image) or byte ranges of the image.
func (u *Updater) applyAdaptive(ctx context.Context, c *Component, t, ixT verify.Target, ps *delta.PackSource, plan *delta.Plan, readers []io.ReaderAt, written io.ReaderAt, out *imageWriter) error {
	if ps != nil {
		err := delta.Apply(ctx, plan, readers, delta.Source{Pack: ps, Written: written}, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, errLocal) {
			return err
		}
		u.log.Warn("chunk pack failed, falling back", "index", ixT.Path, "offset", out.off, "err", err)
		u.emit(ErrorEvent{Component: c.Name, Op: methodAdaptive, Err: err})
		if plan, err = plan.From(out.off); err != nil {
			return err
		}
	}
	src := delta.Source{Written: written}
	if t.Custom.Compression == "" {
		src.Range = u.rangeFunc(t.URL)
	} else {
		src.Store = u.storeFunc(joinURL(u.cfg.TargetsURL, ChunkStoreDir))
	}
	return delta.Apply(ctx, plan, readers, src, out)
}

// fetchIndex fetches the chunk index ixT, verified against its signed
// digest, and parses it. An index published zstd-compressed is
// decompressed (at most maxIndexLength bytes) and checked against its
// signed uncompressed digest; b is the uncompressed index.
func (u *Updater) fetchIndex(ctx context.Context, ixT verify.Target) (b []byte, ix *delta.Index, err error) {
	b, err = u.fetchSmall(ctx, ixT, maxIndexLength)
	if err != nil {
		return nil, nil, fmt.Errorf("chunk index: %w", err)
	}
	switch ixT.Custom.Compression {
	case "":
	case verify.CompressionZstd:
		if b, err = decompressIndex(b, *ixT.Custom.Uncompressed); err != nil {
			return nil, nil, fmt.Errorf("chunk index %s: %w", ixT.Path, err)
		}
	default:
		return nil, nil, fmt.Errorf("chunk index %s: unknown compression %q", ixT.Path, ixT.Custom.Compression)
	}
	ix, err = delta.ParseIndex(b)
	if err != nil {
		return nil, nil, fmt.Errorf("chunk index %s: %w", ixT.Path, err)
	}
	return b, ix, nil
}

// decompressIndex decompresses a zstd chunk index whose uncompressed
// digest is want, and checks it.
func decompressIndex(z []byte, want verify.Digest) ([]byte, error) {
	if want.Length > maxIndexLength {
		return nil, fmt.Errorf("%d bytes uncompressed, more than %d", want.Length, maxIndexLength)
	}
	// Bounded by the limit (which also caps the window), checked after.
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxIndexLength))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, err := d.DecodeAll(z, make([]byte, 0, want.Length))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if sum := sha256.Sum256(b); int64(len(b)) != want.Length || !strings.EqualFold(hex.EncodeToString(sum[:]), want.SHA256) {
		return nil, fmt.Errorf("%w: uncompressed index does not match its signed digest", verify.ErrVerification)
	}
	return b, nil
}

// PackDir is where, under the chunk store, the chunk pack of a chunk
// index and its table live: "<TargetsURL>/chunks/packs/<index
// sha256>.pack" and ".tab" (delta.PackDir, delta.PackPaths). They need no
// TUF entry: each chunk is checked against the signed index, the image
// against its target.
const PackDir = delta.PackDir

// packSource fetches and parses the table of the chunk pack published
// for the chunk index ixT (parsed: ix), and returns the pack as a source.
func (u *Updater) packSource(ctx context.Context, ixT verify.Target, ix *delta.Index) (*delta.PackSource, error) {
	sum := ixT.SHA256()
	if sum == "" {
		return nil, errors.New("index has no sha256")
	}
	store := joinURL(u.cfg.TargetsURL, ChunkStoreDir)
	// A table takes at most a few bytes per chunk; far more is not one.
	limit := 16 + 10*int64(len(ix.Chunks()))
	packRel, tabRel := delta.PackPaths(sum)
	b, err := u.fetchWhole(ctx, joinURL(store, tabRel), limit)
	if err != nil {
		return nil, err
	}
	tab, err := delta.ParsePackTable(b)
	if err != nil {
		return nil, err
	}
	return &delta.PackSource{Table: tab, Range: u.rangeFunc(joinURL(store, packRel))}, nil
}

func sameOptions(a, b *delta.Index) bool { return a.Options() == b.Options() }

// fetchSmall fetches a small target into memory, verified.
func (u *Updater) fetchSmall(ctx context.Context, t verify.Target, limit int64) ([]byte, error) {
	if t.Length > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", t.Path, t.Length, limit)
	}
	v, err := t.Verifier()
	if err != nil {
		return nil, err
	}
	sink := &bufSink{t: t, v: v}
	if _, err := u.fetch(ctx, download.Request{URLs: u.mirrorsOf(t.URL), Length: t.Length}, sink); err != nil {
		return nil, err
	}
	if err := v.Verify(); err != nil {
		return nil, fmt.Errorf("%s: %w", t.Path, err)
	}
	return sink.buf.Bytes(), nil
}

type bufSink struct {
	t   verify.Target
	v   *verify.Verifier
	buf bytes.Buffer
}

func (s *bufSink) Write(b []byte) (int, error) {
	if _, err := s.v.Write(b); err != nil {
		return 0, err
	}
	return s.buf.Write(b)
}

func (s *bufSink) Restart() error {
	s.buf.Reset()
	v, err := s.t.Verifier()
	if err != nil {
		return err
	}
	*s.v = *v
	return nil
}

// Every byte the updater fetches goes through the download client (u.dl),
// under one set of rules: stall and low-speed limits, Pause, rate limit,
// retries, the targets mirrors. The helpers below adapt it to what each
// consumer takes; file:// URLs (a local repository) are read directly.

// mirrorsOf returns url, a file under TargetsURL, followed by the same
// file under each of the TargetsMirrors.
func (u *Updater) mirrorsOf(url string) []string {
	urls := []string{url}
	for _, m := range u.cfg.TargetsMirrors {
		urls = append(urls, joinURL(m, relativeURL(u.cfg.TargetsURL, url)))
	}
	return urls
}

// fetch is Fetch over HTTP, or a file read for file:// URLs.
func (u *Updater) fetch(ctx context.Context, req download.Request, sink download.Sink) (download.Result, error) {
	if isFileURL(req.URLs[0]) {
		return fetchFile(ctx, req, sink)
	}
	return u.dl.Fetch(ctx, req, sink, nil)
}

// fetchWhole fetches a small file that has no TUF entry of its own (a
// chunk file, a pack table: the caller checks it against signed hashes)
// into memory, at most limit bytes.
func (u *Updater) fetchWhole(ctx context.Context, url string, limit int64) ([]byte, error) {
	if !isFileURL(url) {
		return u.dl.Get(ctx, u.mirrorsOf(url), limit)
	}
	p, err := filePath(url)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s: more than %d bytes", p, limit)
	}
	return b, err
}

// rangeFunc serves byte ranges of the file at url (an uncompressed image,
// a chunk pack) for delta.Apply, through the download client: a server
// that ignores Range yields delta.ErrNoRange.
func (u *Updater) rangeFunc(url string) delta.RangeFunc {
	if isFileURL(url) {
		return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
			p, err := filePath(url)
			if err != nil {
				return nil, err
			}
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			return struct {
				io.Reader
				io.Closer
			}{io.NewSectionReader(f, off, n), f}, nil
		}
	}
	urls := u.mirrorsOf(url)
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		rc, err := u.dl.Range(ctx, urls, off, n)
		if errors.Is(err, download.ErrNoRange) {
			err = fmt.Errorf("%w: %w", delta.ErrNoRange, err)
		}
		return rc, err
	}
}

// maxStoreFile bounds a file of the chunk store: a compressed chunk is at
// most a little larger than the largest chunk.
const maxStoreFile = delta.MaxChunkSize + delta.MaxChunkSize/64 + 1024

// storeFunc serves the files of the chunk store at base for delta.Apply,
// each fetched whole through the download client.
func (u *Updater) storeFunc(base string) delta.StoreFunc {
	return func(ctx context.Context, name string) (io.ReadCloser, error) {
		b, err := u.fetchWhole(ctx, joinURL(base, name), maxStoreFile)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
}

// Chunk indexes of slot contents are kept in StateDir/index/<image sha256>,
// so that the next adaptive delta needs no pass over the slot.

func (u *Updater) indexPath(image string) string {
	return filepath.Join(u.cfg.StateDir, "index", image)
}

func (u *Updater) loadIndex(image string) (*delta.Index, error) {
	if image == "" {
		return nil, os.ErrNotExist
	}
	b, err := os.ReadFile(u.indexPath(image))
	if err != nil {
		return nil, err
	}
	return delta.ParseIndex(b)
}

func (u *Updater) saveIndex(t verify.Target, b []byte) error {
	d, ok := t.ImageDigest()
	if !ok {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(u.cfg.StateDir, "index"), 0o700); err != nil {
		return err
	}
	return durable.WriteFile(u.indexPath(d.SHA256), b, 0o600)
}

// baseIndex returns the index of a slot's image: the stored one when it
// was cut the same way, else one computed over the slot now (once: it is
// stored for next time when the image is known).
func (u *Updater) baseIndex(image string, r io.Reader, opts delta.IndexOptions) (*delta.Index, error) {
	if ix, err := u.loadIndex(image); err == nil && ix.Options() == opts {
		return ix, nil
	}
	ix, err := delta.BuildIndex(r, opts)
	if err != nil {
		return nil, err
	}
	if image != "" {
		if b, err := ix.MarshalBinary(); err == nil {
			_ = os.MkdirAll(filepath.Join(u.cfg.StateDir, "index"), 0o700)
			_ = durable.WriteFile(u.indexPath(image), b, 0o600)
		}
	}
	return ix, nil
}

// storeIndex keeps the published chunk index of an image just installed
// in full, best effort: the next adaptive delta then reads no slot twice.
func (u *Updater) storeIndex(ctx context.Context, t verify.Target) {
	ixT, ok := verify.SelectChunkIndex(u.targets, t, func(f string) bool { return f == delta.IndexFormat })
	if !ok {
		return
	}
	b, _, err := u.fetchIndex(ctx, ixT)
	if err == nil {
		err = u.saveIndex(t, b)
	}
	if err != nil {
		u.log.Warn("chunk index not kept", "target", ixT.Path, "err", err)
	}
}

// pruneIndexes removes stored chunk indexes of images no slot holds.
func (u *Updater) pruneIndexes() {
	keep := map[string]bool{}
	for _, cs := range u.st.p.Components {
		for _, sc := range cs.Slots {
			keep[sc.Image], keep[sc.Was] = true, true
		}
	}
	entries, _ := os.ReadDir(filepath.Join(u.cfg.StateDir, "index"))
	for _, e := range entries {
		if !keep[e.Name()] {
			_ = os.Remove(filepath.Join(u.cfg.StateDir, "index", e.Name()))
		}
	}
}
