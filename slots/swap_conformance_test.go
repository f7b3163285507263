//go:build !windows

package slots_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

// factoryFile installs a regular file the way a factory image does and
// manages it as a file slot.
func factoryFile(t *testing.T, content string) *slots.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := slots.NewFile(p)
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	return f
}

// factoryDir installs a directory with a VERSION file and manages it as a
// directory slot.
func factoryDir(t *testing.T, version string) *slots.Dir {
	t.Helper()
	p := filepath.Join(t.TempDir(), "current")
	if err := os.MkdirAll(filepath.Join(p, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "VERSION"), []byte(version), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := slots.NewDir(p)
	if err != nil {
		t.Fatalf("NewDir: %v", err)
	}
	return d
}

// release builds a tar archive holding VERSION and bin/app.
func release(t *testing.T, version string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name, body string
		mode       int64
	}{{"VERSION", version, 0o644}, {"bin/app", "#!/bin/sh\necho " + version + "\n", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// stage writes img into slot, complete and synced.
func stage(t *testing.T, s slots.Slot, img []byte) {
	t.Helper()
	w, err := s.Writer(context.Background(), int64(len(img)))
	if err != nil {
		t.Fatalf("Writer(%s): %v", s.Name(), err)
	}
	if _, err := w.WriteAt(img, 0); err != nil {
		t.Fatalf("WriteAt: %v", err)
	}
	if err := w.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestFileSlotConformance(t *testing.T) {
	slotstest.TestSlot(t, func(t *testing.T) slots.Slot {
		return factoryFile(t, "v1").Slots()[1]
	})
}

func TestDirSlotConformance(t *testing.T) {
	slotstest.TestSlot(t, func(t *testing.T) slots.Slot {
		return factoryDir(t, "v1").Slots()[1]
	})
}

func TestFileBootControlConformance(t *testing.T) {
	slotstest.TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
		f := factoryFile(t, "v1")
		stage(t, f.Slots()[1], []byte("v2"))
		return f, []string{"a", "b"}
	})
}

func TestDirBootControlConformance(t *testing.T) {
	slotstest.TestBootControl(t, func(t *testing.T) (slots.BootControl, []string) {
		d := factoryDir(t, "v1")
		stage(t, d.Slots()[1], release(t, "v2"))
		return d, []string{"a", "b"}
	})
}

type tarW struct{ *tar.Writer }

func newTar(w *bytes.Buffer) tarW { return tarW{tar.NewWriter(w)} }

func (tw tarW) add(t *testing.T, name, body string) {
	t.Helper()
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
}

func (tw tarW) close(t *testing.T) {
	t.Helper()
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
