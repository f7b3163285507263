package slots

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// tarEntry is one entry of a test archive.
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func file(name, body string) tarEntry { return tarEntry{name: name, body: body, typ: tar.TypeReg} }
func dirE(name string) tarEntry       { return tarEntry{name: name, typ: tar.TypeDir} }
func symlink(name, target string) tarEntry {
	return tarEntry{name: name, link: target, typ: tar.TypeSymlink}
}
func hardlink(name, target string) tarEntry {
	return tarEntry{name: name, link: target, typ: tar.TypeLink}
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if e.typ == tar.TypeDir {
				mode = 0o755
			}
		}
		size := int64(0)
		if e.typ == tar.TypeReg {
			size = int64(len(e.body))
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: size, Format: tar.FormatPAX}
		if e.typ == tar.TypeChar || e.typ == tar.TypeBlock {
			hdr.Devmajor, hdr.Devminor = 1, 3
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstded(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// unpackInto unpacks archive into a fresh directory inside a parent that
// also holds an "outside" directory, which must stay empty.
func unpackInto(t testing.TB, archive []byte, lim UnpackLimits) (dst, outside string, err error) {
	return unpackIn(t, t.TempDir(), archive, lim)
}

func unpackIn(t testing.TB, parent string, archive []byte, lim UnpackLimits) (dst, outside string, err error) {
	dst = filepath.Join(parent, "dst")
	outside = filepath.Join(parent, "outside")
	for _, d := range []string{dst, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err = unpack(context.Background(), bytes.NewReader(archive), dst, lim)
	return dst, outside, err
}

func TestUnpackAccepts(t *testing.T) {
	release := makeTar(t,
		dirE("./"),
		file("VERSION", "1.2.3"),
		tarEntry{name: "bin/app", body: "#!/bin/sh\n", typ: tar.TypeReg, mode: 0o4755},
		dirE("etc/"),
		dirE("etc/"), // repeated directory
		symlink("etc/conf", "/etc/gateway.conf"),
		symlink("bin/run", "app"),
		hardlink("bin/app2", "bin/app"),
		file("share/doc/deep/README", "read me"),
		file("empty", ""),
	)
	for _, c := range []struct {
		name    string
		archive []byte
	}{{"tar", release}, {"gzip", gzipped(t, release)}, {"zstd", zstded(t, release)}} {
		t.Run(c.name, func(t *testing.T) {
			dst, _, err := unpackInto(t, c.archive, UnpackLimits{})
			if err != nil {
				t.Fatalf("unpack: %v", err)
			}
			for name, want := range map[string]string{"VERSION": "1.2.3", "bin/app": "#!/bin/sh\n", "bin/app2": "#!/bin/sh\n", "bin/run": "#!/bin/sh\n", "share/doc/deep/README": "read me", "empty": ""} {
				got, err := os.ReadFile(filepath.Join(dst, name))
				if err != nil || string(got) != want {
					t.Errorf("%s = %q, %v; want %q", name, got, err, want)
				}
			}
			if got, err := os.Readlink(filepath.Join(dst, "etc/conf")); err != nil || got != "/etc/gateway.conf" {
				t.Errorf("etc/conf -> %q, %v; want /etc/gateway.conf", got, err)
			}
			fi, err := os.Stat(filepath.Join(dst, "bin/app"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fi.Mode(), fs.FileMode(0o755); got != want {
				t.Errorf("bin/app mode = %v, want %v (setuid dropped)", got, want)
			}
			fi2, _ := os.Stat(filepath.Join(dst, "bin/app2"))
			if !os.SameFile(fi, fi2) {
				t.Errorf("bin/app2 is not a hard link of bin/app")
			}
		})
	}
}

func TestUnpackRefuses(t *testing.T) {
	big := string(make([]byte, 2000))
	for _, c := range []struct {
		name    string
		entries []tarEntry
		lim     UnpackLimits
		unsafe  bool // error must wrap ErrUnsafeArchive
	}{
		{"dotdot", []tarEntry{file("../outside/x", "pwned")}, UnpackLimits{}, true},
		{"dotdot inside", []tarEntry{file("a/../../outside/x", "pwned")}, UnpackLimits{}, true},
		{"dotdot harmless", []tarEntry{file("a/../b", "x")}, UnpackLimits{}, true},
		{"absolute", []tarEntry{file("/tmp/x", "pwned")}, UnpackLimits{}, true},
		{"through symlink outside", []tarEntry{symlink("l", "../outside"), file("l/x", "pwned")}, UnpackLimits{}, true},
		{"through absolute symlink", []tarEntry{symlink("l", "/tmp"), file("l/x", "pwned")}, UnpackLimits{}, true},
		{"through symlink deep", []tarEntry{symlink("a", "."), file("a/b/c", "x")}, UnpackLimits{}, true},
		{"dir through symlink", []tarEntry{symlink("l", "../outside"), dirE("l/d")}, UnpackLimits{}, true},
		{"replace with symlink", []tarEntry{file("x", "a"), symlink("x", "../outside/x")}, UnpackLimits{}, true},
		{"symlink then dir", []tarEntry{symlink("d", "../outside"), dirE("d")}, UnpackLimits{}, true},
		{"duplicate file", []tarEntry{file("x", "a"), file("x", "b")}, UnpackLimits{}, true},
		{"file over dir", []tarEntry{dirE("x"), file("x", "b")}, UnpackLimits{}, true},
		{"char device", []tarEntry{{name: "null", typ: tar.TypeChar}}, UnpackLimits{}, true},
		{"block device", []tarEntry{{name: "sda", typ: tar.TypeBlock}}, UnpackLimits{}, true},
		{"fifo", []tarEntry{{name: "fifo", typ: tar.TypeFifo}}, UnpackLimits{}, true},
		{"hard link outside", []tarEntry{hardlink("x", "../outside/y")}, UnpackLimits{}, true},
		{"hard link absolute", []tarEntry{hardlink("x", "/etc/passwd")}, UnpackLimits{}, true},
		{"hard link to missing", []tarEntry{hardlink("x", "y")}, UnpackLimits{}, true},
		{"hard link to dir", []tarEntry{dirE("d"), hardlink("x", "d")}, UnpackLimits{}, true},
		{"hard link to symlink", []tarEntry{symlink("s", "/etc/passwd"), hardlink("x", "s")}, UnpackLimits{}, true},
		{"too many entries", []tarEntry{file("a", ""), file("b", ""), file("c", ""), file("d", "")}, UnpackLimits{MaxEntries: 3}, true},
		{"file too large", []tarEntry{file("big", big)}, UnpackLimits{MaxFileSize: 1000}, true},
		{"total too large", []tarEntry{file("a", big), file("b", big)}, UnpackLimits{MaxTotalSize: 3000}, true},
		{"root not a dir", []tarEntry{file(".", "x")}, UnpackLimits{}, true},
		{"empty symlink target", []tarEntry{symlink("s", "")}, UnpackLimits{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst, outside, err := unpackInto(t, makeTar(t, c.entries...), c.lim)
			if err == nil {
				t.Fatalf("unpack: got nil error, want one")
			}
			if c.unsafe && !errors.Is(err, ErrUnsafeArchive) {
				t.Errorf("unpack: got %v, want an error wrapping ErrUnsafeArchive", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("wrote outside the directory: %v", ents)
			}
			_ = dst
		})
	}
}

func TestUnpackBadArchives(t *testing.T) {
	good := makeTar(t, file("VERSION", "1.2.3"), file("more", "data data data"))
	zerosEnd := makeTar(t, file("VERSION", "1.2.3"), file("sparse.img", "data"+strings.Repeat("\x00", 2044)))
	for _, c := range []struct {
		name    string
		archive []byte
	}{
		{"truncated tar", good[:600]},
		{"no end-of-archive marker", good[:len(good)-1024]},
		// The last file ends in zero bytes: the archive's trailing zeros
		// are the file's, not an end-of-archive marker.
		{"cut after a file ending in zeros", zerosEnd[:len(zerosEnd)-1024]},
		{"cut inside the end-of-archive marker", zerosEnd[:len(zerosEnd)-512]},
		{"cut inside a file's padding", makeTar(t, file("odd", "x"))[:1024+1]},
		{"empty", nil},
		{"truncated gzip", gzipped(t, good)[:40]},
		{"truncated zstd", zstded(t, good)[:20]},
		{"gzip magic, garbage", []byte{0x1f, 0x8b, 0, 1, 2, 3}},
		{"zstd magic, garbage", []byte{0x28, 0xb5, 0x2f, 0xfd, 9, 9, 9, 9, 9}},
		{"garbage", bytes.Repeat([]byte("not a tar "), 100)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := unpackInto(t, c.archive, UnpackLimits{}); err == nil {
				t.Errorf("unpack: got nil error, want one")
			}
		})
	}
}

func TestUnpackCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := unpack(ctx, bytes.NewReader(makeTar(t, file("x", "y"))), t.TempDir(), UnpackLimits{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("unpack with a cancelled context: got %v, want context.Canceled", err)
	}
}

func FuzzUnpack(f *testing.F) {
	f.Add(makeTar(f, file("VERSION", "1"), dirE("d"), symlink("d/l", "../VERSION"), hardlink("h", "VERSION")))
	f.Add(makeTar(f, symlink("l", "../outside"), file("l/x", "pwned")))
	f.Add(makeTar(f, file("../x", "y")))
	f.Add(makeTar(f, tarEntry{name: "null", typ: tar.TypeChar}))
	f.Add(gzipped(f, makeTar(f, file("a/b/c", "z"))))
	f.Add(zstded(f, makeTar(f, file("a", "z"), file("a", "z"))))
	f.Add([]byte{})
	// One base directory per fuzzing process, one subdirectory per input,
	// removed at once: t.TempDir per input makes the testing package's
	// cleanup crawl on some file systems.
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, archive []byte) {
		parent, err := os.MkdirTemp(base, "")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(parent)
		lim := UnpackLimits{MaxEntries: 50, MaxFileSize: 1 << 16, MaxTotalSize: 1 << 18}
		dst, outside, err := unpackIn(t, parent, archive, lim)
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("wrote outside the directory: %v", ents)
		}
		if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 2 {
			t.Fatalf("parent holds %d entries, want dst and outside", len(entries))
		}
		if err != nil {
			return
		}
		// Only regular files, directories and symlinks.
		filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			if m := d.Type(); m != 0 && m != fs.ModeDir && m != fs.ModeSymlink {
				t.Errorf("%s has type %v", p, m)
			}
			return nil
		})
	})
}

// TestUnpackFileEndingInZeros: a complete archive whose last file ends in
// zero blocks unpacks whole (the end-of-archive check must not mistake the
// file's zeros for a marker, nor refuse them).
func TestUnpackFileEndingInZeros(t *testing.T) {
	body := "data" + strings.Repeat("\x00", 2044)
	for _, archive := range [][]byte{
		makeTar(t, file("VERSION", "1"), file("zeros.img", body)),
		makeTar(t, file("zeros.img", body), symlink("l", "zeros.img")),
		append(makeTar(t, file("zeros.img", body)), make([]byte, 8192)...), // padded to a record
	} {
		dst, _, err := unpackInto(t, archive, UnpackLimits{})
		if err != nil {
			t.Fatalf("unpack: %v", err)
		}
		if got, err := os.ReadFile(filepath.Join(dst, "zeros.img")); err != nil || string(got) != body {
			t.Errorf("zeros.img: %d bytes, err %v; want the %d bytes archived", len(got), err, len(body))
		}
	}
}
