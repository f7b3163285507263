//go:build !windows

package slots_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/switchback-ota/switchback/slots"
)

var ctx = context.Background()

func readAll(t *testing.T, s slots.Slot) []byte {
	t.Helper()
	r, err := s.Reader(ctx)
	if err != nil {
		t.Fatalf("Reader(%s): %v", s.Name(), err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFileUpdate(t *testing.T) {
	f := factoryFile(t, "v1")
	a, b := f.Slots()[0], f.Slots()[1]
	if _, err := a.Writer(ctx, 2); !errors.Is(err, slots.ErrSlotActive) {
		t.Errorf("Writer(a) of the running slot: got %v, want ErrSlotActive", err)
	}
	if got := string(readAll(t, a)); got != "v1" {
		t.Errorf("slot a reads %q, want the factory version v1", got)
	}
	stage(t, b, []byte("v2"))
	if err := f.Arm(ctx, "b", 3); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	if got, _ := os.ReadFile(f.Path()); string(got) != "v2" {
		t.Errorf("after Arm %s = %q, want v2", f.Path(), got)
	}
	fi, err := os.Stat(f.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), fs.FileMode(0o755); got != want {
		t.Errorf("new version's mode = %v, want %v (the running version's)", got, want)
	}
	if _, err := b.Writer(ctx, 2); !errors.Is(err, slots.ErrSlotActive) {
		t.Errorf("Writer(b) during its trial: got %v, want ErrSlotActive", err)
	}
	if _, err := a.Writer(ctx, 2); !errors.Is(err, slots.ErrSlotActive) {
		t.Errorf("Writer(a), the primary, during b's trial: got %v, want ErrSlotActive", err)
	}
	st, err := f.CountStart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Booted != "b" || st.TriesLeft != 2 {
		t.Errorf("CountStart = %+v, want b booted with 2 tries left", st)
	}
	if err := f.Commit(ctx, "b"); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	// The next update goes to a; b keeps running meanwhile.
	stage(t, a, []byte("v3"))
	if got, _ := os.ReadFile(f.Path()); string(got) != "v2" {
		t.Errorf("while a is written %s = %q, want v2", f.Path(), got)
	}
	// Another process sees the same state.
	g, err := slots.NewFile(f.Path())
	if err != nil {
		t.Fatal(err)
	}
	st, err = g.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Booted != "b" || st.Primary != "b" || st.Trial != "" {
		t.Errorf("second instance: %+v, want b booted and primary", st)
	}
}

func TestFileMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "conf")
	if err := os.WriteFile(p, []byte("x=1"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := slots.NewFile(p, slots.WithFileMode(0o640))
	if err != nil {
		t.Fatal(err)
	}
	stage(t, f.Slots()[1], []byte("x=2"))
	if err := f.Arm(ctx, "b", 1); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), fs.FileMode(0o640); got != want {
		t.Errorf("mode = %v, want %v", got, want)
	}
}

func TestFileMigrationKeepsInode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(p, []byte("factory"), 0o755); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	f, err := slots.NewFile(p)
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("migration copied the file; want it hard-linked into slot a")
	}
	if target, err := os.Readlink(p); err != nil || target != ".app.switchback/a" {
		t.Errorf("%s -> %q, %v; want .app.switchback/a", p, target, err)
	}
	st, err := f.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Booted != "a" || st.Primary != "a" {
		t.Errorf("status after migration: %+v", st)
	}
}

func TestNewFileErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "foreign")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, path string }{
		{"missing", filepath.Join(dir, "missing")},
		{"directory", filepath.Join(dir, "adir")},
		{"foreign symlink", filepath.Join(dir, "foreign")},
		{"empty", ""},
	} {
		if _, err := slots.NewFile(c.path); err == nil {
			t.Errorf("NewFile(%s %q): got nil error, want one", c.name, c.path)
		}
	}
	if target, _ := os.Readlink(filepath.Join(dir, "foreign")); target != "/etc/hostname" {
		t.Errorf("foreign symlink changed to %q", target)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("refused paths left %d entries in their directory, want the 2 made by the test", len(ents))
	}
}

