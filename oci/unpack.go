package oci

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/switchback-ota/switchback/slots"
)

// ErrUnsafeLayer is wrapped by the errors of a layer that breaks the
// unpacking rules: a path that escapes the root (absolute, ".."), an entry
// written through a symlink, a device node, fifo or other special file,
// a hard link to something that is not a regular file of the tree, or more
// entries or bytes than the limits.
var ErrUnsafeLayer = slots.BadImageError("oci: unsafe layer")

// Whiteout names of the OCI layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// layerReader decompresses a layer by its magic bytes: gzip, zstd or a
// plain tar.
func layerReader(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gzip: %v", ErrUnsafeLayer, err)
		}
		return z, func() { z.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br, zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: zstd: %v", ErrUnsafeLayer, err)
		}
		return z, z.Close, nil
	}
	return br, func() {}, nil
}

// applier applies the layers of one image, in order, to a root.
type applier struct {
	root    *os.Root
	lim     slots.UnpackLimits
	entries int
	total   int64
	layer   map[string]bool // paths written by the current layer
	devices bool            // device nodes allowed
}

// applyLayer applies one layer: whiteouts remove what lower layers wrote,
// entries replace what is there.
func (a *applier) applyLayer(ctx context.Context, r io.Reader) error {
	lr, done, err := layerReader(r)
	if err != nil {
		return err
	}
	defer done()
	a.layer = map[string]bool{}
	tr := tar.NewReader(lr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnsafeLayer, err)
		}
		if a.entries++; a.entries > a.lim.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeLayer, a.lim.MaxEntries)
		}
		if err := a.entry(hdr, tr); err != nil {
			return err
		}
	}
}

func unsafef(name, format string, args ...any) error {
	return fmt.Errorf("%w: %q: %s", ErrUnsafeLayer, name, fmt.Sprintf(format, args...))
}

// cleanName makes an entry name relative to the root, refusing absolute
// paths and "..".
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", unsafef(name, "absolute path")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", unsafef(name, "path with ..")
		}
	}
	c := path.Clean(name)
	if c == "." || len(c) > 4096 {
		return "", unsafef(name, "empty or too long")
	}
	return c, nil
}

// checkParents refuses a name whose parent directories are not all real
// directories (a symlink on the way would redirect the write).
func (a *applier) checkParents(name string) error {
	dir := path.Dir(name)
	for p := dir; p != "."; p = path.Dir(p) {
		fi, err := a.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return unsafef(name, "written through %s, which is not a directory", p)
		}
	}
	return a.root.MkdirAll(dir, 0o755)
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if err := a.checkParents(name); err != nil {
		return err
	}
	base := path.Base(name)
	if base == whiteoutOpaque {
		return a.opaque(path.Dir(name))
	}
	if w, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		return a.root.RemoveAll(path.Join(path.Dir(name), w))
	}
	a.layer[name] = true
	perm := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if fi, err := a.root.Lstat(name); err == nil && fi.IsDir() {
			return a.root.Chmod(name, perm)
		}
		if err := a.root.RemoveAll(name); err != nil {
			return err
		}
		return a.root.Mkdir(name, perm)
	case tar.TypeReg:
		return a.writeFile(name, perm, hdr.Size, r)
	case tar.TypeSymlink:
		if err := a.root.RemoveAll(name); err != nil {
			return err
		}
		return a.root.Symlink(hdr.Linkname, name)
	case tar.TypeLink:
		return a.link(name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		if a.devices {
			if err := a.root.RemoveAll(name); err != nil {
				return err
			}
			return mknod(a.root, name, hdr)
		}
	}
	return unsafef(name, "special file (type %q): device nodes and fifos are not unpacked", hdr.Typeflag)
}

// opaque removes what lower layers put in dir (an opaque whiteout).
func (a *applier) opaque(dir string) error {
	f, err := a.root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if p := path.Join(dir, n); !a.layer[p] {
			if err := a.root.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *applier) link(name, target string) error {
	t, err := cleanName(target)
	if err != nil {
		return err
	}
	if fi, err := a.root.Lstat(t); err != nil || !fi.Mode().IsRegular() {
		return unsafef(name, "hard link to %q, not a regular file of the tree", target)
	}
	if err := a.root.RemoveAll(name); err != nil {
		return err
	}
	return a.root.Link(t, name)
}

func (a *applier) writeFile(name string, perm fs.FileMode, size int64, r io.Reader) error {
	if size > a.lim.MaxFileSize {
		return unsafef(name, "%d bytes, over the limit of %d", size, a.lim.MaxFileSize)
	}
	if a.total += size; a.total > a.lim.MaxTotalSize {
		return unsafef(name, "the image unpacks to more than %d bytes", a.lim.MaxTotalSize)
	}
	if err := a.root.RemoveAll(name); err != nil {
		return err
	}
	f, err := a.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, io.LimitReader(r, size))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("oci: unpacking %s: %w", name, err)
	}
	return a.root.Chmod(name, perm)
}
