// Package durable writes files so that a power cut at any instant leaves
// either the old content or the new, never a mix or an empty file.
//
// The recipe is the classic one: write a temporary file in the same
// directory, fsync it, rename it over the target, then fsync the directory
// so the rename itself is on disk. renameio does the first three steps; the
// directory fsync is ours, because without it a rename may be lost on power
// cut on ext4 with some mount options, and on most other filesystems.
//
// Caveat, as renameio says: rename is not atomic on NFS and some FUSE
// filesystems. Keep state on a local filesystem.
package durable

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// WriteFile atomically and durably replaces path with data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := renameio.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("durable write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// SyncFile fsyncs an existing file by path (for files written by others,
// such as go-tuf's metadata, which it renames into place without fsync).
func SyncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
