package slots

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

// unpackLayers applies archives with opts to a fresh directory.
func unpackLayers(t *testing.T, opts UnpackOptions, archives ...[]byte) (string, error) {
	t.Helper()
	dst := t.TempDir()
	x, err := NewUnpacker(dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	for _, a := range archives {
		if err := x.Unpack(context.Background(), bytes.NewReader(a)); err != nil {
			return dst, err
		}
	}
	return dst, x.Sync()
}

// TestUnpackerLayers: with Layers, later archives replace entries, and
// whiteouts remove what lower layers wrote; what they removed is forgotten
// (a later layer may put a directory where a symlink was); writes below a
// symlink of a lower layer stay refused. Without Layers, a second archive
// may not replace an entry and a whiteout name is a plain file.
func TestUnpackerLayers(t *testing.T) {
	base := makeTar(t, file("f", "old"), file("d/keep", "1"), file("d/gone", "1"), file("o/lower", "1"),
		symlink("s", "/etc"), symlink("w/link", "/etc"))
	tests := []struct {
		name   string
		layers bool
		upper  []tarEntry
		want   map[string]string // path → content; "" absent
		unsafe bool
	}{
		{"replace and whiteouts", true, []tarEntry{file("f", "new"), file("d/.wh.gone", ""),
			file("o/.wh..wh..opq", ""), file("o/upper", "2"), hardlink("h", "d/keep")},
			map[string]string{"f": "new", "d/keep": "1", "d/gone": "", "o/lower": "", "o/upper": "2", "h": "1"}, false},
		{"a whiteout forgets a symlink", true, []tarEntry{file(".wh.w", ""), file("w/link/x", "y")},
			map[string]string{"w/link/x": "y"}, false},
		{"a file replaces a symlink", true, []tarEntry{file("s", "plain")}, map[string]string{"s": "plain"}, false},
		{"below a lower layer's symlink", true, []tarEntry{file("s/passwd", "x")}, nil, true},
		{"whiteout of nothing", true, []tarEntry{file("d/.wh.", "")}, nil, true},
		{"no layers: duplicate", false, []tarEntry{file("f", "new")}, nil, true},
		{"no layers: whiteout is a file", false, []tarEntry{file("d/.wh.gone", "x")},
			map[string]string{"d/gone": "1", "d/.wh.gone": "x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst, err := unpackLayers(t, UnpackOptions{Layers: tt.layers}, base, makeTar(t, tt.upper...))
			if tt.unsafe {
				if !errors.Is(err, ErrUnsafeArchive) {
					t.Fatalf("got %v, want ErrUnsafeArchive", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range tt.want {
				b, err := os.ReadFile(filepath.Join(dst, p))
				if want == "" && !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s survives its whiteout: %q, %v", p, b, err)
				}
				if want != "" && (err != nil || string(b) != want) {
					t.Errorf("%s = %q, %v; want %q", p, b, err, want)
				}
			}
		})
	}
}

// TestUnpackerDevices: device nodes are refused unless Devices (which
// needs root); fifos always.
func TestUnpackerDevices(t *testing.T) {
	dev := makeTar(t, tarEntry{name: "dev/null", typ: '3', mode: 0o666})
	if _, err := unpackLayers(t, UnpackOptions{}, dev); !errors.Is(err, ErrUnsafeArchive) {
		t.Errorf("device without Devices: %v, want ErrUnsafeArchive", err)
	}
	fifo := makeTar(t, tarEntry{name: "p", typ: '6', mode: 0o644})
	if _, err := unpackLayers(t, UnpackOptions{Devices: true}, fifo); !errors.Is(err, ErrUnsafeArchive) {
		t.Errorf("fifo with Devices: %v, want ErrUnsafeArchive", err)
	}
	if os.Geteuid() != 0 {
		ci.Skipf(t, "mknod needs root")
	}
	dst, err := unpackLayers(t, UnpackOptions{Devices: true}, dev)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "dev/null")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("dev/null: %v, %v; want a character device", fi, err)
	}
}

// TestUnpackerLayerWithoutEnd: a layer without its end-of-archive marker
// (as umoci 0.4.7's insert writes them) unpacks with Layers; a release
// archive cut there is refused as truncated, and so is a layer whose last
// file is cut short.
func TestUnpackerLayerWithoutEnd(t *testing.T) {
	full := makeTar(t, file("app/version", "1"))
	cut := full[:len(full)-1024] // the two zero blocks of the marker
	if _, err := unpackLayers(t, UnpackOptions{Layers: true}, cut); err != nil {
		t.Errorf("layer without the marker: %v", err)
	}
	if _, err := unpackLayers(t, UnpackOptions{}, cut); err == nil {
		t.Error("a release archive without the marker unpacked")
	}
	short := makeTar(t, file("big", strings.Repeat("x", 2000)))[:512+1000]
	if _, err := unpackLayers(t, UnpackOptions{Layers: true}, short); err == nil {
		t.Error("a layer whose file is cut short unpacked")
	}
}
