package oci

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// armTrial writes manifest into the slot that is not running and arms it.
func armTrial(t *testing.T, c *Component, manifest []byte) (string, error) {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slot := "b"
	if st.Booted == "b" {
		slot = "a"
	}
	writeSlot(t, c, slot, manifest)
	return slot, c.Arm(context.Background(), slot, 3)
}

// TestPullUpdateGC: v1 pulls every blob; v2, which changes one layer,
// pulls that layer and the config only; commits keep two images' blobs.
func TestPullUpdateGC(t *testing.T) {
	host := testRegistry(t)
	ctx := context.Background()
	repo := randomName("test/pull-")
	base := makeLayer(t, file("etc/base", randomName("base")), tarEntry{name: "bin/", typ: '5', mode: 0o755})
	app1 := makeLayer(t, file("app/version", "1"), file("app/old", "x"))
	app2 := makeLayer(t, file("app/version", "2"), tarEntry{name: "app/.wh.old", typ: '0'})
	v1 := pushImage(t, host, repo, "v1", []string{"/bin/true"}, base, app1)
	v2 := pushImage(t, host, repo, "v2", []string{"/bin/true", "2"}, base, app2)
	c := newTestComponent(t, host, verify.OCI{Repository: repo})

	slot, err := armTrial(t, c, v1.manifest)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.LastPull().Fetched, v1.config.Size+v1.layers[0].Size+v1.layers[1].Size; got != want {
		t.Errorf("v1 fetched %d bytes, want the whole image, %d", got, want)
	}
	bootTrial(t, c, slot)
	slot, err = armTrial(t, c, v2.manifest)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.LastPull().Fetched, v2.config.Size+v2.layers[1].Size; got != want {
		t.Errorf("v2 fetched %d bytes, want the new config and layer, %d", got, want)
	}
	rootfs := filepath.Join(c.Bundle(slot), "rootfs")
	if b, err := os.ReadFile(filepath.Join(rootfs, "app/version")); err != nil || string(b) != "2" {
		t.Errorf("app/version = %q, %v; want 2", b, err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "app/old")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whiteout of app/old not honoured: %v", err)
	}
	bootTrial(t, c, slot)
	checkLayout(t, c, slot)
	// v1 is still the other slot's image: all its blobs stay.
	for _, d := range append([]Descriptor{v1.config}, v1.layers...) {
		if !c.Store().Has(d) {
			t.Errorf("blob %s of the previous image was collected", d.Digest)
		}
	}
	// v2 again into the other slot: v1's own blobs go.
	slot, err = armTrial(t, c, v2.manifest)
	if err != nil {
		t.Fatal(err)
	}
	bootTrial(t, c, slot)
	if c.Store().Has(v1.layers[1]) || c.Store().Has(v1.config) {
		t.Error("blobs no slot references survived the commit")
	}
	if !c.Store().Has(v1.layers[0]) {
		t.Error("the shared base layer was collected")
	}
	_ = ctx
}

// bootTrial plays the restart and the commit of the armed slot.
func bootTrial(t *testing.T, c *Component, slot string) {
	t.Helper()
	ctx := context.Background()
	st, err := c.CountStart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Booted != slot {
		t.Fatalf("booted %s after the restart, want %s", st.Booted, slot)
	}
	if err := c.Commit(ctx, slot); err != nil {
		t.Fatal(err)
	}
}

