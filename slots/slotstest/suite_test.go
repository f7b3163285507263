package slotstest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/switchback-ota/switchback/slots"
)

// brokenSlot breaks the Slot contract in several ways at once.
type brokenSlot struct {
	*MemSlot
	written bool
}

func (b *brokenSlot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	// Ignores ctx and capacity; discards staged bytes (no resume).
	if size < 0 {
		return nil, errors.New("negative")
	}
	b.written = true
	if size > 64<<20 {
		return &brokenWriter{m: b.MemSlot, size: size}, nil
	}
	b.MemSlot.mu.Lock()
	b.MemSlot.data = make([]byte, size)
	b.MemSlot.has = true
	b.MemSlot.mu.Unlock()
	return &brokenWriter{m: b.MemSlot, size: size}, nil
}

func (b *brokenSlot) Reader(ctx context.Context) (slots.Reader, error) {
	// Never reports ErrEmpty; panics on a second Close.
	return &panicReader{memReader: &memReader{r: bytes.NewReader(b.MemSlot.Bytes())}}, nil
}

type panicReader struct {
	*memReader
	closed bool
}

func (r *panicReader) Close() error {
	if r.closed {
		panic("closed twice")
	}
	r.closed = true
	return nil
}

type brokenWriter struct {
	m    *MemSlot
	size int64
}

// WriteAt silently clips writes beyond the image.
func (w *brokenWriter) WriteAt(p []byte, off int64) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	if off < 0 || off >= w.size {
		return len(p), nil
	}
	copy(w.m.data[off:], p)
	return len(p), nil
}
func (w *brokenWriter) Sync() error  { return nil }
func (w *brokenWriter) Close() error { return nil }

// claimingSlot claims abilities it lacks: a block size of 0, and a writer
// that keeps the bytes in its own memory until Close yet claims
// slots.KernelBuffered (a killed process would lose them).
type claimingSlot struct{ *MemSlot }

func (c claimingSlot) BlockSize() int { return 0 }

func (c claimingSlot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	w, err := c.MemSlot.Writer(ctx, size)
	if err != nil {
		return nil, err
	}
	return &bufferingWriter{Writer: w, pending: map[int64][]byte{}}, nil
}

type bufferingWriter struct {
	slots.Writer
	mu      sync.Mutex
	pending map[int64][]byte
}

func (w *bufferingWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending[off] = bytes.Clone(p)
	return len(p), nil
}

func (w *bufferingWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for off, p := range w.pending {
		if _, err := w.Writer.WriteAt(p, off); err != nil {
			return err
		}
	}
	w.pending = nil
	return w.Writer.Close()
}

func (w *bufferingWriter) KernelBuffered() bool { return true }

// racySlot's writer claims slots.KernelBuffered but counts its writes and
// syncs in a field both touch without synchronisation.
type racySlot struct{ *MemSlot }

func (r racySlot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	w, err := r.MemSlot.Writer(ctx, size)
	if err != nil {
		return nil, err
	}
	return &racyWriter{Writer: w}, nil
}

type racyWriter struct {
	slots.Writer
	ops int // unguarded
}

func (w *racyWriter) WriteAt(p []byte, off int64) (int, error) {
	w.ops++
	return w.Writer.WriteAt(p, off)
}
func (w *racyWriter) Sync() error          { w.ops++; return w.Writer.Sync() }
func (w *racyWriter) KernelBuffered() bool { return true }

// brokenBoot lets the booted slot be armed and unknown names through.
type brokenBoot struct{ *FakeBoot }

func (b brokenBoot) Arm(ctx context.Context, slot string, tries int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.env.trial, b.env.tries = slot, tries
	return nil
}

// TestSuitesCatchMisbehaviour runs the suites on broken implementations
// in a child process and checks that each misbehaviour is reported.
func TestSuitesCatchMisbehaviour(t *testing.T) {
	if os.Getenv("SLOTSTEST_BROKEN") != "" {
		t.Skip("run by the parent test")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-run the test binary: %v", err)
	}
	cases := []struct {
		name string
		want []string
	}{
		{"slot", []string{
			"Reader of an empty slot: got nil error",
			"--- FAIL: TestBrokenHelper/Resume",
			"into an image of 1000 bytes = 10, nil; want an error",
			"Writer(4 EiB): got nil error",
			"Writer with a cancelled context: got nil error",
			"Reader with a cancelled context: got nil error",
			"second Reader.Close: panicked: closed twice",
		}},
		{"abilities", []string{
			"--- FAIL: TestBrokenHelper/KernelBuffered/Abandoned",
			"BlockSize() = 0, want 1 to 4194304",
		}},
		{"boot", []string{
			"Arm(booted \"a\"): got <nil>, want an error wrapping slots.ErrSlotActive",
			"Arm(\"no-such-slot\"): got <nil>, want an error wrapping slots.ErrUnknownSlot",
			"Arm(\"b\", 0): got nil error, want one",
		}},
	}
	if raceEnabled {
		cases = append(cases, struct {
			name string
			want []string
		}{"racy", []string{"WARNING: DATA RACE", "--- FAIL: TestBrokenHelper/KernelBuffered/ConcurrentSync"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(exe, "-test.run=^TestBrokenHelper$", "-test.v")
			cmd.Env = append(os.Environ(), "SLOTSTEST_BROKEN="+c.name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a broken implementation:\n%s", out)
			}
			for _, w := range c.want {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("suite output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// TestBrokenHelper is run by TestSuitesCatchMisbehaviour.
func TestBrokenHelper(t *testing.T) {
	switch os.Getenv("SLOTSTEST_BROKEN") {
	case "slot":
		TestSlot(t, func(t *testing.T) slots.Slot { return &brokenSlot{MemSlot: NewMemSlot("b", 8<<20)} })
	case "abilities":
		TestSlot(t, func(t *testing.T) slots.Slot { return claimingSlot{NewMemSlot("b", 8<<20)} })
	case "racy":
		TestSlot(t, func(t *testing.T) slots.Slot { return racySlot{NewMemSlot("b", 8<<20)} })
	case "boot":
		TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
			return brokenBoot{NewFakeBoot("a", "b")}, []string{"a", "b"}
		})
	default:
		t.Skip("run by TestSuitesCatchMisbehaviour")
	}
}
