package updater

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

// TestStateDirTurnsReadOnly: the StateDir's file system turns read-only
// (as ext4 does after an I/O error) between a check and an install. Check
// and Install fail at once with ErrStateStorage saying so, before a byte
// is downloaded, and nothing is armed; read-write again (the restart with
// fsck), the device updates. The read-only mount is simulated here (a
// file system with a file open for writing cannot be remounted read-only;
// ext4's own remount after an error can): TestReadOnlyFS and
// TestNewOnReadOnlyStateDir use real mounts.
func TestStateDirTurnsReadOnly(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 3<<20), custom("1.1.0"))
	repo.Publish()
	ctx := context.Background()
	ups, err := d.u.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.u.readOnly = func(string) (bool, error) { return true, nil }
	if _, err := d.u.Check(ctx); !errors.Is(err, ErrStateStorage) || !errors.Is(err, ErrStateReadOnly) {
		t.Errorf("Check on a read-only StateDir: %v, want ErrStateStorage and ErrStateReadOnly", err)
	}
	err = d.u.Install(ctx, ups[0])
	if !errors.Is(err, ErrStateStorage) || !errors.Is(err, ErrStateReadOnly) {
		t.Errorf("Install on a read-only StateDir: %v, want ErrStateStorage and ErrStateReadOnly", err)
	}
	t.Logf("the error: %v", err)
	if n := d.b.BytesWritten(); n != 0 {
		t.Errorf("%d bytes written to slot b: the install did not fail fast", n)
	}
	d.nothingArmed()
	d.finishUpdate("1.1.0")
}

// TestStateWriteFailure: an I/O error on a state write at each point of an
// install (the pending record, a checkpoint mid-download, the last write,
// every write) fails Install with an error wrapping ErrStateStorage and the
// cause; the running version is untouched; once the fault clears, the
// device restarts and the update finishes. (ErrStateStorage is new: before
// it, the failure carried no sentinel a caller could act on.)
func TestStateWriteFailure(t *testing.T) {
	img := image("1.1.0", 9<<20+17)
	total := countSaves(t, img)
	tests := []struct {
		name     string
		from, to int // the saves that fail, counting from 0
	}{
		{"the pending record", 0, 0},
		{"a checkpoint", total / 2, total / 2},
		{"the last write (armed)", total - 1, total - 1},
		{"every write", 0, 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			d := newDevice(t, repo)
			before := d.a.Bytes()
			repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
			repo.Publish()
			ups, err := d.u.Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			saves := 0
			d.u.st.beforeSave = func() error {
				n := saves
				saves++
				if n >= tt.from && n <= tt.to {
					return &fsError{syscall.EIO}
				}
				return nil
			}
			err = d.u.Install(context.Background(), ups[0])
			if !errors.Is(err, ErrStateStorage) || !errors.Is(err, syscall.EIO) || errors.Is(err, ErrStateReadOnly) {
				t.Fatalf("update with save %d..%d failing: %v, want ErrStateStorage and EIO, not ErrStateReadOnly", tt.from, tt.to, err)
			}
			t.Logf("the error: %v", err)
			if d.restarts.Load() != 0 {
				t.Error("a restart was requested after a failed state write")
			}
			bs, _ := d.boot.Status(context.Background())
			if bs.Primary != "a" || bs.Booted != "a" || !bytes.Equal(d.a.Bytes(), before) {
				t.Fatalf("the running version was touched: %+v", bs)
			}
			// The fault clears; the device restarts (the agent's answer
			// to a storage fault) and the update finishes by itself.
			d.u.st.beforeSave = nil
			d.finishUpdate("1.1.0")
		})
	}
}

// countSaves counts the state writes of one Install of img.
func countSaves(t *testing.T, img []byte) int {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()
	ups, err := d.u.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	d.u.st.beforeSave = func() error { n++; return nil }
	if err := d.u.Install(context.Background(), ups[0]); err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("an install wrote the state %d times: no checkpoint to fail", n)
	}
	return n
}

// finishUpdate restarts the device and, unless the restart committed an
// armed trial, updates and restarts again; version must end committed.
func (d *device) finishUpdate(version string) {
	d.t.Helper()
	if err := d.reboot(); err != nil {
		d.t.Fatalf("restart after the fault: %v", err)
	}
	if d.installed() != version {
		if err := d.update(); err != nil {
			d.t.Fatalf("update after the fault cleared: %v", err)
		}
		if err := d.reboot(); err != nil {
			d.t.Fatalf("confirm after the fault cleared: %v", err)
		}
	}
	bs, _ := d.boot.Status(context.Background())
	if got := d.installed(); got != version || bs.Primary != "b" {
		d.t.Fatalf("after the fault cleared: installed %s, boot %+v; want %s committed on b", got, bs, version)
	}
}

// fsError is a system call's error as the os package returns it.
type fsError struct{ errno syscall.Errno }

func (e *fsError) Error() string { return fmt.Sprintf("write state.json: %v", e.errno) }
func (e *fsError) Unwrap() error { return e.errno }

// TestStorageFault: a failed refresh is blamed on the storage when the
// StateDir is read-only, when its error is EROFS, or when the StateDir
// refuses a probe file (ext4 after a journal abort answers EROFS without
// flagging the mount read-only); a network error on healthy storage is
// not.
func TestStorageFault(t *testing.T) {
	netErr := errors.New("dial tcp: connection refused")
	erofs := fmt.Errorf("metadata fetch failed: %w", &fsError{syscall.EROFS})
	tests := []struct {
		name     string
		err      error
		readOnly bool
		gone     bool // the StateDir is missing: the probe fails
		want     error
	}{
		{"network", netErr, false, false, nil},
		{"read-only mount", netErr, true, false, ErrStateReadOnly},
		{"EROFS", erofs, false, false, ErrStateReadOnly},
		{"probe refused", netErr, false, true, ErrStateStorage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			u := &Updater{cfg: Config{StateDir: dir}, readOnly: func(string) (bool, error) { return tt.readOnly, nil }}
			if tt.gone {
				u.cfg.StateDir = dir + "/missing"
			}
			got := u.storageFault(tt.err)
			if tt.want == nil && got != nil || tt.want != nil && !errors.Is(got, tt.want) {
				t.Errorf("storageFault(%v) = %v, want %v", tt.err, got, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("the probe left %d files", len(entries))
			}
		})
	}
}
