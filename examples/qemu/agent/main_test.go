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

// TestWritableAtBoot: the first agent of a boot asks whether the state
// directory and the boot environment's are on read-write file systems and
// records the answer; later agents of the boot read the record, whatever
// the directories have become.
func TestWritableAtBoot(t *testing.T) {
	tests := []struct {
		name     string
		stateDir func(dir string) string
		want     string
	}{
		{"writable", func(dir string) string { return dir }, "writable"},
		{"missing (not mounted)", func(dir string) string { return filepath.Join(dir, "missing") }, "read-only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			record := filepath.Join(t.TempDir(), "record")
			state := tt.stateDir(dir)
			got := writableAtBoot(record, state, t.TempDir())
			if got != (tt.want == "writable") || readLine(record) != tt.want {
				t.Fatalf("writableAtBoot = %v, record %q; want %s", got, readLine(record), tt.want)
			}
			// Later in the same boot the directory changes: the record stands.
			os.RemoveAll(dir)
			if again := writableAtBoot(record, state); again != got {
				t.Errorf("second agent of the boot: %v, want the recorded %v", again, got)
			}
		})
	}
}
