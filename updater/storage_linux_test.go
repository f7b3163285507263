package updater

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

// TestReadOnlyFS: readOnlyFS tells a read-only mount from a read-write
// one, on a real tmpfs (mounting needs root; CI runs as root).
func TestReadOnlyFS(t *testing.T) {
	mnt := mountTmpfs(t)
	for _, tt := range []struct {
		flags uintptr
		want  bool
	}{{syscall.MS_RDONLY, true}, {0, false}} {
		remount(t, mnt, tt.flags)
		if got, err := readOnlyFS(mnt); err != nil || got != tt.want {
			t.Errorf("readOnlyFS after a remount with flags %#x = %v, %v; want %v", tt.flags, got, err, tt.want)
		}
	}
}

// TestNewOnReadOnlyStateDir: an updater cannot start on a read-only
// StateDir (the lock and the state cannot be written): New fails with
// ErrStateStorage, which tells an agent the storage is at fault; once
// read-write again it starts and updates.
func TestNewOnReadOnlyStateDir(t *testing.T) {
	mnt := mountTmpfs(t)
	repo := tuftest.New(t)
	d := newDeviceWith(t, repo, func(c *Config) { c.StateDir = filepath.Join(mnt, "switchback") })
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 1<<20), custom("1.1.0"))
	repo.Publish()
	d.u.Close()
	remount(t, mnt, syscall.MS_RDONLY)
	u, err := New(d.config())
	if !errors.Is(err, ErrStateStorage) || !errors.Is(err, ErrStateReadOnly) {
		if u != nil {
			u.Close()
		}
		t.Fatalf("New on a read-only StateDir: %v, want ErrStateStorage and ErrStateReadOnly", err)
	}
	t.Logf("the error: %v", err)
	remount(t, mnt, 0)
	d.start()
	d.updateTo("1.1.0")
}

// mountTmpfs mounts a small tmpfs on a temporary directory, or skips (and
// fails under CI, which runs as root).
func mountTmpfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m")
	if err != nil {
		ci.Skipf(t, "mounting a tmpfs needs root: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func remount(t *testing.T, dir string, flags uintptr) {
	t.Helper()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|flags, ""); err != nil {
		t.Fatalf("remount %s: %v", dir, err)
	}
}
