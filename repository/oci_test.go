package repository_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

func TestAddOCI(t *testing.T) {
	const dg = `"sha256:0000000000000000000000000000000000000000000000000000000000000000"`
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":` + dg + `,"size":2},"layers":[]}`
	index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
		{"digest":` + dg + `,"size":2,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
		{"digest":` + dg + `,"size":2,"platform":{"os":"linux","architecture":"amd64"}}]}`
	tests := []struct {
		name, doc    string
		hardware     []string
		platforms    map[string][]string
		wantHardware []string
		ok           bool
	}{
		{"manifest", manifest, []string{"pc"}, nil, []string{"pc"}, true},
		{"index", index, nil, map[string][]string{"linux/arm64/v8": {"pi5", "pi4"}, "linux/amd64": {"pc"}}, []string{"pc", "pi4", "pi5"}, true},
		{"index, platform not offered", index, nil, map[string][]string{"linux/riscv64": {"x"}}, nil, false},
		{"index without a map", index, []string{"pc"}, nil, nil, false},
		{"manifest with a map", manifest, nil, map[string][]string{"linux/amd64": {"pc"}}, nil, false},
		{"not a manifest", `{"schemaVersion":2}`, []string{"pc"}, nil, nil, false},
		{"bad platform key", index, nil, map[string][]string{"arm64": {"pc"}}, nil, false},
	}
	for i, tt := range tests {
		r := tuftest.New(t).Repository()
		c := verify.Custom{Component: "app", Version: "1.0." + string(rune('0'+i)), Hardware: tt.hardware,
			OCI: &verify.OCI{Repository: "apps/gw", Platforms: tt.platforms}}
		tg, err := r.AddOCI(context.Background(), "app/manifest.json", []byte(tt.doc), c)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, repository.ErrBadTarget) {
				t.Errorf("%s: err = %v, want ErrBadTarget", tt.name, err)
			}
			continue
		}
		got, err := verify.ParseCustom(tg.Custom)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(got.Hardware, tt.wantHardware) || got.OCI == nil || got.OCI.Repository != "apps/gw" {
			b, _ := json.Marshal(got)
			t.Errorf("%s: custom %s, want hardware %v", tt.name, b, tt.wantHardware)
		}
		if tg.Length != int64(len(tt.doc)) {
			t.Errorf("%s: target length %d, want the document's %d", tt.name, tg.Length, len(tt.doc))
		}
	}
}
