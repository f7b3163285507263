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

// TestLoadOldStateFile: a state file written by an earlier build (the
// JSON names are the schema; the Go names changed) loads with every field
// in place, and saves back with the same JSON names.
func TestLoadOldStateFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "state-v1-2026-12.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := decodeState(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	h := func(c string) string { return strings.Repeat(c, 64) }
	cs := p.Components["rootfs"]
	if cs == nil || cs.Installed != "1.1.0" || cs.InstalledTargetSHA256 != h("1") || cs.LastResult != "1.1.0 committed" {
		t.Fatalf("component: %+v", cs)
	}
	if a := cs.Slots["a"]; a.TargetSHA256 != h("2") || a.Version != "1.2.0" || a.Complete || a.Image != h("3") || a.Was != h("4") {
		t.Errorf("slot a: %+v", a)
	}
	if b := cs.Slots["b"]; b.TargetSHA256 != h("1") || !b.Complete || b.Length != 8<<20 {
		t.Errorf("slot b: %+v", b)
	}
	pd := cs.Pending
	if pd == nil || pd.TargetSHA256 != h("2") || pd.TargetPath != "rootfs/1.2.0.img.zst" || pd.Phase != PhaseDownloading ||
		pd.Method != methodFull || pd.Offset != 4<<20 || pd.WireOffset != 1<<20 || len(pd.HashState) == 0 || len(pd.ImageHashState) == 0 ||
		pd.Validator != `"5f1c-a00000"` || pd.Started.IsZero() {
		t.Errorf("pending: %+v", pd)
	}
	if br, ok := p.Blocklist[h("5")]; !ok || br.Version != "1.0.5" {
		t.Errorf("blocklist: %+v", p.Blocklist)
	}
	if p.Failures[h("6")] != 1 {
		t.Errorf("failures: %+v", p.Failures)
	}
	out, err := encodeState(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{`"installed_target"`, `"target"`, `"target_path"`} {
		if !strings.Contains(string(out), name) {
			t.Errorf("saved state lacks the field %s", name)
		}
	}
}
