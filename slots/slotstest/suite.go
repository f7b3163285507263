package slotstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"testing"

	"github.com/switchback-ota/switchback/slots"
)

// TestSlot checks a [slots.Slot] implementation against the Slot contract.
// newSlot must return a fresh, empty slot that is not running, able to
// hold at least 4 MiB; it is called once per subtest and may register
// cleanups on the t it is given.
//
// The suite checks: round trips of images of 0, 1, odd and multi-MiB sizes;
// writes out of order and repeated; resuming a write after Sync, Close and
// a new Writer of the same size; rewriting with a smaller image; Reader of
// an empty slot failing with [slots.ErrEmpty]; writes outside the image
// refused without damage; an impossible size failing with
// [slots.ErrTooLarge]; negative sizes refused; cancelled contexts honoured
// by Writer and Reader; use after Close failing rather than panicking, and
// a second Close not panicking. It reports every misbehaviour it finds.
//
// Optional abilities are checked when the slot has them (the subtests skip
// otherwise). A writer claiming [slots.KernelBuffered] must let Sync run
// concurrently with WriteAt (run the suite with -race to catch data
// races), and what it wrote, synced or not, must be there for the next
// writer when it is abandoned without Sync or Close, as a killed process
// leaves it. A [slots.BlockSizer] must report a block size from 1 byte to
// 4 MiB, and an image written in whole blocks at block offsets, in any
// order, with a partial last block, must read back intact.
//
// Reader.Size must be at least the size written. Slots that know the
// length of the image (all but raw partitions, see [slots.Reader]) should
// report it exactly; the suite logs, but does not fail, a larger Size.
// Other concurrent use is not checked: the contract does not require it.
func TestSlot(t *testing.T, newSlot func(t *testing.T) slots.Slot) {
	t.Helper()
	run(t, "Name", func(t *testing.T) { checkName(t, newSlot(t)) })
	run(t, "Empty", func(t *testing.T) { checkEmpty(t, newSlot(t)) })
	for _, size := range []int64{0, 1, 4099, 65536 + 3, 3<<20 + 5} {
		run(t, fmt.Sprintf("RoundTrip/%d", size), func(t *testing.T) { checkRoundTrip(t, newSlot(t), size) })
	}
	for _, c := range []struct {
		name  string
		check func(t *testing.T, s slots.Slot)
	}{
		{"OutOfOrder", checkOutOfOrder},
		{"Resume", checkResume},
		{"Rewrite", checkRewrite},
		{"WriteOutOfRange", checkWriteOutOfRange},
		{"TooLarge", checkTooLarge},
		{"NegativeSize", checkNegativeSize},
		{"Canceled", checkCanceled},
		{"UseAfterClose", checkUseAfterClose},
	} {
		run(t, c.name, func(t *testing.T) { c.check(t, newSlot(t)) })
	}

	testKernelBuffered(t, newSlot)
	testBlockSizer(t, newSlot)
}

// checkName checks that the slot has a stable, non-empty name.
func checkName(t *testing.T, s slots.Slot) {
	n := s.Name()
	if n == "" {
		t.Errorf("Name() = %q, want a non-empty name", n)
	}
	if n2 := s.Name(); n2 != n {
		t.Errorf("Name() = %q, then %q: want a stable name", n, n2)
	}
}

// checkEmpty checks that Reader of an empty slot fails with [slots.ErrEmpty].
func checkEmpty(t *testing.T, s slots.Slot) {
	ctx := context.Background()
	r, err := s.Reader(ctx)
	if err == nil {
		r.Close()
		t.Errorf("Reader of an empty slot: got nil error, want one wrapping slots.ErrEmpty")
	} else if !errors.Is(err, slots.ErrEmpty) {
		t.Errorf("Reader of an empty slot: got %v, want an error wrapping slots.ErrEmpty", err)
	}
}

// checkRoundTrip writes an image of size bytes in order and reads it back.
func checkRoundTrip(t *testing.T, s slots.Slot, size int64) {
	want := pattern(size, uint64(size))
	chunk := int64(32 << 10)
	if size > 1<<20 {
		chunk = 1 << 20
	}
	w := openWriter(t, s, size)
	if w == nil {
		return
	}
	for off := int64(0); off < size; off += chunk {
		writeAt(t, w, want[off:min(off+chunk, size)], off)
	}
	finish(t, w)
	checkImage(t, s, want)
}

