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

// UnpackOptions select the rules of an [Unpacker] beyond those of the
// release archives of [Dir].
type UnpackOptions struct {
	// Limits bound the entries and bytes of all the archives unpacked
	// together; zero fields take the defaults.
	Limits UnpackLimits
	// Layers applies the archives as OCI image layers, each over what the
	// earlier ones unpacked: an entry replaces what is at its place (a
	// directory over a directory stays and takes the new mode), a
	// whiteout ".wh.NAME" removes NAME, and an opaque whiteout
	// ".wh..wh..opq" removes what lower layers put in its directory.
	// Without it, an entry may not replace another and whiteout names are
	// plain files. A layer need not end with an end-of-archive marker:
	// its bytes are verified against a signed digest before they are
	// unpacked, and real tools write layers without one (umoci 0.4.7's
	// insert); a file cut short is still refused.
	Layers bool
	// Devices creates character and block device nodes (Linux only; the
	// process needs CAP_MKNOD) instead of refusing them. Fifos and other
	// special files are always refused.
	Devices bool
}

// Unpacker extracts tar archives (plain, gzip or zstd) into a directory
// under the safe-unpack rules of [Dir]; [Dir] uses one for each release
// archive, and an OCI image's layers go through one with
// [UnpackOptions].Layers. Every write goes through an os.Root at the
// directory, so nothing lands outside it even if a check below were wrong;
// the checks exist to give a clear error and to refuse archives that
// os.Root would accept but that are not sane releases.
//
// Rules: names are relative, and no component is ".."; no entry is
// written below a symlink of the archives; regular files, directories,
// symlinks and hard links to regular files already unpacked are allowed,
// nothing else (no devices unless [UnpackOptions].Devices, no fifos or
// sockets); an entry may not replace an earlier one (a directory may
// repeat) unless Layers; an archive ends with its end-of-archive marker
// (a layer need not); the limits hold. Symlinks may point anywhere, since
// releases link to /etc or /var; they are never followed while unpacking.
// Permission bits are kept without setuid, setgid and sticky bits;
// directories get at least owner rwx. Owners and times are not restored.
//
// An Unpacker is not safe for concurrent use.
type Unpacker struct{ u *unpacker }

// NewUnpacker returns an Unpacker into the directory dst, which only the
// Unpacker writes to while it is in use (empty, for release archives).
func NewUnpacker(dst string, opts UnpackOptions) (*Unpacker, error) {
	root, err := os.OpenRoot(dst)
	if err != nil {
		return nil, err
	}
	return &Unpacker{u: &unpacker{
		root:     root,
		lim:      opts.Limits.withDefaults(),
		layers:   opts.Layers,
		devices:  opts.Devices,
		symlinks: map[string]bool{},
		files:    map[string]bool{},
		dirs:     map[string]bool{".": true},
	}}, nil
}

// Unpack extracts one archive (one layer, with Layers), reading r to the
// end of the archive. After an error the directory holds a partial tree:
// discard it.
func (x *Unpacker) Unpack(ctx context.Context, r io.Reader) error { return x.u.archive(ctx, r) }

// Sync makes everything unpacked durable: one syncfs of the file system
// on Linux (an fsync per file costs a disk flush each, which made
// unpacking ten times slower), else an fsync of every file and directory.
func (x *Unpacker) Sync() error { return syncTree(x.u.root, x.u.dirs, x.u.files) }

// Close releases the directory.
func (x *Unpacker) Close() error { return x.u.root.Close() }

// unpack extracts the release archive r into dst, an empty directory, and
// makes everything it created durable (see [Unpacker]).
func unpack(ctx context.Context, r io.Reader, dst string, lim UnpackLimits) error {
	x, err := NewUnpacker(dst, UnpackOptions{Limits: lim})
	if err != nil {
		return err
	}
	defer x.Close()
	if err := x.Unpack(ctx, r); err != nil {
		return err
	}
	return x.Sync()
}