// swapBlob replaces the registry's stored bytes of d with as many other bytes.
func swapBlob(t *testing.T, d Descriptor) {
	t.Helper()
	h, _ := digestHex(d.Digest)
	p := filepath.Join(registryStorage(), h[:2], h, "data")
	b, err := os.ReadFile(p)
	if err != nil {
		ci.Skipf(t, "registry storage not reachable (%v): needs .ci/services/registry.sh on this machine", err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRefused: blobs the registry serves wrong, or not at all, leave
// nothing armed and the running slot as it was. These are faults of the
// network or the registry, not of the signed release: the error is not
// slots.ErrBadImage (the updater backs off and tries again rather than
// blocklisting), and the same install succeeds once the registry serves
// the blob again.
func TestRefused(t *testing.T) {
	host := testRegistry(t)
	deleteBlob := func(t *testing.T, host, repo string, d Descriptor) {
		req, _ := http.NewRequest(http.MethodDelete, "http://"+host+"/v2/"+repo+"/blobs/"+d.Digest, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != http.StatusAccepted {
			t.Fatalf("delete blob: %v %v", res, err)
		}
		res.Body.Close()
	}
	tests := []struct {
		name    string
		blob    func(img testImage) (Descriptor, []byte)
		deleted bool // else swapped in the registry's storage
		wantErr error
		wantMsg string
	}{
		{"layer swapped", func(img testImage) (Descriptor, []byte) { return img.layers[0], nil }, false, ErrDigestMismatch, "the registry served"},
		{"config swapped", func(img testImage) (Descriptor, []byte) { return img.config, nil }, false, ErrDigestMismatch, "the registry served"},
		{"layer deleted", func(img testImage) (Descriptor, []byte) { return img.layers[0], img.layerBytes[0] }, true, nil, "HTTP 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := randomName("test/refused-")
			img := pushImage(t, host, repo, "v1", []string{"/bin/true"}, makeLayer(t, file("f", randomName("x"))))
			c := newTestComponent(t, host, verify.OCI{Repository: repo})
			d, b := tt.blob(img)
			if tt.deleted {
				deleteBlob(t, host, repo, d)
			} else {
				swapBlob(t, d)
			}
			_, err := armTrial(t, c, img.manifest)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Arm: %v, want %v", err, tt.wantErr)
			}
			if errors.Is(err, slots.ErrBadImage) || !strings.Contains(err.Error(), d.Digest) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Arm: %v, want an error naming %s and %q, not slots.ErrBadImage", err, d.Digest, tt.wantMsg)
			}
			st, _ := c.Status(context.Background())
			if st.Trial != "" || st.Booted != "a" {
				t.Errorf("after a refused pull: %+v, want slot a running and no trial", st)
			}
			if c.HasImage("b") {
				t.Error("a refused image was unpacked into slot b")
			}
			// The registry serves the blob again: the same install works.
			if tt.deleted {
				pushBlob(t, host, repo, b)
			} else {
				swapBlob(t, d)
			}
			if err := c.Arm(context.Background(), "b", 3); err != nil {
				t.Errorf("Arm once the registry serves the blob again: %v", err)
			}
		})
	}
}

// TestIndexPlatform: an index is resolved through the signed platform map;
// one without this hardware's platform is refused with ErrNoPlatform.
func TestIndexPlatform(t *testing.T) {
	host := testRegistry(t)
	repo := randomName("test/index-")
	amd := pushImage(t, host, repo, "amd64", []string{"/bin/true"}, makeLayer(t, file("arch", "amd64")))
	arm := pushImage(t, host, repo, "arm64", []string{"/bin/true"}, makeLayer(t, file("arch", "arm64")))
	entry := func(img testImage, p Platform) Descriptor {
		return Descriptor{MediaType: MediaTypeManifest, Digest: digestOf(img.manifest), Size: int64(len(img.manifest)), Platform: &p}
	}
	index := pushManifest(t, host, repo, "multi", Document{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: []Descriptor{
		entry(amd, Platform{OS: "linux", Architecture: "amd64"}),
		entry(arm, Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}),
	}}, MediaTypeIndex)
	tests := []struct {
		platforms map[string][]string
		want      string
		wantErr   error
	}{
		{map[string][]string{"linux/arm64/v8": {"board-a"}, "linux/amd64": {"pc"}}, "arm64", nil},
		{map[string][]string{"linux/arm64/v8": {"pc"}, "linux/amd64": {"board-a"}}, "amd64", nil},
		{map[string][]string{"linux/riscv64": {"board-a"}, "linux/amd64": {"pc"}}, "", ErrNoPlatform},
	}
	for _, tt := range tests {
		c := newTestComponent(t, host, verify.OCI{Repository: repo, Platforms: tt.platforms})
		slot, err := armTrial(t, c, index)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%v: Arm: %v, want %v", tt.platforms, err, tt.wantErr)
			continue
		}
		if tt.wantErr != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(c.Bundle(slot), "rootfs", "arch"))
		if string(b) != tt.want {
			t.Errorf("%v: unpacked %q, want %q", tt.platforms, b, tt.want)
		}
	}
}

// checkLayout has skopeo, when it is here, read slot's image from the
// device's OCI layout: the store is a layout other tools can use.
func checkLayout(t *testing.T, c *Component, slot string) {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Log("no skopeo: the layout is not cross-checked")
		return
	}
	out, err := exec.Command("skopeo", "inspect", "--raw", "oci:"+c.store.dir+":"+slot).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect of the layout: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(filepath.Join(c.Bundle(slot), "manifest.json"))
	if string(out) != string(want) {
		t.Errorf("skopeo reads manifest %s from the layout, want %s", out, want)
	}
}