// checkOutOfOrder writes garbage, then the image in a shuffled order with
// repeated and unaligned chunks, and checks the image reads back intact.
func checkOutOfOrder(t *testing.T, s slots.Slot) {
	const size, chunk = 200_003, 4096
	want := pattern(size, 7)
	garbage := pattern(size, 8)
	w := openWriter(t, s, size)
	if w == nil {
		return
	}
	n := (size + chunk - 1) / chunk
	// Garbage first, in order; then the real bytes in a shuffled order,
	// some chunks twice, so that every chunk is overwritten.
	for i := range n {
		off := int64(i * chunk)
		writeAt(t, w, garbage[off:min(off+chunk, size)], off)
	}
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	order = append(order, order[:n/3]...)
	for _, i := range order {
		off := int64(i * chunk)
		writeAt(t, w, want[off:min(off+chunk, size)], off)
	}
	// Unaligned writes straddling chunk boundaries.
	for off := int64(chunk - 100); off+300 < size; off += 5 * chunk {
		writeAt(t, w, want[off:off+300], off)
	}
	finish(t, w)
	checkImage(t, s, want)
}

// checkResume writes half an image, closes the writer and finishes the
// image with a new writer of the same size.
func checkResume(t *testing.T, s slots.Slot) {
	const size = 150_001
	want := pattern(size, 9)
	half := int64(size / 2)
	w := openWriter(t, s, size)
	if w == nil {
		return
	}
	writeAt(t, w, want[:half], 0)
	finish(t, w)
	w = openWriter(t, s, size)
	if w == nil {
		return
	}
	writeAt(t, w, want[half:], half)
	finish(t, w)
	checkImage(t, s, want)
}

// checkRewrite writes an image, then a smaller one over it.
func checkRewrite(t *testing.T, s slots.Slot) {
	first := pattern(100_000, 10)
	w := openWriter(t, s, int64(len(first)))
	if w == nil {
		return
	}
	writeAt(t, w, first, 0)
	finish(t, w)
	want := pattern(40_000, 11)
	w = openWriter(t, s, int64(len(want)))
	if w == nil {
		return
	}
	writeAt(t, w, want, 0)
	finish(t, w)
	checkImage(t, s, want)
}

// checkWriteOutOfRange checks that writes outside the image are refused
// without damaging it.
func checkWriteOutOfRange(t *testing.T, s slots.Slot) {
	const size = 1000
	want := pattern(size, 12)
	w := openWriter(t, s, size)
	if w == nil {
		return
	}
	for _, c := range []struct {
		n   int
		off int64
	}{{10, size - 5}, {1, size}, {1, size + 4096}, {1, -1}, {10, -5}} {
		n, err := safeWriteAt(w, make([]byte, c.n), c.off)
		if err == nil {
			t.Errorf("WriteAt(%d bytes, offset %d) into an image of %d bytes = %d, nil; want an error", c.n, c.off, size, n)
		}
	}
	writeAt(t, w, want, 0)
	finish(t, w)
	checkImage(t, s, want)
}

// checkTooLarge checks that an impossible size fails with [slots.ErrTooLarge].
func checkTooLarge(t *testing.T, s slots.Slot) {
	ctx := context.Background()
	w, err := s.Writer(ctx, 1<<62)
	if err == nil {
		w.Close()
		t.Errorf("Writer(4 EiB): got nil error, want one wrapping slots.ErrTooLarge")
	} else if !errors.Is(err, slots.ErrTooLarge) {
		t.Errorf("Writer(4 EiB): got %v, want an error wrapping slots.ErrTooLarge", err)
	}
}

// checkNegativeSize checks that a negative size is refused.
func checkNegativeSize(t *testing.T, s slots.Slot) {
	ctx := context.Background()
	w, err := s.Writer(ctx, -1)
	if err == nil {
		w.Close()
		t.Errorf("Writer(-1): got nil error, want one")
	}
}

