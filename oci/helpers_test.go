package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/verify"
)

// testRegistry returns the host of the registry .ci/services/registry.sh
// starts (SWITCHBACK_REGISTRY, default 127.0.0.1:15000). Outside CI the
// test skips when none answers; under CI=true it fails.
func testRegistry(t testing.TB) string {
	t.Helper()
	host := os.Getenv("SWITCHBACK_REGISTRY")
	if host == "" {
		host = "127.0.0.1:15000"
	}
	res, err := http.Get("http://" + host + "/v2/")
	if err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			return host
		}
		err = fmt.Errorf("GET /v2/: %s", res.Status)
	}
	ci.Skipf(t, "no registry at %s (run .ci/services/registry.sh): %v", host, err)
	return ""
}

// registryStorage is where registry.sh keeps the registry's blobs.
func registryStorage() string {
	dir := os.Getenv("SWITCHBACK_REGISTRY_DIR")
	if dir == "" {
		dir = "/tmp/switchback-registry"
	}
	return filepath.Join(dir, "data", "docker", "registry", "v2", "blobs", "sha256")
}

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func file(name, body string) tarEntry {
	return tarEntry{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}

// makeLayer builds a gzipped tar of entries.
func makeLayer(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body)), Devmajor: 1, Devminor: 3}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// pushBlob uploads b (monolithic upload) to repo.
func pushBlob(t testing.TB, host, repo string, b []byte) Descriptor {
	t.Helper()
	d := Descriptor{Digest: digestOf(b), Size: int64(len(b))}
	res, err := http.Post("http://"+host+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + host + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+d.Digest, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("push blob: %s", res.Status)
	}
	return d
}

// pushManifest puts a manifest or index under ref and returns its bytes.
func pushManifest(t testing.TB, host, repo, ref string, doc any, mediaType string) []byte {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, "http://"+host+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b))
	req.Header.Set("Content-Type", mediaType)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest: %s: %s", res.Status, msg)
	}
	return b
}

// testImage is an image pushed to the test registry.
type testImage struct {
	manifest   []byte
	config     Descriptor
	layers     []Descriptor
	layerBytes [][]byte
}

// pushImage pushes a single-platform image of the given layers, with a
// config whose command is cmd, under tag.
func pushImage(t testing.TB, host, repo, tag string, cmd []string, layers ...[]byte) testImage {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": cmd, "Env": []string{"PATH=/bin"}, "Labels": map[string]string{"test": randomName("")}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
	})
	img := testImage{config: pushBlob(t, host, repo, cfg)}
	img.config.MediaType = MediaTypeConfig
	for _, l := range layers {
		d := pushBlob(t, host, repo, l)
		d.MediaType = "application/vnd.oci.image.layer.v1.tar+gzip"
		img.layers = append(img.layers, d)
		img.layerBytes = append(img.layerBytes, l)
	}
	doc := Document{SchemaVersion: 2, MediaType: MediaTypeManifest, Config: &img.config, Layers: img.layers}
	img.manifest = pushManifest(t, host, repo, tag, doc, MediaTypeManifest)
	return img
}

// staticResolver resolves every manifest to meta.
func staticResolver(meta verify.OCI) Resolver {
	return func(context.Context, string) (verify.OCI, error) { return meta, nil }
}

// newTestComponent makes a component pulling repo from host.
func newTestComponent(t testing.TB, host string, meta verify.OCI) *Component {
	t.Helper()
	c, err := New(Config{Dir: t.TempDir(), Hardware: "board-a", Registry: RegistryConfig{Host: host}, Resolve: staticResolver(meta)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeSlot writes manifest into slot, as the updater does after TUF
// verified it.
func writeSlot(t testing.TB, c *Component, slot string, manifest []byte) {
	t.Helper()
	ctx := context.Background()
	for _, s := range c.Slots() {
		if s.Name() != slot {
			continue
		}
		w, err := s.Writer(ctx, int64(len(manifest)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt(manifest, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no slot %s", slot)
}
