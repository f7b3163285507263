package durable

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, want := range []string{"one", "two, longer", ""} {
		if err := WriteFile(p, []byte(want), 0o600); err != nil {
			t.Fatalf("WriteFile(%q): %v", want, err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("content = %q, want %q", got, want)
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("mode = %v, want %v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1 (no temp files left behind)", len(entries))
	}
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
	}{
		{"missing directory", filepath.Join(dir, "no", "such", "file")},
		{"directory as file", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := WriteFile(tt.path, []byte("x"), 0o600); err == nil {
				t.Errorf("WriteFile(%s) succeeded, want error", tt.path)
			}
		})
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("SyncDir(missing) succeeded, want error")
	}
	if err := SyncFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("SyncFile(missing) succeeded, want error")
	}
}

// TestWriteFileTempBesideTarget: the temporary file is made in the
// target's directory, never in $TMPDIR (renameio's default probes $TMPDIR
// with a test file at every write, which costs flash wear on devices that
// checkpoint often). Nothing may be created or removed in $TMPDIR, which
// would change its modification time.
func TestWriteFileTempBesideTarget(t *testing.T) {
	base := t.TempDir()
	tmp := filepath.Join(base, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(tmp, old, old); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := WriteFile(filepath.Join(dir, "state.json"), []byte{byte('0' + i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(old) {
		t.Errorf("$TMPDIR modified at %v: WriteFile used it, want only the target's directory", fi.ModTime())
	}
}

// TestWriteFailure: when the write function fails, the target keeps its
// content and no temporary file is left.
func TestWriteFailure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, 0o644, func(f *os.File) error {
		f.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write: got %v, want %v", err, boom)
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("content = %q, want %q", got, "old")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}
}

func TestMkdirAll(t *testing.T) {
	base := t.TempDir()
	for _, rel := range []string{"a/b/c", "a/b/c", "a/d", "."} {
		d := filepath.Join(base, rel)
		if err := MkdirAll(d, 0o755); err != nil {
			t.Fatalf("MkdirAll(%s): %v", rel, err)
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s: not a directory after MkdirAll (%v)", rel, err)
		}
	}
	if err := WriteFile(filepath.Join(base, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(base, "file", "x"), 0o755); err == nil {
		t.Error("MkdirAll below a file succeeded, want an error")
	}
}

// TestBatch: files appear under their names only at Sync, whole; Cleanup
// of an abandoned batch leaves nothing behind.
func TestBatch(t *testing.T) {
	dir := t.TempDir()
	var b Batch
	names := []string{"a/1", "a/2", "b/c/3"}
	for _, n := range names {
		if err := b.WriteFile(filepath.Join(dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s exists before Sync", n)
		}
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || string(got) != n {
			t.Errorf("%s = %q, %v; want %q", n, got, err, n)
		}
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", n, fi.Mode().Perm())
		}
	}
	if err := b.WriteFile(filepath.Join(dir, "a/abandoned"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Cleanup()
	if entries, _ := os.ReadDir(filepath.Join(dir, "a")); len(entries) != 2 {
		t.Errorf("a/ holds %d entries after Cleanup, want 2", len(entries))
	}
	if err := b.Sync(); err != nil {
		t.Errorf("Sync of an empty batch: %v", err)
	}
}
