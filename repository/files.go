package repository

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/internal/durable"
)

// writeFileDurable writes data to path atomically and durably
// (durable.Write), creating path's directory if needed, with a
// modification time in a later second than the file it replaces.
func writeFileDurable(path string, data []byte, perm os.FileMode) error {
	if err := durable.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	err := durable.Write(path, perm, func(f *os.File) error {
		if _, err := f.Write(data); err != nil {
			return err
		}
		return newerSecond(f.Name(), path)
	})
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	return nil
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