func TestFileCorruptState(t *testing.T) {
	f := factoryFile(t, "v1")
	state := filepath.Join(filepath.Dir(f.Path()), ".app.switchback", "state.json")
	if err := os.WriteFile(state, []byte(`{"version":1,"primary":"z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Status(ctx); err == nil || !strings.Contains(err.Error(), "state.json") {
		t.Errorf("Status with a corrupt state: got %v, want an error naming the file", err)
	}
	if err := f.Arm(ctx, "b", 1); err == nil {
		t.Errorf("Arm with a corrupt state: got nil error")
	}
	if got, _ := os.ReadFile(f.Path()); string(got) != "v1" {
		t.Errorf("%s = %q after refused changes, want v1", f.Path(), got)
	}
}

func TestFileArmEmpty(t *testing.T) {
	f := factoryFile(t, "v1")
	if err := f.Arm(ctx, "b", 1); !errors.Is(err, slots.ErrEmpty) {
		t.Errorf("Arm of an empty slot: got %v, want ErrEmpty", err)
	}
	if _, err := f.Slot("c"); !errors.Is(err, slots.ErrUnknownSlot) {
		t.Errorf("Slot(c): got %v, want ErrUnknownSlot", err)
	}
}

func TestDirUpdateCompressed(t *testing.T) {
	tarball := release(t, "v2")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarball)
	zw.Close()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := enc.EncodeAll(tarball, nil)
	enc.Close()
	for _, c := range []struct {
		name string
		img  []byte
	}{{"tar", tarball}, {"tar.gz", gz.Bytes()}, {"tar.zst", zst}} {
		t.Run(c.name, func(t *testing.T) {
			d := factoryDir(t, "v1")
			if _, err := d.Slots()[0].Reader(ctx); !errors.Is(err, slots.ErrEmpty) {
				t.Errorf("Reader of migrated slot a: got %v, want ErrEmpty (no archive)", err)
			}
			stage(t, d.Slots()[1], c.img)
			if err := d.Arm(ctx, "b", 2); err != nil {
				t.Fatalf("Arm: %v", err)
			}
			if got, _ := os.ReadFile(filepath.Join(d.Path(), "VERSION")); string(got) != "v2" {
				t.Errorf("VERSION = %q, want v2", got)
			}
			fi, err := os.Stat(filepath.Join(d.Path(), "bin", "app"))
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("bin/app: %v, %v; want mode 0755", fi, err)
			}
			if got := readAll(t, d.Slots()[1]); !bytes.Equal(got, c.img) {
				t.Errorf("slot b reads back %d bytes, want the %d archive bytes", len(got), len(c.img))
			}
			if _, err := d.CountStart(ctx); err != nil {
				t.Fatal(err)
			}
			if err := d.Commit(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			// The next release replaces a's tree.
			stage(t, d.Slots()[0], release(t, "v3"))
			if err := d.Arm(ctx, "a", 1); err != nil {
				t.Fatalf("Arm(a): %v", err)
			}
			if got, _ := os.ReadFile(filepath.Join(d.Path(), "VERSION")); string(got) != "v3" {
				t.Errorf("VERSION = %q, want v3", got)
			}
		})
	}
}

func TestDirRefusesUnsafeArchive(t *testing.T) {
	d := factoryDir(t, "v1")
	var buf bytes.Buffer
	// A tar whose second entry escapes the directory.
	tw := newTar(&buf)
	tw.add(t, "VERSION", "v2")
	tw.add(t, "../escape", "pwned")
	tw.close(t)
	stage(t, d.Slots()[1], buf.Bytes())
	before, _ := d.Status(ctx)
	err := d.Arm(ctx, "b", 2)
	if !errors.Is(err, slots.ErrUnsafeArchive) {
		t.Fatalf("Arm of an unsafe archive: got %v, want ErrUnsafeArchive", err)
	}
	after, _ := d.Status(ctx)
	if after.Booted != before.Booted || after.Trial != "" {
		t.Errorf("status after a refused Arm: %+v, want %+v", after, before)
	}
	if got, _ := os.ReadFile(filepath.Join(d.Path(), "VERSION")); string(got) != "v1" {
		t.Errorf("VERSION = %q after a refused Arm, want v1", got)
	}
	parent := filepath.Dir(d.Path())
	if _, err := os.Lstat(filepath.Join(parent, "escape")); err == nil {
		t.Errorf("the archive wrote outside its directory")
	}
	state, _ := os.ReadDir(filepath.Join(parent, ".current.switchback"))
	for _, e := range state {
		if strings.Contains(e.Name(), "unpack") {
			t.Errorf("left %s behind", e.Name())
		}
	}
}

func TestDirLimits(t *testing.T) {
	p := filepath.Join(t.TempDir(), "current")
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := slots.NewDir(p, slots.WithUnpackLimits(slots.UnpackLimits{MaxEntries: 1}))
	if err != nil {
		t.Fatal(err)
	}
	stage(t, d.Slots()[1], release(t, "v2")) // two entries
	if err := d.Arm(ctx, "b", 1); !errors.Is(err, slots.ErrUnsafeArchive) {
		t.Errorf("Arm of an archive over the entry limit: got %v, want ErrUnsafeArchive", err)
	}
}

func TestFileRemovesLeftovers(t *testing.T) {
	f := factoryFile(t, "v1")
	parent := filepath.Dir(f.Path())
	state := filepath.Join(parent, ".app.switchback")
	// What renameio leaves when a cut hits a state write or a symlink swap,
	// and look-alikes that are not ours.
	mustWrite := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(filepath.Join(state, ".state.json123456"), "{")
	os.Mkdir(filepath.Join(parent, ".app98765"), 0o700)
	os.Symlink(".app.switchback/b", filepath.Join(parent, ".app98765", "tmp.symlink"))
	os.Mkdir(filepath.Join(parent, ".app4242"), 0o700)
	mustWrite(filepath.Join(parent, ".app4242", "user-data"), "keep")
	mustWrite(filepath.Join(parent, ".app777"), "keep")
	if _, err := slots.NewFile(f.Path()); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		filepath.Join(state, ".state.json123456"):   false,
		filepath.Join(parent, ".app98765"):          false,
		filepath.Join(parent, ".app4242/user-data"): true,
		filepath.Join(parent, ".app777"):            true,
		filepath.Join(state, "state.json"):          true,
	} {
		if _, err := os.Lstat(p); (err == nil) != want {
			t.Errorf("%s exists = %v, want %v", p, err == nil, want)
		}
	}
}

func TestDirMigration(t *testing.T) {
	parent := t.TempDir()
	p := filepath.Join(parent, "current")
	os.MkdirAll(filepath.Join(p, "lib", "deep"), 0o750)
	os.WriteFile(filepath.Join(p, "lib", "deep", "data"), []byte("d"), 0o600)
	os.Symlink("lib/deep/data", filepath.Join(p, "link"))
	before, _ := os.Stat(filepath.Join(p, "lib", "deep", "data"))
	d, err := slots.NewDir(p)
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(p); err != nil || target != ".current.switchback/a" {
		t.Errorf("%s -> %q, %v; want .current.switchback/a", p, target, err)
	}
	after, err := os.Stat(filepath.Join(p, "link"))
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("migrated file is not the factory file hard-linked: %v", err)
	}
	fi, err := os.Stat(filepath.Join(p, "lib"))
	if err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("lib: %v, %v; want mode 0750 kept", fi, err)
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 2 {
		t.Errorf("%d entries beside the path, want it and its state directory", len(ents))
	}
	st, err := d.Status(ctx)
	if err != nil || st.Booted != "a" || st.Primary != "a" {
		t.Errorf("Status = %+v, %v; want a booted and primary", st, err)
	}
}

func TestDirMigrationRefusesSpecialFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "current")
	os.Mkdir(p, 0o755)
	os.WriteFile(filepath.Join(p, "VERSION"), []byte("v1"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(p, "fifo"), 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	if _, err := slots.NewDir(p); err == nil {
		t.Fatalf("NewDir of a tree holding a fifo: got nil error, want one")
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.IsDir() {
		t.Errorf("%s is no longer the factory directory: %v, %v", p, fi, err)
	}
}

// TestFileConcurrentStarts counts starts from several instances at once,
// as separate processes would (each holds its own lock file descriptor):
// no try is lost or counted twice.
func TestFileConcurrentStarts(t *testing.T) {
	f := factoryFile(t, "v1")
	stage(t, f.Slots()[1], []byte("v2"))
	const starts = 8
	if err := f.Arm(ctx, "b", starts+1); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, starts)
	for range starts {
		go func() {
			g, err := slots.NewFile(f.Path())
			if err != nil {
				errs <- err
				return
			}
			_, err = g.CountStart(ctx)
			errs <- err
		}()
	}
	for range starts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, err := f.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Trial != "b" || st.TriesLeft != 1 {
		t.Errorf("after %d concurrent starts: %+v, want trial b with 1 try left", starts, st)
	}
}
