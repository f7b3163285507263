package repository

import (
	"os"
	"strings"
	"testing"
)

func TestCacheControl(t *testing.T) {
	tests := []struct {
		rel  string
		want string
	}{
		{"metadata/timestamp.json", CacheRevalidate},
		{"metadata/root.json", CacheRevalidate},
		{"metadata/snapshot.json", CacheRevalidate},
		{"metadata/3.root.json", CacheImmutable},
		{"metadata/7.snapshot.json", CacheImmutable},
		{"metadata/7.targets.json", CacheImmutable},
		{"targets/rootfs/1.0/ab.rootfs.img", CacheImmutable},
		{"targets/timestamp.json", CacheImmutable}, // a target that happens to be named so
		{"targets/chunks/ab/abcd.zst", CacheImmutable},
	}
	for _, tt := range tests {
		if got := CacheControl(tt.rel); got != tt.want {
			t.Errorf("CacheControl(%q) = %q, want %q", tt.rel, got, tt.want)
		}
	}
}

// TestReadmeCacheHeaders keeps the README's serving instructions (nginx,
// object store) and the values publishers use the same.
func TestReadmeCacheHeaders(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, want := range []string{
		`location = /metadata/timestamp.json { add_header Cache-Control "` + CacheRevalidate + `"; }`,
		`location = /metadata/root.json      { add_header Cache-Control "` + CacheRevalidate + `"; }`,
		`add_header Cache-Control "` + CacheImmutable + `";`,
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md has no line %q", want)
		}
	}
}

func TestVersionedMetadata(t *testing.T) {
	tests := []struct {
		name string
		v    int64
		role string
		ok   bool
	}{
		{"1.root.json", 1, "root", true},
		{"12.board-a.json", 12, "board-a", true},
		{"timestamp.json", 0, "", false},
		{"0.targets.json", 0, "", false},
		{"01.targets.json", 0, "", false},
		{"-1.targets.json", 0, "", false},
		{"1..json", 0, "", false},
		{"1.targets.json.tmp", 0, "", false},
		{"1.a.b.json", 0, "", false},
		{"1.a/b.json", 0, "", false},
		{"99999999999999999999.targets.json", 0, "", false},
	}
	for _, tt := range tests {
		v, role, ok := VersionedMetadata(tt.name)
		if v != tt.v || role != tt.role || ok != tt.ok {
			t.Errorf("VersionedMetadata(%q) = %d, %q, %v; want %d, %q, %v", tt.name, v, role, ok, tt.v, tt.role, tt.ok)
		}
	}
}

func FuzzVersionedMetadata(f *testing.F) {
	for _, s := range []string{"1.root.json", "2.board-a.json", "timestamp.json", "+1.x.json", "1.a.b.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v, role, ok := VersionedMetadata(name)
		if !ok {
			return
		}
		if v < 1 || !roleNameRE.MatchString(role) || !strings.HasSuffix(name, "."+role+".json") {
			t.Fatalf("VersionedMetadata(%q) = %d, %q", name, v, role)
		}
	})
}
