package slotstest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/switchback-ota/switchback/slots"
)

func TestMemSlotConformance(t *testing.T) {
	TestSlot(t, func(t *testing.T) slots.Slot { return NewMemSlot("b", 8<<20) })
}

func TestFakeBootConformance(t *testing.T) {
	TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
		return NewFakeBoot("a", "b"), []string{"a", "b"}
	})
}

func TestFakeBootThreeSlots(t *testing.T) {
	TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
		return NewFakeBoot("x", "y", "z"), []string{"x", "y", "z"}
	})
}

var ctx = context.Background()

func mustWrite(t *testing.T, w slots.Writer, p []byte, off int64) {
	t.Helper()
	if n, err := w.WriteAt(p, off); err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", len(p), off, n, err)
	}
}

func TestMemSlotCapacity(t *testing.T) {
	m := NewMemSlot("a", 10)
	if _, err := m.Writer(ctx, 11); !errors.Is(err, slots.ErrTooLarge) {
		t.Errorf("Writer(11) of a 10-byte slot: got %v, want ErrTooLarge", err)
	}
	if _, err := m.Writer(ctx, 10); err != nil {
		t.Errorf("Writer(10) of a 10-byte slot: %v", err)
	}
}

func TestMemSlotRunning(t *testing.T) {
	m := NewMemSlot("a", 10)
	m.SetRunning(true)
	if _, err := m.Writer(ctx, 1); !errors.Is(err, slots.ErrSlotActive) {
		t.Errorf("Writer of the running slot: got %v, want ErrSlotActive", err)
	}
	m.SetRunning(false)
	if _, err := m.Writer(ctx, 1); err != nil {
		t.Errorf("Writer after SetRunning(false): %v", err)
	}
}

func TestMemSlotWithBoot(t *testing.T) {
	boot := NewFakeBoot("a", "b")
	a := NewMemSlot("a", 10, WithBoot(boot))
	b := NewMemSlot("b", 10, WithBoot(boot))
	if _, err := a.Writer(ctx, 1); !errors.Is(err, slots.ErrSlotActive) {
		t.Errorf("Writer(a) while a is booted: got %v, want ErrSlotActive", err)
	}
	if _, err := b.Writer(ctx, 1); err != nil {
		t.Errorf("Writer(b) while a is booted: %v", err)
	}
	if err := boot.Arm(ctx, "b", 1); err != nil {
		t.Fatal(err)
	}
	if err := boot.Reboot(); err != nil {
		t.Fatal(err)
	}
	// b runs as a trial, a is still primary: both are in use.
	for _, s := range []*MemSlot{a, b} {
		if _, err := s.Writer(ctx, 1); !errors.Is(err, slots.ErrSlotActive) {
			t.Errorf("Writer(%s) during the trial of b: got %v, want ErrSlotActive", s.Name(), err)
		}
	}
}

func TestMemSlotFailAfterBytes(t *testing.T) {
	m := NewMemSlot("a", 100)
	w, err := m.Writer(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	m.FailWritesAfterBytes(15)
	mustWrite(t, w, bytes.Repeat([]byte{1}, 10), 0)
	n, err := w.WriteAt(bytes.Repeat([]byte{2}, 10), 10)
	if n != 5 || !errors.Is(err, ErrInjected) {
		t.Errorf("crossing write = %d, %v; want 5, ErrInjected", n, err)
	}
	if n, err := w.WriteAt([]byte{3}, 20); n != 0 || !errors.Is(err, ErrInjected) {
		t.Errorf("write after the limit = %d, %v; want 0, ErrInjected", n, err)
	}
	if got, want := m.BytesWritten(), int64(15); got != want {
		t.Errorf("BytesWritten() = %d, want %d", got, want)
	}
	want := append(append(bytes.Repeat([]byte{1}, 10), bytes.Repeat([]byte{2}, 5)...), make([]byte, 85)...)
	if got := m.Bytes(); !bytes.Equal(got, want) {
		t.Errorf("Bytes() = %v, want %v", got, want)
	}
	m.FailWritesAfterBytes(-1)
	mustWrite(t, w, []byte{3}, 20)
}

func TestMemSlotFailAfterCalls(t *testing.T) {
	m := NewMemSlot("a", 100)
	w, err := m.Writer(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	m.FailWritesAfterCalls(2)
	mustWrite(t, w, []byte{1}, 0)
	mustWrite(t, w, []byte{1}, 1)
	if _, err := w.WriteAt([]byte{1}, 2); !errors.Is(err, ErrInjected) {
		t.Errorf("third write: got %v, want ErrInjected", err)
	}
	if got, want := m.WriteCalls(), 2; got != want {
		t.Errorf("WriteCalls() = %d, want %d", got, want)
	}
}

func TestPowerCutLosesUnsynced(t *testing.T) {
	pc := NewPowerCut()
	m := NewMemSlot("b", 100, WithPowerCut(pc))
	w, err := m.Writer(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, w, []byte("ab"), 0) // op 1
	if err := w.Sync(); err != nil { // op 2
		t.Fatal(err)
	}
	pc.CutAfter(1)
	mustWrite(t, w, []byte("cd"), 2) // op 3, allowed
	if err := w.Sync(); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("Sync at the cut: got %v, want ErrPowerCut", err)
	}
	if !pc.IsCut() {
		t.Fatal("IsCut() = false after the cut")
	}
	if _, err := m.Reader(ctx); !errors.Is(err, ErrPowerCut) {
		t.Errorf("Reader while the power is off: got %v, want ErrPowerCut", err)
	}
	if got, want := string(m.Bytes()), "ab\x00\x00"; got != want {
		t.Errorf("Bytes() while off = %q, want %q", got, want)
	}
	pc.Restore()
	if _, err := w.WriteAt([]byte("x"), 0); !errors.Is(err, ErrPowerCut) {
		t.Errorf("WriteAt through a writer opened before the cut: got %v, want ErrPowerCut", err)
	}
	r, err := m.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, r.Size())
	r.ReadAt(got, 0)
	if want := "ab\x00\x00"; string(got) != want {
		t.Errorf("after power-on: %q, want %q", got, want)
	}
	if got, want := pc.Ops(), 3; got != want {
		t.Errorf("Ops() = %d, want %d", got, want)
	}
}

