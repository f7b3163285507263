package slotstest

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/switchback-ota/switchback/slots"
)

// The optional abilities a slot or its writer may claim, on which resume
// correctness rests. TestSlot runs these checks only for the abilities an
// implementation has.

// maxBlockSize bounds a sane [slots.BlockSizer]: the smallest slot the
// suite asks for holds 4 MiB.
const maxBlockSize = 4 << 20

// abilitySize is the image the ability checks write: several blocks and
// checkpoints, a partial last block.
const abilitySize = 1<<20 + 4099

// chunkFor is the write size the checks use: the slot's block size, or
// 64 KiB when it has none (or an insane one).
func chunkFor(s slots.Slot) int64 {
	if bs, ok := s.(slots.BlockSizer); ok && bs.BlockSize() >= 1 && bs.BlockSize() <= maxBlockSize {
		n := int64(bs.BlockSize())
		for n < 32<<10 {
			n *= 2 // whole blocks, not too many writes
		}
		return n
	}
	return 64 << 10
}

// kernelBuffered opens a writer and reports whether it claims
// [slots.KernelBuffered]; it closes the writer when it does not.
func kernelBuffered(t *testing.T, s slots.Slot, size int64) (slots.Writer, bool) {
	t.Helper()
	w := openWriter(t, s, size)
	if w == nil {
		return nil, false
	}
	if kb, ok := w.(slots.KernelBuffered); ok && kb.KernelBuffered() {
		return w, true
	}
	w.Close()
	return nil, false
}

// testKernelBuffered checks a writer that claims [slots.KernelBuffered].
func testKernelBuffered(t *testing.T, newSlot func(t *testing.T) slots.Slot) {
	run(t, "KernelBuffered/ConcurrentSync", func(t *testing.T) { testConcurrentSync(t, newSlot(t)) })
	run(t, "KernelBuffered/Abandoned", func(t *testing.T) { testAbandoned(t, newSlot(t)) })
}

// testConcurrentSync: Sync runs concurrently with WriteAt (run the suite
// with -race to catch data races), and the image reads back intact. Each
// write waits for a Sync that ended after it began, so Syncs and writes
// interleave however fast the slot is, and nothing orders a write before
// the Syncs that follow it: the race detector sees them as concurrent.
func testConcurrentSync(t *testing.T, s slots.Slot) {
	w, ok := kernelBuffered(t, s, abilitySize)
	if !ok {
		t.Skip("the writer does not claim slots.KernelBuffered")
	}
	want := pattern(abilitySize, 15)
	chunk := chunkFor(s)
	done := make(chan struct{})
	synced := make(chan struct{}, 1)
	var wg sync.WaitGroup
	var syncErr error
	wg.Go(func() {
		// Sync as the updater's syncer does, while the bytes go on.
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := safe(w.Sync); err != nil && syncErr == nil {
				syncErr = err
			}
			select {
			case synced <- struct{}{}:
			default:
			}
		}
	})
	for off := int64(0); off < abilitySize; off += chunk {
		select {
		case <-synced: // a Sync that ended before this write
		default:
		}
		writeAt(t, w, want[off:min(off+chunk, abilitySize)], off)
		<-synced
	}
	close(done)
	wg.Wait()
	if syncErr != nil {
		t.Errorf("Sync concurrent with WriteAt: %v", syncErr)
	}
	finish(t, w)
	checkImage(t, s, want)
}

// testAbandoned: bytes written, synced or not, are there for the next
// writer when the first is abandoned without Sync or Close, as a killed
// process leaves it.
func testAbandoned(t *testing.T, s slots.Slot) {
	w, ok := kernelBuffered(t, s, abilitySize)
	if !ok {
		t.Skip("the writer does not claim slots.KernelBuffered")
	}
	want := pattern(abilitySize, 16)
	chunk := chunkFor(s)
	third := abilitySize / 3 / chunk * chunk
	// Synced, then written and not synced: both must outlive the
	// writer, which is left open, as a killed process leaves it.
	writeAt(t, w, want[:third], 0)
	if err := safe(w.Sync); err != nil {
		t.Errorf("Sync: %v", err)
	}
	writeAt(t, w, want[third:2*third], third)
	defer w.Close()
	next := openWriter(t, s, abilitySize)
	if next == nil {
		return
	}
	writeAt(t, next, want[2*third:], 2*third)
	finish(t, next)
	checkImage(t, s, want)
}

// testBlockSizer checks a slot that claims [slots.BlockSizer]: a block size
// between 1 byte and 4 MiB, and an image written in whole blocks at block
// offsets, in any order, with a partial last block, reading back intact.
func testBlockSizer(t *testing.T, newSlot func(t *testing.T) slots.Slot) {
	run(t, "BlockSizer", func(t *testing.T) {
		s := newSlot(t)
		b, ok := s.(slots.BlockSizer)
		if !ok {
			t.Skip("the slot does not implement slots.BlockSizer")
		}
		bs := int64(b.BlockSize())
		if bs < 1 || bs > maxBlockSize {
			t.Fatalf("BlockSize() = %d, want 1 to %d", bs, maxBlockSize)
		}
		if again := int64(b.BlockSize()); again != bs {
			t.Errorf("BlockSize() = %d, then %d: want a stable size", bs, again)
		}
		blocks := min(4<<20/bs-1, 7)
		size := blocks*bs + bs/2 + 1 // a partial last block
		want := pattern(size, 17)
		w := openWriter(t, s, size)
		if w == nil {
			return
		}
		n := int((size + bs - 1) / bs)
		for _, i := range rand.New(rand.NewPCG(3, 4)).Perm(n) {
			off := int64(i) * bs
			writeAt(t, w, want[off:min(off+bs, size)], off)
		}
		// Several blocks in one write, at a block offset.
		if n >= 3 {
			writeAt(t, w, want[bs:3*bs], bs)
		}
		finish(t, w)
		checkImage(t, s, want)
	})
}
