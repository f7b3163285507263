package oci

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/slots"
)

func TestParseDocument(t *testing.T) {
	good := `"sha256:0000000000000000000000000000000000000000000000000000000000000000"`
	tests := []struct {
		name, in string
		index    bool
		ok       bool
	}{
		{"manifest", `{"schemaVersion":2,"mediaType":"` + MediaTypeManifest + `","config":{"digest":` + good + `,"size":2},"layers":[{"digest":` + good + `,"size":3}]}`, false, true},
		{"docker manifest", `{"schemaVersion":2,"mediaType":"` + MediaTypeDockerManifest + `","config":{"digest":` + good + `,"size":2}}`, false, true},
		{"index", `{"schemaVersion":2,"manifests":[{"digest":` + good + `,"size":2,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`, true, true},
		{"schema 1", `{"schemaVersion":1,"config":{"digest":` + good + `,"size":2}}`, false, false},
		{"both", `{"schemaVersion":2,"config":{"digest":` + good + `,"size":2},"manifests":[]}`, false, false},
		{"neither", `{"schemaVersion":2}`, false, false},
		{"bad digest", `{"schemaVersion":2,"config":{"digest":"sha256:xyz","size":2}}`, false, false},
		{"other algorithm", `{"schemaVersion":2,"config":{"digest":"sha512:00","size":2}}`, false, false},
		{"negative size", `{"schemaVersion":2,"config":{"digest":` + good + `,"size":-1}}`, false, false},
		{"wrong media type", `{"schemaVersion":2,"mediaType":"` + MediaTypeIndex + `","config":{"digest":` + good + `,"size":2}}`, false, false},
		{"not json", `{`, false, false},
	}
	for _, tt := range tests {
		doc, err := ParseDocument([]byte(tt.in))
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
			continue
		}
		if err != nil && !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: err = %v, want ErrBadManifest", tt.name, err)
		}
		if err == nil && doc.IsIndex() != tt.index {
			t.Errorf("%s: IsIndex = %v, want %v", tt.name, doc.IsIndex(), tt.index)
		}
	}
}

func TestSelectPlatform(t *testing.T) {
	idx := &Document{SchemaVersion: 2, Manifests: []Descriptor{
		{Digest: "sha256:1", Platform: &Platform{OS: "linux", Architecture: "amd64"}},
		{Digest: "sha256:2", Platform: &Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{Digest: "sha256:3"},
	}}
	tests := []struct {
		platforms map[string][]string
		hw, want  string
	}{
		{map[string][]string{"linux/arm64/v8": {"pi4", "pi5"}, "linux/amd64": {"pc"}}, "pi5", "sha256:2"},
		{map[string][]string{"linux/arm64/v8": {"pi4"}, "linux/amd64": {"pc"}}, "pc", "sha256:1"},
		{map[string][]string{"linux/amd64": {"*"}}, "anything", "sha256:1"},
		{map[string][]string{"linux/arm64": {"pi4"}}, "pi4", ""},
		{map[string][]string{"linux/arm64/v8": {"pi4"}}, "pc", ""},
		{nil, "pc", ""},
	}
	for _, tt := range tests {
		d, err := SelectPlatform(idx, tt.platforms, tt.hw)
		if tt.want == "" {
			if !errors.Is(err, ErrNoPlatform) {
				t.Errorf("%v %s: err = %v, want ErrNoPlatform", tt.platforms, tt.hw, err)
			}
			continue
		}
		if err != nil || d.Digest != tt.want {
			t.Errorf("%v %s: %s, %v; want %s", tt.platforms, tt.hw, d.Digest, err, tt.want)
		}
	}
}

// FuzzSelect parses arbitrary documents and selects a platform from them:
// no panic, and a selected entry is one the index lists for a mapped
// platform.
func FuzzSelect(f *testing.F) {
	g := "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"`+g+`","size":2,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`), "linux/arm64/v8", "pi")
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"`+g+`","size":2},"layers":[]}`), "linux/amd64", "*")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"`+g+`","platform":null}]}`), "", "")
	f.Fuzz(func(t *testing.T, b []byte, platform, hw string) {
		doc, err := ParseDocument(b)
		if err != nil {
			return
		}
		if !doc.IsIndex() {
			return
		}
		d, err := SelectPlatform(doc, map[string][]string{platform: {hw}}, hw)
		if err != nil {
			return
		}
		if d.Platform == nil || d.Platform.String() != platform {
			t.Fatalf("selected %+v for platform %q", d.Platform, platform)
		}
	})
}

// FuzzApplyLayer applies arbitrary bytes as a layer: no panic, nothing
// outside the root.
func FuzzApplyLayer(f *testing.F) {
	f.Add(makeLayer(f, file("a/b", "x"), tarEntry{name: "a/.wh.b", typ: '0'}))
	f.Add(makeLayer(f, tarEntry{name: "s", typ: '2', link: "/"}, file("s/x", "y")))
	f.Fuzz(func(t *testing.T, layer []byte) {
		// The unpacker Arm uses, without its final syncfs (slow on a busy
		// machine, and not what is fuzzed).
		parent := t.TempDir()
		dir := filepath.Join(parent, "root")
		os.Mkdir(dir, 0o755)
		lim := slots.UnpackLimits{MaxEntries: 100, MaxFileSize: 1 << 20, MaxTotalSize: 1 << 20}
		x, err := slots.NewUnpacker(dir, slots.UnpackOptions{Limits: lim, Layers: true})
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		x.Unpack(context.Background(), bytes.NewReader(layer))
		ents, _ := os.ReadDir(parent)
		if len(ents) != 1 {
			t.Fatalf("the layer wrote beside its root: %v", ents)
		}
	})
}
