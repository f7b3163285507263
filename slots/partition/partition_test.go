package partition

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

// fakeRoot lays out a root directory with two image files standing in for
// partitions, /dev/disk/by-* links to them, and the given kernel command
// line and mountinfo.
func fakeRoot(t *testing.T, cmdline, mountinfo string) string {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"dev/disk/by-partuuid", "dev/disk/by-partlabel", "proc/self"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []struct{ dev, uuid, label string }{
		{"sda2", "1111-02", "rootfs_a"},
		{"sda3", "1111-03", "rootfs_b"},
	} {
		if err := os.WriteFile(filepath.Join(root, "dev", p.dev), make([]byte, 64<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../"+p.dev, filepath.Join(root, "dev/disk/by-partuuid", p.uuid)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../"+p.dev, filepath.Join(root, "dev/disk/by-partlabel", p.label)); err != nil {
			t.Fatal(err)
		}
	}
	if cmdline != "" {
		if err := os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte(cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if mountinfo != "" {
		if err := os.WriteFile(filepath.Join(root, "proc/self/mountinfo"), []byte(mountinfo), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const otherRoot = "22 1 8:2 / / rw - ext4 /dev/sdz9 rw\n"

func TestRunning(t *testing.T) {
	tests := []struct {
		name      string
		cmdline   string
		mountinfo string
		device    string
		want      bool
		wantErr   bool
	}{
		{"switchback.slot names it", "root=/dev/sda3 switchback.slot=a", otherRoot, "/dev/sda2", true, false},
		{"switchback.slot names the other", "root=/dev/sda2 switchback.slot=b", otherRoot, "/dev/sda2", false, false},
		{"root= path", "ro root=/dev/sda2", otherRoot, "PARTUUID=1111-02", true, false},
		{"root= path other", "ro root=/dev/sda3", otherRoot, "PARTUUID=1111-02", false, false},
		{"root=PARTUUID upper case", "root=PARTUUID=1111-02", otherRoot, "/dev/sda2", true, false},
		{"root=PARTLABEL", "root=PARTLABEL=rootfs_a", otherRoot, "PARTUUID=1111-02", true, false},
		{"root=PARTLABEL other", "root=PARTLABEL=rootfs_b", otherRoot, "PARTLABEL=rootfs_a", false, false},
		{"mountinfo source", "quiet", "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n", "PARTLABEL=rootfs_a", true, false},
		{"mountinfo source other", "quiet", otherRoot, "PARTLABEL=rootfs_a", false, false},
		{"unresolvable root= falls back to mountinfo", "root=/dev/root", "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n", "/dev/sda2", true, false},
		{"nothing readable", "", "", "/dev/sda2", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeRoot(t, tt.cmdline, tt.mountinfo)
			s, err := New(Config{Name: "a", Device: tt.device, Root: root})
			if err != nil {
				t.Fatal(err)
			}
			got, why, err := s.Running(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Running() error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Running() = %v (%s), want %v", got, why, tt.want)
			}
			// The running slot is never opened for writing.
			w, err := s.Writer(context.Background(), 10)
			if err == nil {
				w.Close()
			}
			switch {
			case tt.wantErr && err == nil:
				t.Errorf("Writer with no evidence of the running slot: got nil error")
			case tt.want && !errors.Is(err, slots.ErrSlotActive):
				t.Errorf("Writer on the running slot: got %v, want an error wrapping slots.ErrSlotActive", err)
			case !tt.want && !tt.wantErr && err != nil:
				t.Errorf("Writer on the idle slot: %v", err)
			}
		})
	}
}

func TestMountedRefused(t *testing.T) {
	root := fakeRoot(t, "switchback.slot=a", otherRoot+"40 22 8:3 / /mnt/b rw - ext4 /dev/sda3 rw\n")
	s, err := New(Config{Name: "b", Device: "PARTLABEL=rootfs_b", Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Writer(context.Background(), 1); !errors.Is(err, slots.ErrSlotActive) {
		t.Errorf("Writer on a slot mounted at /mnt/b: got %v, want ErrSlotActive", err)
	}
}

func TestResolveErrors(t *testing.T) {
	root := fakeRoot(t, "quiet", otherRoot)
	for _, dev := range []string{"PARTUUID=9999", "PARTLABEL=nope", "UUID=1234", "/dev/nope"} {
		s, err := New(Config{Name: "a", Device: dev, Root: root})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Writer(context.Background(), 1); err == nil {
			t.Errorf("Writer on %s: got nil error, want one", dev)
		}
		if _, err := s.Reader(context.Background()); err == nil {
			t.Errorf("Reader on %s: got nil error, want one", dev)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Device: "/dev/sda2"},
		{Name: "a"},
		{Name: "a", Device: "/x", BlockSize: 1000},
		{Name: "a", Device: "/x", Size: -1},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): got nil error, want one", c)
		}
	}
	s, err := New(Config{Name: "a", Device: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.BlockSize(); got != DefaultBlockSize {
		t.Errorf("BlockSize() = %d, want %d", got, DefaultBlockSize)
	}
}

func TestTooLargeAndVerify(t *testing.T) {
	ctx := context.Background()
	root := fakeRoot(t, "switchback.slot=a", otherRoot)
	s, err := New(Config{Name: "b", Device: "PARTLABEL=rootfs_b", Root: root, BlockSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Writer(ctx, 64<<10+1); !errors.Is(err, slots.ErrTooLarge) {
		t.Errorf("Writer(device size + 1): got %v, want an error wrapping slots.ErrTooLarge", err)
	}
	img := bytes.Repeat([]byte("switchback"), 3000)
	w, err := s.Writer(ctx, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("x"), int64(len(img))); err == nil {
		t.Errorf("WriteAt beyond the image: got nil error")
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(img)
	if err := s.Verify(ctx, int64(len(img)), sha256.New(), sum[:]); err != nil {
		t.Errorf("Verify of what was written: %v", err)
	}
	if err := s.Verify(ctx, int64(len(img))-1, sha256.New(), sum[:]); !errors.Is(err, ErrVerify) {
		t.Errorf("Verify of a shorter length: got %v, want ErrVerify", err)
	}
	if err := s.Verify(ctx, 1<<20, sha256.New(), sum[:]); !errors.Is(err, ErrVerify) {
		t.Errorf("Verify past the device end: got %v, want ErrVerify", err)
	}
	r, err := s.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.Size(); got != int64(len(img)) {
		t.Errorf("Reader.Size() = %d, want the last image's %d", got, len(img))
	}
	// A new Slot value does not know the image length: the device size.
	s2, _ := New(Config{Name: "b", Device: "PARTLABEL=rootfs_b", Root: root})
	r2, err := s2.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if got := r2.Size(); got != 64<<10 {
		t.Errorf("fresh Slot Reader.Size() = %d, want the device size %d", got, 64<<10)
	}
}

// fixedBoot is a BootControl that only reports a status.
type fixedBoot struct{ st slots.BootStatus }

func (f fixedBoot) Status(context.Context) (slots.BootStatus, error) { return f.st, nil }
func (fixedBoot) Arm(context.Context, string, int) error             { return errors.New("no") }
func (fixedBoot) Commit(context.Context, string) error               { return errors.New("no") }
func (fixedBoot) MarkBad(context.Context, string) error              { return errors.New("no") }

func TestBootRefusesPrimary(t *testing.T) {
	root := fakeRoot(t, "switchback.slot=b", otherRoot)
	// Running b as a trial: a is still the primary, the fallback.
	s, err := New(Config{Name: "a", Device: "/dev/sda2", Root: root,
		Boot: fixedBoot{slots.BootStatus{Booted: "b", Primary: "a", Trial: "b", TriesLeft: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Writer(context.Background(), 1); !errors.Is(err, slots.ErrSlotActive) {
		t.Errorf("Writer on the primary slot during a trial: got %v, want ErrSlotActive", err)
	}
}

func TestSlotConformance(t *testing.T) {
	slotstest.TestSlot(t, func(t *testing.T) slots.Slot {
		dir := t.TempDir()
		img := filepath.Join(dir, "b.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		cmdline := filepath.Join(dir, "cmdline")
		if err := os.WriteFile(cmdline, []byte("root=/dev/vda2 switchback.slot=a\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Name: "b", Device: img, Size: 4<<20 + 4096, CmdlinePath: cmdline,
			MountInfoPath: filepath.Join(dir, "none"), BlockSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
