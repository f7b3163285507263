package slots

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
)

// ErrUnsafeArchive is wrapped by the errors of a release archive that
// breaks the unpacking rules of [Dir]: a path escaping the directory, an
// entry written through a symlink, a device node or fifo, a duplicate
// entry, or a size or entry count over the [UnpackLimits]. It wraps
// [ErrBadImage]: the updater blocklists such a release.
var ErrUnsafeArchive = BadImageError("slots: unsafe archive")

// UnpackLimits bounds what one release archive may unpack to. A zero field
// takes its default.
type UnpackLimits struct {
	// MaxEntries is the most entries (files, directories, links) an
	// archive may hold. Default 100000.
	MaxEntries int
	// MaxFileSize is the largest size of one file. Default 4 GiB.
	MaxFileSize int64
	// MaxTotalSize is the largest sum of the sizes of all files.
	// Default 16 GiB.
	MaxTotalSize int64
}

// Default unpack limits.
const (
	DefaultMaxEntries   = 100_000
	DefaultMaxFileSize  = 4 << 30
	DefaultMaxTotalSize = 16 << 30
)

// maxNameLen bounds the length of one path in an archive (PATH_MAX).
const maxNameLen = 4096

func (l UnpackLimits) withDefaults() UnpackLimits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultMaxFileSize
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = DefaultMaxTotalSize
	}
	return l
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// zstdMaxWindow bounds the memory a zstd frame may ask for.
const zstdMaxWindow = 64 << 20

// decompress detects the archive's compression by its magic bytes: gzip,
// zstd, or none (a plain tar).
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("reading archive: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("reading gzip archive: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecoderMaxMemory(zstdMaxWindow))
		if err != nil {
			return nil, nil, fmt.Errorf("reading zstd archive: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// unpack extracts a tar archive (plain, gzip or zstd) into dst, an empty
// directory, and makes everything it created durable. Every write goes
// through an os.Root at dst, so nothing lands outside it even if a check
// below were wrong; the checks exist to give a clear error and to refuse
// archives that os.Root would accept but that are not sane releases.
//
// Rules: names are relative, and no component is ".."; no entry is
// written below a symlink of the archive; regular files, directories,
// symlinks and hard links to regular files already unpacked are allowed,
// nothing else (no devices, fifos, sockets); an entry may not replace an
// earlier one (a directory may repeat); the limits hold. Symlinks may point
// anywhere, since releases link to /etc or /var; they are never followed
// while unpacking. Permission bits are kept without setuid, setgid and
// sticky bits; directories get at least owner rwx. Owners and times are not
// restored.
func unpack(ctx context.Context, r io.Reader, dst string, lim UnpackLimits) error {
	lim = lim.withDefaults()
	dr, closeDR, err := decompress(r)
	if err != nil {
		return err
	}
	defer closeDR()
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{
		root:     root,
		lim:      lim,
		symlinks: map[string]bool{},
		files:    map[string]bool{},
		dirs:     map[string]bool{".": true},
	}
	cr := &countReader{r: dr}
	tr := tar.NewReader(cr)
	var end int64 // where the last entry's data ends in the tar stream
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if err := checkEnd(cr.n, end, u.entries); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return fmt.Errorf("reading archive entry %d: %w", u.entries+1, err)
		}
		if err := u.entry(ctx, hdr, tr); err != nil {
			return err
		}
		// What the entry did not read (data of a link or directory) is
		// part of it too: the end-of-archive marker follows all of it.
		if _, err := io.Copy(io.Discard, &ctxReader{ctx: ctx, r: tr}); err != nil {
			return fmt.Errorf("reading archive entry %d: %w", u.entries, err)
		}
		end = cr.n
	}
	// Durability, before dst is renamed into place: one syncfs of the
	// file system on Linux (an fsync per file costs a disk flush each,
	// which made unpacking ten times slower), else an fsync of every file
	// and directory.
	return syncTree(root, u.dirs, u.files)
}

// syncEach fsyncs every directory and regular file unpacked.
func syncEach(root *os.Root, dirs, files map[string]bool) error {
	for _, m := range []map[string]bool{files, dirs} {
		for name := range m {
			if err := syncRootFile(root, name); err != nil {
				return err
			}
		}
	}
	return nil
}

type unpacker struct {
	root     *os.Root
	lim      UnpackLimits
	entries  int
	total    int64
	symlinks map[string]bool // symlinks made: nothing may be written below them
	files    map[string]bool // regular files made: hard link targets
	dirs     map[string]bool // directories made, to fsync
}

func unsafeErr(name, format string, args ...any) error {
	return fmt.Errorf("archive entry %q: %s: %w", name, fmt.Sprintf(format, args...), ErrUnsafeArchive)
}

// cleanName validates an archive path and returns it cleaned, "." for the
// archive's root.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", unsafeErr(name, "empty name")
	case len(name) > maxNameLen:
		return "", unsafeErr(name[:64]+"...", "name longer than %d bytes", maxNameLen)
	case strings.ContainsRune(name, 0):
		return "", unsafeErr(name, "NUL in name")
	case path.IsAbs(name):
		return "", unsafeErr(name, "absolute path")
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", unsafeErr(name, "path escapes the directory (..)")
		}
	}
	return path.Clean(name), nil
}