// checkCanceled checks that Writer and Reader honour a cancelled context
// and leave the image alone.
func checkCanceled(t *testing.T, s slots.Slot) {
	ctx := context.Background()
	want := pattern(10, 13)
	if w := openWriter(t, s, 10); w != nil {
		writeAt(t, w, want, 0)
		finish(t, w)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if w, err := s.Writer(cctx, 10); err == nil {
		w.Close()
		t.Errorf("Writer with a cancelled context: got nil error, want context.Canceled")
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("Writer with a cancelled context: got %v, want an error wrapping context.Canceled", err)
	}
	if r, err := s.Reader(cctx); err == nil {
		r.Close()
		t.Errorf("Reader with a cancelled context: got nil error, want context.Canceled")
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("Reader with a cancelled context: got %v, want an error wrapping context.Canceled", err)
	}
	checkImage(t, s, want)
}

// checkUseAfterClose checks that use after Close fails rather than panics,
// and that a second Close does not panic.
func checkUseAfterClose(t *testing.T, s slots.Slot) {
	ctx := context.Background()
	want := pattern(100, 14)
	w := openWriter(t, s, 100)
	if w == nil {
		return
	}
	writeAt(t, w, want, 0)
	finish(t, w)
	if err := safe(w.Close); errors.Is(err, errPanic) {
		t.Errorf("second Writer.Close: %v", err)
	}
	if _, err := safeWriteAt(w, []byte{1}, 0); err == nil {
		t.Errorf("WriteAt after Close: got nil error, want one")
	} else if errors.Is(err, errPanic) {
		t.Errorf("WriteAt after Close: %v", err)
	}
	r, err := s.Reader(ctx)
	if err != nil {
		t.Errorf("Reader: %v", err)
		return
	}
	if err := r.Close(); err != nil {
		t.Errorf("Reader.Close: %v", err)
	}
	if err := safe(r.Close); errors.Is(err, errPanic) {
		t.Errorf("second Reader.Close: %v", err)
	}
	if _, err := safeReadAt(r, make([]byte, 1), 0); err == nil {
		t.Errorf("ReadAt after Close: got nil error, want one")
	} else if errors.Is(err, errPanic) {
		t.Errorf("ReadAt after Close: %v", err)
	}
	checkImage(t, s, want)
}

var errPanic = errors.New("panicked")

// run runs a subtest, reporting a panic of the implementation as a
// failure of that subtest instead of ending the whole test binary.
func run(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("%v: %v\n%s", errPanic, p, debug.Stack())
			}
		}()
		f(t)
	})
}

func safe(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	return f()
}

func safeWriteAt(w io.WriterAt, p []byte, off int64) (n int, err error) {
	err = safe(func() error {
		var err error
		n, err = w.WriteAt(p, off)
		return err
	})
	return n, err
}

func safeReadAt(r io.ReaderAt, p []byte, off int64) (n int, err error) {
	err = safe(func() error {
		var err error
		n, err = r.ReadAt(p, off)
		return err
	})
	return n, err
}

