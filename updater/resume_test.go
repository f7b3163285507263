package updater

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/verify"
)

// alterPrefix overwrites the first bytes of what slot holds, as a disk
// that lost or changed them while the updater was not running would.
func alterPrefix(t *testing.T, slot *slotstest.MemSlot) {
	t.Helper()
	n := int64(len(slot.Bytes()))
	w, err := slot.Writer(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteAt(bytes.Repeat([]byte{0xA5}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
}

// kernelBufferedSlot declares its writer's bytes in the kernel once
// written (slots.KernelBuffered), so that transfers into it take light
// checkpoints; in memory, the bytes outlive the Updater as they would a
// killed process.
type kernelBufferedSlot struct{ *slotstest.MemSlot }

func (s kernelBufferedSlot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	w, err := s.MemSlot.Writer(ctx, size)
	if err != nil {
		return nil, err
	}
	return kernelBufferedWriter{w}, nil
}

type kernelBufferedWriter struct{ slots.Writer }

func (kernelBufferedWriter) KernelBuffered() bool { return true }

// TestResumeReadsBackTheSlot interrupts an install (full, compressed,
// patch), alters the bytes the interrupted transfer had already written
// and hashed, and resumes in a new process: the resumed transfer must not
// arm what the slot now holds, must not blame the release, and must start
// over from byte zero, which then installs the release.
func TestResumeReadsBackTheSlot(t *testing.T) {
	setCheckpointEvery(t, 64<<10)
	base, next := patchPair(1 << 20)
	tests := []struct {
		name string
		// setup publishes the release and returns the device, the slot
		// the install writes, and the image it must end up holding.
		setup func(t *testing.T) (*device, *slotstest.MemSlot, []byte)
		light bool // the resume starts from a light checkpoint
	}{
		{"full image", func(t *testing.T) (*device, *slotstest.MemSlot, []byte) {
			repo := tuftest.New(t)
			img := image("1.1.0", 1<<20+77)
			repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
			repo.Publish()
			return newDevice(t, repo), nil, img
		}, false},
		{"compressed image", func(t *testing.T) (*device, *slotstest.MemSlot, []byte) {
			repo := tuftest.New(t)
			img := compressible(3, 1<<20+77)
			repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 64<<10)
			repo.Publish()
			return newDevice(t, repo), nil, img
		}, false},
		{"patch", func(t *testing.T) (*device, *slotstest.MemSlot, []byte) {
			_, d, _, _ := patchDevice(t, base, next)
			return d, d.a, next
		}, false},
		{"full image, light checkpoint", func(t *testing.T) (*device, *slotstest.MemSlot, []byte) {
			old := bootID
			bootID = func() string { return "this-boot" }
			t.Cleanup(func() { bootID = old })
			repo := tuftest.New(t)
			img := image("1.1.0", 1<<20+77)
			repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
			repo.Publish()
			d := newDevice(t, repo)
			d.cfg = func(c *Config) { c.Components[0].Slots = []slots.Slot{d.a, kernelBufferedSlot{d.b}} }
			d.start()
			return d, nil, img
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, slot, img := tt.setup(t)
			if slot == nil {
				slot = d.b
			}
			slot.FailWritesAfterBytes(int64(len(img)) * 5 / 8)
			if err := d.update(); err == nil {
				t.Fatal("interrupted install succeeded")
			}
			slot.FailWritesAfterBytes(-1)
			d.start()
			if pd := d.pending(); pd == nil || (pd.Offset == 0 && !tt.light) {
				t.Fatalf("pending after the interruption: %+v, want a checkpoint to resume from", pd)
			}
			if b, _ := os.ReadFile(filepath.Join(d.stateDir, lightFile)); tt.light && len(b) == 0 {
				t.Fatal("no light checkpoint to resume from")
			}
			alterPrefix(t, slot)
			restarts := d.restarts.Load()

			err := d.update()
			if !errors.Is(err, ErrSlotChanged) || !errors.Is(err, verify.ErrVerification) {
				t.Fatalf("resumed install over an altered slot: %v, want ErrSlotChanged and ErrVerification", err)
			}
			bs, _ := d.boot.Status(context.Background())
			if bs.Trial != "" {
				t.Fatalf("altered slot armed: %+v", bs)
			}
			if d.restarts.Load() != restarts {
				t.Error("a restart was requested")
			}
			if n := len(d.u.st.p.Blocklist) + len(d.u.st.p.Failures); n != 0 {
				t.Errorf("the release was blamed for the device's disk: blocklist %v, failures %v", d.u.st.p.Blocklist, d.u.st.p.Failures)
			}
			if pd := d.pending(); pd == nil || pd.Phase != PhaseDownloading || pd.Offset != 0 || pd.WireOffset != 0 || pd.Method != "" {
				t.Errorf("pending after the failed read-back: %+v, want a transfer from byte zero", pd)
			}
			if sc := d.u.st.component("rootfs").Slots[slot.Name()]; sc.Complete {
				t.Errorf("slot %s recorded complete after a failed read-back", slot.Name())
			}

			if err := d.update(); err != nil {
				t.Fatalf("install after the failed read-back: %v", err)
			}
			if got := slot.Bytes(); !bytes.Equal(got[:min(len(got), len(img))], img) {
				t.Fatal("the slot does not hold the image")
			}
			if err := d.reboot(); err != nil {
				t.Fatalf("confirm: %v", err)
			}
		})
	}
}
