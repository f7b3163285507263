package oci

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/verify"
)

// applyAll applies layers to a fresh root, as Arm does, and returns its
// path.
func applyAll(t *testing.T, layers ...[]byte) (string, error) {
	t.Helper()
	return applyWith(t, Config{}, layers...)
}

// applyWith applies layers to a fresh root, base/root, with the unpack
// settings of cfg (Limits, AllowDevices); the layers are blobs of a store
// in base/store.
func applyWith(t testing.TB, cfg Config, layers ...[]byte) (string, error) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	c := &Component{cfg: cfg, store: &Store{dir: filepath.Join(base, "store")}}
	if err := os.MkdirAll(c.store.blobDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	doc := &Document{}
	for _, l := range layers {
		d := Descriptor{Digest: digestOf(l), Size: int64(len(l))}
		if err := os.WriteFile(c.store.Path(d.Digest), l, 0o644); err != nil {
			t.Fatal(err)
		}
		doc.Layers = append(doc.Layers, d)
	}
	return dir, c.applyLayers(context.Background(), dir, doc)
}

func TestUnsafeLayers(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name    string
		entries []tarEntry
	}{
		{"dot-dot", []tarEntry{file("../escape", "x")}},
		{"dot-dot inside", []tarEntry{file("a/../../escape", "x")}},
		{"absolute", []tarEntry{file(filepath.Join(outside, "escape"), "x")}},
		{"through a symlink", []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: outside}, file("evil/escape", "x")}},
		{"through a relative symlink", []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: "../../../../../.." + outside}, file("evil/escape", "x")}},
		{"hard link out", []tarEntry{{name: "l", typ: tar.TypeLink, link: "../../etc/passwd"}}},
		{"hard link to a symlink", []tarEntry{{name: "s", typ: tar.TypeSymlink, link: "/etc/passwd"}, {name: "l", typ: tar.TypeLink, link: "s"}}},
		{"char device", []tarEntry{{name: "dev/null", typ: tar.TypeChar, mode: 0o666}}},
		{"block device", []tarEntry{{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660}}},
		{"fifo", []tarEntry{{name: "p", typ: tar.TypeFifo, mode: 0o644}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := applyAll(t, makeLayer(t, tt.entries...))
			if !errors.Is(err, ErrUnsafeLayer) {
				t.Errorf("err = %v, want ErrUnsafeLayer", err)
			}
			if _, err := os.Stat(filepath.Join(outside, "escape")); err == nil {
				t.Fatal("a layer wrote outside its root")
			}
		})
	}
}

// TestLayerOrder: later layers replace files, symlinks and directories,
// whiteouts remove, opaque whiteouts hide lower content only.
func TestLayerOrder(t *testing.T) {
	dir, err := applyAll(t,
		makeLayer(t, file("d/keep", "1"), file("d/gone", "1"), file("o/lower", "1"), file("f", "old"),
			tarEntry{name: "s", typ: tar.TypeSymlink, link: "f"}),
		makeLayer(t, file("f", "new"), tarEntry{name: "d/.wh.gone", typ: tar.TypeReg},
			tarEntry{name: "o/.wh..wh..opq", typ: tar.TypeReg}, file("o/upper", "2"),
			file("s", "not a link"), tarEntry{name: "h", typ: tar.TypeLink, link: "f"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"d/keep": "1", "f": "new", "o/upper": "2", "s": "not a link", "h": "new"}
	for p, w := range want {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != w {
			t.Errorf("%s = %q, %v; want %q", p, b, err, w)
		}
	}
	for _, p := range []string{"d/gone", "o/lower"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived its whiteout: %v", p, err)
		}
	}
}

// TestUnsafeLayerNotActivated: an unsafe layer pulled from the registry
// is refused at Arm, and nothing is armed.
func TestUnsafeLayerNotActivated(t *testing.T) {
	host := testRegistry(t)
	repo := randomName("test/unsafe-")
	img := pushImage(t, host, repo, "v1", []string{"/bin/true"}, makeLayer(t, file("../x", randomName(""))))
	c := newTestComponent(t, host, verify.OCI{Repository: repo})
	if _, err := armTrial(t, c, img.manifest); !errors.Is(err, ErrUnsafeLayer) {
		t.Fatalf("Arm: %v, want ErrUnsafeLayer", err)
	}
	if st, _ := c.Status(context.Background()); st.Trial != "" || c.HasImage("b") {
		t.Errorf("an unsafe image was armed or unpacked: %+v", st)
	}
}

// TestAllowDevices: with AllowDevices (and root), a layer's device nodes
// are created inside the root; fifos stay refused.
func TestAllowDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		ci.Skipf(t, "mknod needs root")
	}
	layer := makeLayer(t, tarEntry{name: "dev/null", typ: tar.TypeChar, mode: 0o666})
	dir, err := applyWith(t, Config{AllowDevices: true}, layer)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "dev/null"))
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("dev/null: %v, %v; want a character device", fi, err)
	}
	fifo := makeLayer(t, tarEntry{name: "p", typ: tar.TypeFifo, mode: 0o644})
	if _, err := applyWith(t, Config{AllowDevices: true}, fifo); !errors.Is(err, ErrUnsafeLayer) {
		t.Errorf("fifo with AllowDevices: %v, want ErrUnsafeLayer", err)
	}
}