// pattern returns size deterministic pseudo-random bytes.
func pattern(size int64, seed uint64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func openWriter(t *testing.T, s slots.Slot, size int64) slots.Writer {
	t.Helper()
	w, err := s.Writer(context.Background(), size)
	if err != nil {
		t.Errorf("Writer(%d): %v", size, err)
		return nil
	}
	return w
}

func writeAt(t *testing.T, w slots.Writer, p []byte, off int64) {
	t.Helper()
	n, err := safeWriteAt(w, p, off)
	if err != nil || n != len(p) {
		t.Errorf("WriteAt(%d bytes, offset %d) = %d, %v; want %d, nil", len(p), off, n, err, len(p))
	}
}

func finish(t *testing.T, w slots.Writer) {
	t.Helper()
	if err := safe(w.Sync); err != nil {
		t.Errorf("Sync: %v", err)
	}
	if err := safe(w.Close); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// checkImage reads the slot back and compares it with want.
func checkImage(t *testing.T, s slots.Slot, want []byte) {
	t.Helper()
	r, err := s.Reader(context.Background())
	if err != nil {
		t.Errorf("Reader: %v", err)
		return
	}
	defer r.Close()
	size := int64(len(want))
	switch got := r.Size(); {
	case got < size:
		t.Errorf("Reader.Size() = %d, want %d", got, size)
		return
	case got > size:
		t.Logf("Reader.Size() = %d for an image of %d bytes (allowed only for slots that cannot know the image length)", got, size)
	}
	got := make([]byte, size)
	// Read in pieces of odd sizes to exercise ReadAt at unaligned offsets.
	for off := int64(0); off < size; {
		n := min(size-off, 100_003)
		m, err := safeReadAt(r, got[off:off+n], off)
		if int64(m) != n {
			t.Errorf("ReadAt(%d bytes, offset %d) = %d, %v; want %d", n, off, m, err, n)
			return
		}
		if err != nil && err != io.EOF {
			t.Errorf("ReadAt(%d bytes, offset %d): %v", n, off, err)
			return
		}
		off += n
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("read back %d bytes: first difference at offset %d: got %#x, want %#x", size, i, got[i], want[i])
	}
	if r.Size() == size {
		n, err := safeReadAt(r, make([]byte, 1), size)
		if n != 0 || err == nil {
			t.Errorf("ReadAt(1 byte, offset %d = Size) = %d, %v; want 0 and an error (io.EOF)", size, n, err)
		}
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Rebooter is implemented by simulated bootloaders, such as [FakeBoot]:
// Reboot runs the boot flow as a power cycle would. [TestBootControl]
// uses it to check transitions across boots.
type Rebooter interface {
	Reboot() error
}

// TestBootControl checks a [slots.BootControl] implementation against the
// BootControl contract. newControl must return a fresh control over at
// least two slots, booted from its committed primary slot with nothing
// armed and nothing marked bad, and the names of its slots; it is called
// once per subtest.
//
// The suite checks the initial status; [slots.ErrUnknownSlot] for unknown
// names; Arm of the booted slot failing with [slots.ErrSlotActive]; Arm
// with fewer than one try refused; Commit of a slot not running failing
// with [slots.ErrNotRunning]; Arm, MarkBad and re-Arm transitions. When the
// control can start the next boot, because it implements [Rebooter] (a
// simulated bootloader) or [slots.StartCounter] (a swap control counting
// application starts), it also checks the boot counter: a trial runs once
// per try, commit makes it primary, an exhausted or bad trial falls back
// to the primary; and, for a [slots.CanaryChecker], that CheckCanary
// passes before any write, after Arm and Commit in the same boot, and in
// the trial.
func TestBootControl(t *testing.T, newControl func(t *testing.T) (slots.BootControl, []string)) {
	t.Helper()
	run(t, "Status", func(t *testing.T) {
		c, names := newControl(t)
		checkStatus(t, c, names)
	})
	for _, tc := range []struct {
		name  string
		check func(t *testing.T, c slots.BootControl, st0 slots.BootStatus, other string)
	}{
		{"UnknownSlot", checkUnknownSlot},
		{"ArmBooted", checkArmBooted},
		{"ArmNoTries", checkArmNoTries},
		{"CommitNotRunning", checkCommitNotRunning},
		{"Arm", checkArm},
		{"MarkBadRearm", checkMarkBadRearm},
		// These need a way to start the next boot.
		{"TrialCommit", checkTrialCommit},
		{"TrialExhausted", checkTrialExhausted},
		{"TrialRollback", checkTrialRollback},
		{"Canary", checkCanary},
	} {
		run(t, tc.name, func(t *testing.T) {
			c, st0, other, ok := setupControl(t, newControl)
			if !ok {
				return
			}
			tc.check(t, c, st0, other)
		})
	}
}

// setupControl returns a fresh control, its first status and a slot that
// is not booted.
func setupControl(t *testing.T, newControl func(t *testing.T) (slots.BootControl, []string)) (slots.BootControl, slots.BootStatus, string, bool) {
	t.Helper()
	c, names := newControl(t)
	if len(names) < 2 {
		t.Errorf("newControl returned %d slot names, want at least 2", len(names))
		return nil, slots.BootStatus{}, "", false
	}
	st, ok := status(t, c)
	if !ok {
		return nil, st, "", false
	}
	for _, n := range names {
		if n != st.Booted {
			return c, st, n, true
		}
	}
	t.Errorf("booted slot %q: no other slot among %q", st.Booted, names)
	return nil, st, "", false
}

// startNext returns a function that starts the next boot of c, or skips
// the test when c implements neither [Rebooter] nor [slots.StartCounter].
func startNext(t *testing.T, c slots.BootControl) func() error {
	t.Helper()
	switch c := c.(type) {
	case Rebooter:
		return c.Reboot
	case slots.StartCounter:
		return func() error { _, err := c.CountStart(context.Background()); return err }
	}
	t.Skip("control implements neither slotstest.Rebooter nor slots.StartCounter")
	return nil
}

// checkStatus checks the status of a fresh control and that Status
// honours a cancelled context.
func checkStatus(t *testing.T, c slots.BootControl, names []string) {
	ctx := context.Background()
	st, ok := status(t, c)
	if !ok {
		return
	}
	if !slices.Contains(names, st.Booted) {
		t.Errorf("Status().Booted = %q, want one of %q", st.Booted, names)
	}
	if st.Primary != st.Booted {
		t.Errorf("fresh control: Status().Primary = %q, Booted = %q; want them equal", st.Primary, st.Booted)
	}
	if st.Trial != "" {
		t.Errorf("fresh control: Status().Trial = %q, want none", st.Trial)
	}
	if len(st.Bad) != 0 {
		t.Errorf("fresh control: Status().Bad = %q, want none", st.Bad)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Status(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Status with a cancelled context: got %v, want an error wrapping context.Canceled", err)
	}
}

// checkUnknownSlot checks that Arm, Commit and MarkBad of an unknown slot
// fail with [slots.ErrUnknownSlot] and change nothing.
func checkUnknownSlot(t *testing.T, c slots.BootControl, st slots.BootStatus, _ string) {
	ctx := context.Background()
	const bogus = "no-such-slot"
	ops := map[string]func() error{
		"Arm":     func() error { return c.Arm(ctx, bogus, 3) },
		"Commit":  func() error { return c.Commit(ctx, bogus) },
		"MarkBad": func() error { return c.MarkBad(ctx, bogus) },
	}
	for _, name := range []string{"Arm", "Commit", "MarkBad"} {
		if err := ops[name](); !errors.Is(err, slots.ErrUnknownSlot) {
			t.Errorf("%s(%q): got %v, want an error wrapping slots.ErrUnknownSlot", name, bogus, err)
		}
	}
	expectStatus(t, c, st)
}

// checkArmBooted checks that arming the booted slot fails with
// [slots.ErrSlotActive].
func checkArmBooted(t *testing.T, c slots.BootControl, st slots.BootStatus, _ string) {
	ctx := context.Background()
	if err := c.Arm(ctx, st.Booted, 3); !errors.Is(err, slots.ErrSlotActive) {
		t.Errorf("Arm(booted %q): got %v, want an error wrapping slots.ErrSlotActive", st.Booted, err)
	}
	expectStatus(t, c, st)
}

// checkArmNoTries checks that Arm with fewer than one try is refused.
func checkArmNoTries(t *testing.T, c slots.BootControl, st slots.BootStatus, other string) {
	ctx := context.Background()
	for _, tries := range []int{0, -1} {
		if err := c.Arm(ctx, other, tries); err == nil {
			t.Errorf("Arm(%q, %d): got nil error, want one", other, tries)
		}
	}
	expectStatus(t, c, st)
}

// checkCommitNotRunning checks that Commit of a slot not running fails
// with [slots.ErrNotRunning] and that committing the running primary is a
// no-op.
func checkCommitNotRunning(t *testing.T, c slots.BootControl, st slots.BootStatus, other string) {
	ctx := context.Background()
	if err := c.Commit(ctx, other); !errors.Is(err, slots.ErrNotRunning) {
		t.Errorf("Commit(%q) while %q runs: got %v, want an error wrapping slots.ErrNotRunning", other, st.Booted, err)
	}
	expectStatus(t, c, st)
	if err := c.Commit(ctx, st.Booted); err != nil {
		t.Errorf("Commit(%q) of the running primary: %v", st.Booted, err)
	}
	expectStatus(t, c, st)
}

// checkArm checks the status after Arm, and that a trial not yet booted
// cannot be committed.
func checkArm(t *testing.T, c slots.BootControl, st0 slots.BootStatus, other string) {
	ctx := context.Background()
	if err := c.Arm(ctx, other, 3); err != nil {
		t.Errorf("Arm(%q, 3): %v", other, err)
		return
	}
	st, ok := status(t, c)
	if !ok {
		return
	}
	if st.Trial != other || st.TriesLeft != 3 || st.Primary != st0.Primary {
		t.Errorf("after Arm(%q, 3): got %s, want trial %q, 3 tries left, primary %q", other, fmtStatus(st), other, st0.Primary)
	}
	if st.Booted != st0.Booted && st.Booted != other {
		t.Errorf("after Arm(%q, 3): booted %q, want %q or %q", other, st.Booted, st0.Booted, other)
	}
	if st.Booted != other {
		if err := c.Commit(ctx, other); !errors.Is(err, slots.ErrNotRunning) {
			t.Errorf("Commit(%q) of an armed trial not yet booted: got %v, want an error wrapping slots.ErrNotRunning", other, err)
		}
	}
}

// checkMarkBadRearm checks that MarkBad cancels a trial and that the slot
// can be armed again.
func checkMarkBadRearm(t *testing.T, c slots.BootControl, st0 slots.BootStatus, other string) {
	ctx := context.Background()
	if err := c.Arm(ctx, other, 3); err != nil {
		t.Errorf("Arm(%q, 3): %v", other, err)
		return
	}
	if err := c.MarkBad(ctx, other); err != nil {
		t.Errorf("MarkBad(%q): %v", other, err)
		return
	}
	st, ok := status(t, c)
	if !ok {
		return
	}
	if st.Trial != "" || st.Primary != st0.Primary || !slices.Contains(st.Bad, other) {
		t.Errorf("after Arm(%q) and MarkBad(%q): got %s, want no trial, primary %q, %q bad", other, other, fmtStatus(st), st0.Primary, other)
	}
	if err := c.Arm(ctx, other, 2); err != nil {
		t.Errorf("Arm(%q, 2) after MarkBad: %v", other, err)
		return
	}
	st, ok = status(t, c)
	if !ok {
		return
	}
	if st.Trial != other || st.TriesLeft != 2 || slices.Contains(st.Bad, other) {
		t.Errorf("after re-Arm(%q, 2): got %s, want trial %q, 2 tries left, not bad", other, fmtStatus(st), other)
	}
}

// checkTrialCommit boots the trial once, commits it and checks it stays
// primary across the next boot.
func checkTrialCommit(t *testing.T, c slots.BootControl, st0 slots.BootStatus, other string) {
	ctx := context.Background()
	boot := startNext(t, c)
	if err := c.Arm(ctx, other, 2); err != nil {
		t.Errorf("Arm(%q, 2): %v", other, err)
		return
	}
	if err := boot(); err != nil {
		t.Errorf("first start of the trial: %v", err)
		return
	}
	want := slots.BootStatus{Booted: other, Primary: st0.Primary, Trial: other, TriesLeft: 1}
	if !expectStatus(t, c, want) {
		return
	}
	if err := c.Commit(ctx, other); err != nil {
		t.Errorf("Commit(%q) of the running trial: %v", other, err)
		return
	}
	want = slots.BootStatus{Booted: other, Primary: other}
	expectStatus(t, c, want)
	if err := boot(); err != nil {
		t.Errorf("start after commit: %v", err)
		return
	}
	expectStatus(t, c, want)
}

// checkCanary checks that a control that checks its canary passes the
// check before any write, after Arm in the same boot (the environment has
// a new canary, the kernel command line the old one), in the trial after
// the next boot, and after Commit in that boot.
func checkCanary(t *testing.T, c slots.BootControl, _ slots.BootStatus, other string) {
	ctx := context.Background()
	cc, ok := c.(slots.CanaryChecker)
	if !ok {
		t.Skip("control does not implement slots.CanaryChecker")
	}
	boot := startNext(t, c)
	check := func(when string) {
		t.Helper()
		if err := cc.CheckCanary(ctx); err != nil {
			t.Errorf("CheckCanary %s: %v", when, err)
		}
	}
	check("before any write")
	if err := c.Arm(ctx, other, 2); err != nil {
		t.Fatalf("Arm(%q, 2): %v", other, err)
	}
	check("after Arm in the same boot")
	if err := boot(); err != nil {
		t.Fatalf("start of the trial: %v", err)
	}
	check("in the trial")
	if err := c.Commit(ctx, other); err != nil {
		t.Fatalf("Commit(%q): %v", other, err)
	}
	check("after Commit in the same boot")
}

// checkTrialExhausted boots the trial until its tries run out and checks
// the control falls back to the primary.
func checkTrialExhausted(t *testing.T, c slots.BootControl, st0 slots.BootStatus, other string) {
	ctx := context.Background()
	boot := startNext(t, c)
	if err := c.Arm(ctx, other, 2); err != nil {
		t.Errorf("Arm(%q, 2): %v", other, err)
		return
	}
	for i, left := range []int{1, 0} {
		if err := boot(); err != nil {
			t.Errorf("start %d of the trial: %v", i+1, err)
			return
		}
		want := slots.BootStatus{Booted: other, Primary: st0.Primary, Trial: other, TriesLeft: left}
		if !expectStatus(t, c, want) {
			return
		}
	}
	if err := boot(); err != nil {
		t.Errorf("start after the last try: %v", err)
		return
	}
	st, ok := status(t, c)
	if !ok {
		return
	}
	// A bootloader leaves the exhausted trial for userspace to mark bad;
	// a start counter marks it bad itself.
	if st.Booted != st0.Primary || st.Primary != st0.Primary || (st.Trial != "" && st.TriesLeft != 0) {
		t.Errorf("after the tries ran out: got %s, want booted and primary %q, no try left", fmtStatus(st), st0.Primary)
	}
	if err := c.Commit(ctx, other); !errors.Is(err, slots.ErrNotRunning) {
		t.Errorf("Commit(%q) of an exhausted trial: got %v, want an error wrapping slots.ErrNotRunning", other, err)
	}
	if err := c.MarkBad(ctx, other); err != nil {
		t.Errorf("MarkBad(%q): %v", other, err)
		return
	}
	want := slots.BootStatus{Booted: st0.Primary, Primary: st0.Primary, Bad: []string{other}}
	expectStatus(t, c, want)
	if err := boot(); err != nil {
		t.Errorf("start after MarkBad: %v", err)
		return
	}
	expectStatus(t, c, want)
}

// checkTrialRollback marks the running trial bad and checks the next boot
// is the primary.
func checkTrialRollback(t *testing.T, c slots.BootControl, st0 slots.BootStatus, other string) {
	ctx := context.Background()
	boot := startNext(t, c)
	if err := c.Arm(ctx, other, 3); err != nil {
		t.Errorf("Arm(%q, 3): %v", other, err)
		return
	}
	if err := boot(); err != nil {
		t.Errorf("start of the trial: %v", err)
		return
	}
	if err := c.MarkBad(ctx, other); err != nil {
		t.Errorf("MarkBad(%q) of the running trial: %v", other, err)
		return
	}
	st, ok := status(t, c)
	if !ok {
		return
	}
	if st.Trial != "" || st.Primary != st0.Primary || !slices.Contains(st.Bad, other) {
		t.Errorf("after MarkBad(%q) of the running trial: got %s, want no trial, primary %q, %q bad", other, fmtStatus(st), st0.Primary, other)
	}
	if err := boot(); err != nil {
		t.Errorf("start after rollback: %v", err)
		return
	}
	expectStatus(t, c, slots.BootStatus{Booted: st0.Primary, Primary: st0.Primary, Bad: []string{other}})
}

func status(t *testing.T, c slots.BootControl) (slots.BootStatus, bool) {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Errorf("Status: %v", err)
		return st, false
	}
	return st, true
}

// expectStatus compares the control's status with want; Bad is compared
// as a set, TriesLeft only when a trial is set.
func expectStatus(t *testing.T, c slots.BootControl, want slots.BootStatus) bool {
	t.Helper()
	got, ok := status(t, c)
	if !ok {
		return false
	}
	if got.Trial == "" {
		got.TriesLeft = 0
	}
	gb, wb := slices.Sorted(slices.Values(got.Bad)), slices.Sorted(slices.Values(want.Bad))
	if got.Booted != want.Booted || got.Primary != want.Primary || got.Trial != want.Trial ||
		got.TriesLeft != want.TriesLeft || !slices.Equal(gb, wb) {
		t.Errorf("Status() = %s, want %s", fmtStatus(got), fmtStatus(want))
		return false
	}
	return true
}

func fmtStatus(s slots.BootStatus) string {
	return fmt.Sprintf("{booted %q primary %q trial %q tries %d bad %q}", s.Booted, s.Primary, s.Trial, s.TriesLeft, s.Bad)
}
