package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDataMarker checks what the scenario relies on to prove that the data
// partition survives: the token is made once and kept, the boot counter
// counts.
func TestDataMarker(t *testing.T) {
	dir := t.TempDir()
	dataMarker(dir)
	token := readLine(filepath.Join(dir, "marker"))
	if len(token) != 16 {
		t.Fatalf("marker token %q, want 16 hex digits", token)
	}
	dataMarker(dir)
	if got := readLine(filepath.Join(dir, "marker")); got != token {
		t.Errorf("marker changed from %q to %q", token, got)
	}
	if got, want := readLine(filepath.Join(dir, "boots")), "2"; got != want {
		t.Errorf("boots = %q, want %q", got, want)
	}
}

func TestReadLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "version")
	if err := os.WriteFile(p, []byte("2.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{p, "2.0.0"},
		{filepath.Join(dir, "missing"), ""},
	}
	for _, tt := range tests {
		if got := readLine(tt.path); got != tt.want {
			t.Errorf("readLine(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
}
