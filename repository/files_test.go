package repository

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRewriteChangesSecond rewrites a file several times in a row, faster
// than a second: each version must have a modification time in a later
// whole second, so that validators derived from it (nginx's ETag and
// Last-Modified) change with the bytes.
func TestRewriteChangesSecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), "timestamp.json")
	var last int64 = -1
	for i := range 4 {
		if err := writeFileDurable(path, []byte{'{', byte('0' + i), '}'}, 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if sec := fi.ModTime().Unix(); sec <= last {
			t.Errorf("write %d: mtime second %d, want after %d", i, sec, last)
		} else {
			last = sec
		}
	}
}