func TestPowerCutNeverSynced(t *testing.T) {
	pc := NewPowerCut()
	m := NewMemSlot("b", 100, WithPowerCut(pc))
	w, _ := m.Writer(ctx, 4)
	mustWrite(t, w, []byte("ab"), 0)
	pc.Cut()
	pc.Restore()
	if _, err := m.Reader(ctx); !errors.Is(err, slots.ErrEmpty) {
		t.Errorf("Reader of a never-synced slot after a cut: got %v, want ErrEmpty", err)
	}
}

func TestFakeBootEnv(t *testing.T) {
	b := NewFakeBoot("a", "b")
	if err := b.Arm(ctx, "b", 2); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"primary": "a", "trial": "b", "tries": "2", "bad": ""}
	if got := b.Env(); !equalMap(got, want) {
		t.Errorf("Env() = %v, want %v", got, want)
	}
	steps := []struct {
		booted, tries string
	}{{"b", "1"}, {"b", "0"}, {"a", "0"}, {"a", "0"}}
	for i, s := range steps {
		if err := b.Reboot(); err != nil {
			t.Fatal(err)
		}
		if got := b.Booted(); got != s.booted {
			t.Errorf("boot %d: booted %q, want %q", i+1, got, s.booted)
		}
		if got := b.Env()["tries"]; got != s.tries {
			t.Errorf("boot %d: tries=%s, want %s", i+1, got, s.tries)
		}
	}
	if got, want := b.Boots(), 5; got != want {
		t.Errorf("Boots() = %d, want %d", got, want)
	}
	if err := b.MarkBad(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"primary": "a", "trial": "", "tries": "0", "bad": "b"}
	if got := b.Env(); !equalMap(got, want) {
		t.Errorf("Env() = %v, want %v", got, want)
	}
	if got, want := b.EnvWrites(), 4; got != want {
		t.Errorf("EnvWrites() = %d, want %d", got, want)
	}
}

func equalMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestFakeBootPowerCutEveryStep cuts the power at every write of a whole
// update (write, sync, arm, boot, commit) and checks that the device always
// comes back booted from a slot that holds a complete image.
func TestFakeBootPowerCutEveryStep(t *testing.T) {
	oldImg, newImg := []byte("old-image"), []byte("new-image")
	for n := 0; ; n++ {
		pc := NewPowerCut()
		boot := NewFakeBoot("a", "b")
		boot.SetPowerCut(pc)
		a := NewMemSlot("a", 100, WithPowerCut(pc), WithBoot(boot))
		b := NewMemSlot("b", 100, WithPowerCut(pc), WithBoot(boot))
		a.SetImage(oldImg)
		pc.CutAfter(n)
		err := func() error {
			w, err := b.Writer(ctx, int64(len(newImg)))
			if err != nil {
				return err
			}
			if _, err := w.WriteAt(newImg, 0); err != nil {
				return err
			}
			if err := w.Sync(); err != nil {
				return err
			}
			if err := boot.Arm(ctx, "b", 1); err != nil {
				return err
			}
			if err := boot.Reboot(); err != nil {
				return err
			}
			return boot.Commit(ctx, "b")
		}()
		if !pc.IsCut() {
			if err != nil {
				t.Fatalf("n=%d: update without a cut: %v", n, err)
			}
			if n != 5 {
				t.Errorf("update took %d writes, want 5", n)
			}
			break
		}
		if !errors.Is(err, ErrPowerCut) {
			t.Errorf("n=%d: got %v, want ErrPowerCut", n, err)
		}
		pc.Restore()
		st, err := boot.Status(ctx)
		if err != nil {
			t.Fatalf("n=%d: Status after power-on: %v", n, err)
		}
		slot := map[string]*MemSlot{"a": a, "b": b}[st.Booted]
		want := map[string][]byte{"a": oldImg, "b": newImg}[st.Booted]
		if got := slot.Bytes(); !bytes.Equal(got, want) {
			t.Errorf("n=%d: booted %s holding %q, want %q", n, st.Booted, got, want)
		}
		if n > 100 {
			t.Fatal("no end to the writes")
		}
	}
}

func TestBlockSlot(t *testing.T) {
	b := NewBlockSlot("b", 1<<20, 512)
	var s slots.Slot = b
	if bs, ok := s.(slots.BlockSizer); !ok || bs.BlockSize() != 512 {
		t.Fatalf("BlockSlot does not report block size 512")
	}
	const size = 512*3 + 100
	w, err := s.Writer(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		n   int
		off int64
		ok  bool
	}{
		{512, 0, true},
		{1024, 512, true},
		{100, 1536, true}, // the last, partial block
		{512, 100, false},
		{100, 0, false},
		{612, 512, false},
		{612, 1024, true}, // a whole block and the partial last one
	} {
		_, err := w.WriteAt(make([]byte, c.n), c.off)
		if c.ok && err != nil {
			t.Errorf("WriteAt(%d bytes, %d): %v", c.n, c.off, err)
		}
		if !c.ok && !errors.Is(err, ErrUnaligned) {
			t.Errorf("WriteAt(%d bytes, %d): got %v, want ErrUnaligned", c.n, c.off, err)
		}
	}
}
