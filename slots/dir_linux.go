package slots

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/switchback-ota/switchback/internal/durable"
)

// exchangeWithSymlink atomically replaces the directory at path with a
// symlink to target: the symlink is made at old, then the two are
// exchanged with renameat2(RENAME_EXCHANGE), leaving the directory at old.
// rename(2) cannot replace a non-empty directory; the exchange can, and a
// cut at any instant leaves either the directory or the symlink at path.
func exchangeWithSymlink(path, target, old string) error {
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Symlink(target, old); err != nil {
		return err
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE); err != nil {
		os.Remove(old)
		return fmt.Errorf("exchanging %s with a symlink: %w", path, err)
	}
	return nil
}