// archive extracts one archive, checking that a release archive is
// complete (see UnpackOptions.Layers for layers).
func (u *unpacker) archive(ctx context.Context, r io.Reader) error {
	dr, closeDR, err := decompress(r)
	if err != nil {
		return err
	}
	defer closeDR()
	u.layer = map[string]bool{}
	cr := &countReader{r: dr}
	tr := tar.NewReader(cr)
	var end int64 // where the last entry's data ends in the tar stream
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if u.layers {
				return nil // see UnpackOptions.Layers
			}
			return checkEnd(cr.n, end, u.entries)
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
	layers   bool // UnpackOptions.Layers
	devices  bool // UnpackOptions.Devices
	entries  int
	total    int64
	symlinks map[string]bool // symlinks made: nothing may be written below them
	files    map[string]bool // regular files made: hard link targets
	dirs     map[string]bool // directories made, to fsync
	layer    map[string]bool // names the current archive wrote (opaque whiteouts keep them)
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
	if u.layers {
		if ok, err := u.whiteout(hdr, name); ok || err != nil {
			return err
		}
		u.layer[name] = true
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
		if u.devices {
			return u.device(hdr, name)
		}
		return unsafeErr(hdr.Name, "device node")
	case tar.TypeFifo:
		return unsafeErr(hdr.Name, "fifo")
	}
	return unsafeErr(hdr.Name, "entry type %q not allowed", hdr.Typeflag)
}

// checkPlace refuses an entry whose place, name, is below a symlink of
// the archive or already taken (a directory may be repeated).
func (u *unpacker) checkPlace(hdr *tar.Header, name string) error {
	if err := u.checkParents(hdr, name); err != nil {
		return err
	}
	fi, err := u.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	case hdr.Typeflag == tar.TypeDir && fi.IsDir():
		return nil
	case u.layers:
		return u.remove(name) // a later layer replaces what is there
	}
	return unsafeErr(hdr.Name, "duplicate entry")
}

// checkParents refuses a name below a symlink of the archives: writing
// through it could land anywhere it points.
func (u *unpacker) checkParents(hdr *tar.Header, name string) error {
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if u.symlinks[p] {
			return unsafeErr(hdr.Name, "below symlink %q", p)
		}
	}
	return nil
}

// OCI layer whiteouts.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// whiteout applies the entry if it is a whiteout, and reports whether it
// was one.
func (u *unpacker) whiteout(hdr *tar.Header, name string) (bool, error) {
	base, dir := path.Base(name), path.Dir(name)
	hidden, ok := strings.CutPrefix(base, whiteoutPrefix)
	if !ok {
		return false, nil
	}
	if err := u.checkParents(hdr, name); err != nil {
		return true, err
	}
	if base == whiteoutOpaque {
		return true, u.opaque(dir)
	}
	if hidden == "" || hidden == "." || hidden == ".." {
		return true, unsafeErr(hdr.Name, "whiteout of no name")
	}
	return true, u.remove(path.Join(dir, hidden))
}

// opaque removes what lower layers put in dir.
func (u *unpacker) opaque(dir string) error {
	f, err := u.root.Open(dir)
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
		if p := path.Join(dir, n); !u.layer[p] {
			if err := u.remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// remove deletes name and everything below it, and forgets them.
func (u *unpacker) remove(name string) error {
	if err := u.root.RemoveAll(name); err != nil {
		return err
	}
	if u.dirs[name] {
		below := name + "/"
		for _, m := range []map[string]bool{u.symlinks, u.files, u.dirs, u.layer} {
			for p := range m {
				if strings.HasPrefix(p, below) {
					delete(m, p)
				}
			}
		}
	}
	for _, m := range []map[string]bool{u.symlinks, u.files, u.dirs} {
		delete(m, name)
	}
	return nil
}

// device creates a character or block device node entry.
func (u *unpacker) device(hdr *tar.Header, name string) error {
	if err := u.mkdirs(path.Dir(name)); err != nil {
		return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
	}
	if err := mknod(u.root, name, hdr); err != nil {
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
