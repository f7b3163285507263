package repository

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// writeFileDurable writes data to path atomically and durably: a temp file
// in the same directory, fsync, rename, fsync of the directory. A crash
// leaves either the old file or the new one, never a torn one.
func writeFileDurable(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("repository: write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("repository: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	if err := newerSecond(tmp, path); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	ok = true
	return syncDir(dir)
}

// newerSecond gives tmp, about to replace path, a modification time at
// least one whole second after path's. Static servers derive validators
// from it at one-second resolution (nginx's ETag and Last-Modified), so a
// file rewritten within the same second with the same size, such as
// timestamp.json published twice in a row, would otherwise keep its ETag,
// and devices polling with If-None-Match would be told 304 for new bytes.
func newerSecond(tmp, path string) error {
	old, err := os.Stat(path)
	if err != nil {
		return nil // nothing replaced
	}
	t := time.Now()
	if t.Unix() <= old.ModTime().Unix() {
		t = time.Unix(old.ModTime().Unix()+1, 0)
	}
	return os.Chtimes(tmp, t, t)
}

// syncDir makes a rename or file creation in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("repository: sync %s: %w", dir, err)
	}
	return nil
}
