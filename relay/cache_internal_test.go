package relay

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A file being served is never evicted, even beyond the limit.
func TestEvictNeverInUse(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k1"), make([]byte, 60), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := newCache(dir, 100, nil, slog.New(slog.DiscardHandler), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	_, release, ok := c.open("k1")
	if !ok {
		t.Fatal("k1 not cached")
	}
	w := want{key: "k2", path: "k2", length: 60}
	if err := c.reserve(w, nil); !errors.Is(err, ErrCacheFull) {
		t.Fatalf("reserve while k1 is in use: %v, want ErrCacheFull", err)
	}
	if !c.has("k1") {
		t.Fatal("k1 evicted while in use")
	}
	release()
	if err := c.reserve(w, nil); err != nil {
		t.Fatalf("reserve after k1 was released: %v", err)
	}
	if c.has("k1") {
		t.Fatal("k1 still cached beyond the limit")
	}
	if _, err := os.Stat(filepath.Join(dir, "k1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("k1 on disk: %v", err)
	}
}
