package updater

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadStore(t *testing.T) {
	valid := `{"version":1,"components":{"app":{"installed":"1.0.0","pending":{"phase":"downloading","slot":"b","target":"ab","version":"1.1.0","length":10,"offset":4}}}}`
	tests := []struct {
		name        string
		content     *string // nil: no file
		wantWarn    bool
		wantPending bool
	}{
		{name: "fresh device", content: nil},
		{name: "valid", content: &valid, wantPending: true},
		{name: "truncated", content: ptr(valid[:40]), wantWarn: true},
		{name: "empty", content: ptr(""), wantWarn: true},
		{name: "garbage", content: ptr("\x00\x01garbage"), wantWarn: true},
		{name: "future schema", content: ptr(`{"version":99,"components":{}}`), wantWarn: true},
		{name: "unknown phase", content: ptr(`{"version":1,"components":{"app":{"pending":{"phase":"exploding","slot":"b","target":"ab","length":1}}}}`), wantWarn: true},
		{name: "offset past length", content: ptr(`{"version":1,"components":{"app":{"pending":{"phase":"downloading","slot":"b","target":"ab","length":1,"offset":2}}}}`), wantWarn: true},
		{name: "null component", content: ptr(`{"version":1,"components":{"app":null}}`), wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content != nil {
				if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, warnings, err := loadStore(dir)
			if err != nil {
				t.Fatalf("loadStore: %v", err)
			}
			if got := len(warnings) > 0; got != tt.wantWarn {
				t.Errorf("warnings = %q, want some: %v", warnings, tt.wantWarn)
			}
			if got := s.component("app").Pending != nil; got != tt.wantPending {
				t.Errorf("pending = %v, want %v", got, tt.wantPending)
			}
			if tt.wantWarn {
				// The unusable file is kept aside for inspection, and a save
				// then writes a valid state.
				matches, _ := filepath.Glob(filepath.Join(dir, stateFile+".corrupt-*"))
				if len(matches) != 1 {
					t.Errorf("corrupt files kept aside: %v, want 1", matches)
				}
			}
			if err := s.save(); err != nil {
				t.Fatalf("save: %v", err)
			}
			b, err := os.ReadFile(filepath.Join(dir, stateFile))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeState(b); err != nil {
				t.Errorf("saved state does not load: %v", err)
			}
		})
	}
}

func TestLoadStoreUnwritableDir(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores directory permissions; use a path under a file.
		dir := t.TempDir()
		f := filepath.Join(dir, "file")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := loadStore(filepath.Join(f, "state")); err == nil {
			t.Fatal("loadStore under a regular file succeeded, want error")
		}
		return
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	s, _, err := loadStore(dir)
	if err != nil {
		t.Fatalf("loadStore: %v", err)
	}
	if err := s.save(); err == nil || !strings.Contains(err.Error(), "save state") {
		t.Fatalf("save into read-only dir: err = %v, want a save error", err)
	}
}

func ptr(s string) *string { return &s }

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"version":1,"components":{"app":{"installed":"1.0.0"}}}`))
	f.Add([]byte(`{"version":1,"components":{"app":{"pending":{"phase":"armed","slot":"b","target":"ab","length":3,"offset":3}}},"blocklist":{"ab":{"component":"app","version":"1.2.0","reason":"health"}}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeState(b)
		if err != nil {
			return
		}
		// Whatever loads must save and load again to the same thing.
		out, err := encodeState(p)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		if _, err := decodeState(out); err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
	})
}