// entry unpacks one archive entry, r its content, refusing what is unsafe
// or over the limits.
func (u *unpacker) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX metadata for what follows, not an entry
	}
	u.entries++
	if u.entries > u.lim.MaxEntries {
		return unsafeErr(hdr.Name, "more than %d entries", u.lim.MaxEntries)
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil
		}
		return unsafeErr(hdr.Name, "the archive's root must be a directory")
	}
	if err := u.checkPlace(hdr, name); err != nil {
		return err
	}
	perm := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.mkdirs(name); err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
		return u.root.Chmod(name, perm|0o700)
	case tar.TypeReg:
		return u.regular(ctx, hdr, name, perm, r)
	case tar.TypeSymlink:
		return u.symlink(hdr, name)
	case tar.TypeLink:
		return u.hardLink(hdr, name)
	case tar.TypeChar, tar.TypeBlock:
		return unsafeErr(hdr.Name, "device node")
	case tar.TypeFifo:
		return unsafeErr(hdr.Name, "fifo")
	}
	return unsafeErr(hdr.Name, "entry type %q not allowed", hdr.Typeflag)
}

// checkPlace refuses an entry whose place, name, is below a symlink of
// the archive or already taken (a directory may be repeated).
func (u *unpacker) checkPlace(hdr *tar.Header, name string) error {
	// No component above name may be a symlink of the archive: writing
	// through it could land anywhere it points.
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if u.symlinks[p] {
			return unsafeErr(hdr.Name, "below symlink %q", p)
		}
	}
	if fi, err := u.root.Lstat(name); err == nil {
		if !(hdr.Typeflag == tar.TypeDir && fi.IsDir()) {
			return unsafeErr(hdr.Name, "duplicate entry")
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	}
	return nil
}

// regular writes a regular file entry, within the size limits.
func (u *unpacker) regular(ctx context.Context, hdr *tar.Header, name string, perm fs.FileMode, r io.Reader) error {
	if hdr.Size < 0 || hdr.Size > u.lim.MaxFileSize {
		return unsafeErr(hdr.Name, "size %d over the limit of %d bytes per file", hdr.Size, u.lim.MaxFileSize)
	}
	u.total += hdr.Size
	if u.total > u.lim.MaxTotalSize {
		return unsafeErr(hdr.Name, "total size over the limit of %d bytes", u.lim.MaxTotalSize)
	}
	if err := u.mkdirs(path.Dir(name)); err != nil {
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	}
	if err := u.writeFile(ctx, name, perm, hdr.Size, r); err != nil {
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	}
	u.files[name] = true
	return nil
}

// symlink creates a symlink entry and records it, so that no later entry
// is written through it.
func (u *unpacker) symlink(hdr *tar.Header, name string) error {
	if hdr.Linkname == "" || strings.ContainsRune(hdr.Linkname, 0) || len(hdr.Linkname) > maxNameLen {
		return unsafeErr(hdr.Name, "invalid symlink target %q", hdr.Linkname)
	}
	if err := u.mkdirs(path.Dir(name)); err != nil {
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	}
	if err := u.root.Symlink(hdr.Linkname, name); err != nil {
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	}
	u.symlinks[name] = true
	return nil
}

// hardLink creates a hard link entry, only to a regular file written
// earlier from the archive.
func (u *unpacker) hardLink(hdr *tar.Header, name string) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return unsafeErr(hdr.Name, "hard link target: %v", err)
	}
	if !u.files[target] {
		return unsafeErr(hdr.Name, "hard link to %q, not a regular file earlier in the archive", hdr.Linkname)
	}
	if err := u.mkdirs(path.Dir(name)); err != nil {
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	}
	if err := u.root.Link(target, name); err != nil {
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	}
	return nil
}

// mkdirs creates dir and its missing parents, recording them for fsync.
func (u *unpacker) mkdirs(dir string) error {
	if u.dirs[dir] {
		return nil
	}
	if dir != "." {
		if err := u.mkdirs(path.Dir(dir)); err != nil {
			return err
		}
		if u.symlinks[dir] {
			return unsafeErr(dir, "directory path is a symlink of the archive")
		}
		if err := u.root.Mkdir(dir, 0o755); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return err
			}
			fi, err := u.root.Lstat(dir)
			if err != nil {
				return err
			}
			if !fi.IsDir() {
				return unsafeErr(dir, "used as a directory but is a %v", fi.Mode().Type())
			}
		}
	}
	u.dirs[dir] = true
	return nil
}

func (u *unpacker) writeFile(ctx context.Context, name string, perm fs.FileMode, size int64, r io.Reader) error {
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(&ctxReader{ctx: ctx, r: r}, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("archive truncated: %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	return f.Close()
}

// tarBlock is the unit of a tar stream: headers and padded data.
const tarBlock = 512

// checkEnd tells a complete archive from a truncated one once archive/tar
// reports io.EOF, which it also does when the input ends exactly at a
// block boundary before the end-of-archive marker, or after one of its two
// zero blocks: a truncated archive would unpack as a partial tree. read is
// how far the tar reader read, end where the last entry's data ended. The
// reader returns io.EOF past the padded data only after reading two zero
// blocks there (a zero block followed by anything else is ErrHeader), so
// two blocks read past it mean the marker is complete.
func checkEnd(read, end int64, entries int) error {
	padded := (end + tarBlock - 1) / tarBlock * tarBlock
	if read-padded < 2*tarBlock {
		return fmt.Errorf("archive truncated: no end-of-archive marker after entry %d: %w", entries, io.ErrUnexpectedEOF)
	}
	return nil
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncRootFile(root *os.Root, name string) error {
	d, err := root.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
