package partition

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/switchback-ota/switchback/slots"
)

// DefaultBlockSize is the write size a Slot reports through
// [slots.BlockSizer] when Config.BlockSize is zero: large enough that
// the kernel issues big requests to the device, small enough to keep
// memory bounded.
const DefaultBlockSize = 1 << 20

// Config describes one partition slot. Zero values are sensible defaults
// except for Name and Device.
type Config struct {
	// Name is the slot's name ("a", "b"), as the BootControl knows it.
	Name string
	// Device names the partition: a path ("/dev/mmcblk0p2", or an image
	// file standing in for a device), "PARTUUID=<uuid>" or
	// "PARTLABEL=<label>", resolved through /dev/disk/by-partuuid and
	// /dev/disk/by-partlabel each time the slot is opened.
	Device string
	// Root is prepended to every absolute path the slot looks up: the
	// device path, /dev/disk/by-*, the command line and mountinfo files,
	// and devices named by them. Empty means the real root; tests set a
	// temporary directory.
	Root string
	// CmdlinePath is the kernel command line file; default /proc/cmdline.
	CmdlinePath string
	// MountInfoPath is the mount table; default /proc/self/mountinfo.
	MountInfoPath string
	// BlockSize is the preferred write size; default [DefaultBlockSize].
	BlockSize int
	// Size, for a regular file standing in for a partition, is the size
	// of the partition it stands for: a Writer extends the file up to
	// it, and an empty file reads as an empty slot. Zero means the
	// file's current length. It is ignored for block devices, whose size
	// is their own.
	Size int64
	// Boot, if set, is asked for the booted and the primary slot too: a
	// Writer on either is refused with [slots.ErrSlotActive], so that a
	// trial never overwrites the slot it would fall back to.
	Boot slots.BootControl
}

func (c *Config) validate() error {
	if c.Name == "" {
		return errors.New("partition: Config.Name is empty")
	}
	if c.Device == "" {
		return fmt.Errorf("partition: slot %s: Config.Device is empty", c.Name)
	}
	if c.BlockSize < 0 || c.BlockSize%512 != 0 {
		return fmt.Errorf("partition: slot %s: BlockSize %d is not a multiple of 512", c.Name, c.BlockSize)
	}
	if c.Size < 0 {
		return fmt.Errorf("partition: slot %s: negative Size %d", c.Name, c.Size)
	}
	if c.BlockSize == 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.CmdlinePath == "" {
		c.CmdlinePath = "/proc/cmdline"
	}
	if c.MountInfoPath == "" {
		c.MountInfoPath = "/proc/self/mountinfo"
	}
	return nil
}

// Slot is a [slots.Slot] over a raw partition or an image file. It
// implements [slots.BlockSizer].
//
// A Slot is safe for use by one goroutine at a time.
type Slot struct {
	cfg Config

	mu       sync.Mutex
	lastSize int64 // size given to the last Writer, -1 when unknown
}

var (
	_ slots.Slot       = (*Slot)(nil)
	_ slots.BlockSizer = (*Slot)(nil)
)

// New returns the slot cfg describes. It does not open the device: that
// happens, and the name is resolved, at each Writer and Reader.
func New(cfg Config) (*Slot, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Slot{cfg: cfg, lastSize: -1}, nil
}

// Name returns the slot's name.
func (s *Slot) Name() string { return s.cfg.Name }

// BlockSize returns the preferred size and alignment of writes.
func (s *Slot) BlockSize() int { return s.cfg.BlockSize }

func (s *Slot) path(p string) string {
	if s.cfg.Root == "" || !filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.cfg.Root, p)
}

// Device resolves the slot's device to a path (under Config.Root),
// following /dev/disk/by-* links.
func (s *Slot) Device() (string, error) {
	return s.resolve(s.cfg.Device)
}

// resolve turns a device name (path, PARTUUID=, PARTLABEL=) into a path.
func (s *Slot) resolve(name string) (string, error) {
	var p string
	switch {
	case strings.HasPrefix(name, "/") || !strings.Contains(name, "="):
		p = s.path(name)
	default:
		spec, err := ParseRoot(name)
		if err != nil {
			return "", err
		}
		switch spec.Kind {
		case "path":
			p = s.path(spec.Value)
		case "partuuid":
			p = s.path("/dev/disk/by-partuuid/" + spec.Value)
		case "partlabel":
			p = s.path("/dev/disk/by-partlabel/" + spec.Value)
		default:
			return "", fmt.Errorf("partition: %q: only device paths, PARTUUID= and PARTLABEL= name partitions", name)
		}
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("partition: resolve %s: %w", name, err)
	}
	return r, nil
}

// Running reports whether the slot is the one the system runs from, and
// why. Evidence is taken in this order, the first present decides: a
// switchback.slot=<name> kernel parameter (set by the shipped boot
// scripts); a root= kernel parameter (a path, PARTUUID= or PARTLABEL=);
// the device mounted on / in the mount table. It fails when none of them
// can be read, because then no write can be known to be safe.
func (s *Slot) Running(ctx context.Context) (bool, string, error) {
	if err := ctx.Err(); err != nil {
		return false, "", err
	}
	dev, err := s.Device()
	if err != nil {
		return false, "", err
	}
	var readErrs []error
	if data, err := os.ReadFile(s.path(s.cfg.CmdlinePath)); err != nil {
		readErrs = append(readErrs, err)
	} else {
		cl, err := ParseCmdline(string(data))
		if err != nil {
			return false, "", err
		}
		if v, ok := cl.Get("switchback.slot"); ok {
			return v == s.cfg.Name, "kernel parameter switchback.slot=" + v, nil
		}
		if v, ok := cl.Get("root"); ok {
			if spec, err := ParseRoot(v); err == nil {
				if p, err := s.resolve(specName(spec)); err == nil {
					return sameFile(p, dev), "kernel parameter root=" + v, nil
				}
			}
		}
	}
	if data, err := os.ReadFile(s.path(s.cfg.MountInfoPath)); err != nil {
		readErrs = append(readErrs, err)
	} else {
		mounts, err := ParseMountInfo(string(data))
		if err != nil {
			return false, "", err
		}
		if m, ok := RootMount(mounts); ok {
			why := fmt.Sprintf("root mounted from %s (%d:%d)", m.Source, m.Major, m.Minor)
			if strings.HasPrefix(m.Source, "/") {
				if p, err := s.resolve(m.Source); err == nil && sameFile(p, dev) {
					return true, why, nil
				}
			}
			return sameDevNumber(dev, m.Major, m.Minor), why, nil
		}
	}
	if len(readErrs) == 2 {
		return false, "", fmt.Errorf("partition: slot %s: cannot tell which slot runs: %w", s.cfg.Name, errors.Join(readErrs...))
	}
	return false, "no evidence of running from " + dev, nil
}

func specName(r RootSpec) string {
	switch r.Kind {
	case "path":
		return r.Value
	case "partuuid":
		return "PARTUUID=" + r.Value
	case "partlabel":
		return "PARTLABEL=" + r.Value
	}
	return strings.ToUpper(r.Kind) + "=" + r.Value
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// sameDevNumber reports whether dev is the block device major:minor.
func sameDevNumber(dev string, major, minor int) bool {
	fi, err := os.Stat(dev)
	if err != nil || fi.Mode()&os.ModeDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	rdev := uint64(st.Rdev)
	// Linux dev_t encoding (new_encode_dev / MKDEV in glibc).
	maj := int((rdev>>8)&0xfff | (rdev>>32)&^0xfff)
	min := int(rdev&0xff | (rdev>>12)&^0xff)
	return maj == major && min == minor
}

// mountedAt returns where the slot's device is mounted, if anywhere:
// writing under a mounted filesystem corrupts it. A missing mount table
// is not an error here (Running already required some evidence).
func (s *Slot) mountedAt() (string, error) {
	data, err := os.ReadFile(s.path(s.cfg.MountInfoPath))
	if err != nil {
		return "", nil
	}
	mounts, err := ParseMountInfo(string(data))
	if err != nil {
		return "", err
	}
	dev, err := s.Device()
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		if strings.HasPrefix(m.Source, "/") {
			if p, err := s.resolve(m.Source); err == nil && sameFile(p, dev) {
				return m.MountPoint, nil
			}
		}
		if sameDevNumber(dev, m.Major, m.Minor) {
			return m.MountPoint, nil
		}
	}
	return "", nil
}

// checkNotActive refuses the running slot, and the booted or primary
// slot of Config.Boot.
func (s *Slot) checkNotActive(ctx context.Context) error {
	running, why, err := s.Running(ctx)
	if err != nil {
		return err
	}
	if running {
		return fmt.Errorf("partition: slot %s (%s): %s: %w", s.cfg.Name, s.cfg.Device, why, slots.ErrSlotActive)
	}
	if at, err := s.mountedAt(); err != nil {
		return err
	} else if at != "" {
		return fmt.Errorf("partition: slot %s (%s) is mounted at %s: unmount it before writing: %w", s.cfg.Name, s.cfg.Device, at, slots.ErrSlotActive)
	}
	if s.cfg.Boot != nil {
		st, err := s.cfg.Boot.Status(ctx)
		if err != nil {
			return fmt.Errorf("partition: slot %s: boot status: %w", s.cfg.Name, err)
		}
		if st.Booted == s.cfg.Name {
			return fmt.Errorf("partition: slot %s: the boot control says it is booted: %w", s.cfg.Name, slots.ErrSlotActive)
		}
		if st.Primary == s.cfg.Name {
			return fmt.Errorf("partition: slot %s: it is the primary slot, the one a trial falls back to: %w", s.cfg.Name, slots.ErrSlotActive)
		}
	}
	return nil
}

// Writer opens the partition to receive an image of size bytes. It is
// refused, with an error wrapping [slots.ErrSlotActive], for the slot the
// system runs from (see [Slot.Running]) and, when Config.Boot is set, for
// its booted and primary slots; and, wrapping [slots.ErrTooLarge], when
// size exceeds the device. Nothing is truncated or erased: bytes already
// there stay, so an interrupted write resumes.
func (s *Slot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("partition: slot %s: negative image size %d", s.cfg.Name, size)
	}
	if err := s.checkNotActive(ctx); err != nil {
		return nil, err
	}
	dev, err := s.Device()
	if err != nil {
		return nil, err
	}
	// No O_CREATE, no O_TRUNC: the device (or image file) must exist and
	// keeps its size.
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("partition: slot %s: %w", s.cfg.Name, err)
	}
	devSize, capacity, regular, err := s.sizes(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("partition: slot %s: size of %s: %w", s.cfg.Name, dev, err)
	}
	if size > capacity {
		f.Close()
		return nil, fmt.Errorf("partition: slot %s: image of %d bytes, %s holds %d: %w", s.cfg.Name, size, dev, capacity, slots.ErrTooLarge)
	}
	if regular && size > devSize {
		// An image file grows to the image; it is never shrunk, so
		// that bytes of a longer interrupted write stay for a resume.
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("partition: slot %s: extend %s: %w", s.cfg.Name, dev, err)
		}
	}
	s.mu.Lock()
	s.lastSize = size
	s.mu.Unlock()
	return &writer{f: f, size: size, name: s.cfg.Name}, nil
}

// sizes returns the current size of the device or file, the most it can
// hold, and whether it is a regular file.
func (s *Slot) sizes(f *os.File) (size, capacity int64, regular bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, false, err
	}
	if fi.Mode().IsRegular() {
		size = fi.Size()
		capacity = max(size, s.cfg.Size)
		return size, capacity, true, nil
	}
	size, err = f.Seek(0, io.SeekEnd)
	return size, size, false, err
}

type writer struct {
	f    *os.File
	size int64
	name string
}

func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, fmt.Errorf("partition: slot %s: write of %d bytes at %d beyond image size %d", w.name, len(p), off, w.size)
	}
	return w.f.WriteAt(p, off)
}

// Sync flushes the written bytes to the device (fsync: for a block
// device, this also flushes the device's volatile write cache).
func (w *writer) Sync() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("partition: slot %s: sync: %w", w.name, err)
	}
	return nil
}

func (w *writer) Close() error { return w.f.Close() }

// KernelBuffered implements [slots.KernelBuffered]: WriteAt is a pwrite to
// the device (or image file) through the page cache.
func (w *writer) KernelBuffered() bool { return true }

// Reader opens the image the partition holds. Its Size is the size given
// to the last Writer this Slot opened, when there was one in this
// process, else the whole device: a partition does not record the length
// of its image, and the updater, which knows it from the TUF target, reads
// only that far. An empty device or image file (size 0) to which this Slot
// has not written fails with [slots.ErrEmpty].
func (s *Slot) Reader(ctx context.Context) (slots.Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dev, err := s.Device()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(dev)
	if err != nil {
		return nil, fmt.Errorf("partition: slot %s: %w", s.cfg.Name, err)
	}
	devSize, _, _, err := s.sizes(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("partition: slot %s: size of %s: %w", s.cfg.Name, dev, err)
	}
	s.mu.Lock()
	size := s.lastSize
	s.mu.Unlock()
	if size < 0 && devSize == 0 {
		f.Close()
		return nil, fmt.Errorf("partition: slot %s: %s is empty: %w", s.cfg.Name, dev, slots.ErrEmpty)
	}
	if size < 0 || size > devSize {
		size = devSize
	}
	return &reader{f: f, size: size}, nil
}

type reader struct {
	f    *os.File
	size int64
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	short := false
	if rem := r.size - off; int64(len(p)) > rem {
		p = p[:rem]
		short = true
	}
	n, err := r.f.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

func (r *reader) Size() int64  { return r.size }
func (r *reader) Close() error { return r.f.Close() }

// ErrVerify is returned by [Slot.Verify] when the bytes read back do not
// hash to the expected sum.
var ErrVerify = errors.New("partition: read-back verification failed")

// Verify reads back the first size bytes of the partition and checks that
// they hash to want with h (which is reset first). Before reading it asks
// the kernel to drop the device's cached pages (on Linux), so that the
// bytes come from the device rather than from memory, as far as the
// kernel allows without O_DIRECT. It reads in BlockSize chunks.
func (s *Slot) Verify(ctx context.Context, size int64, h hash.Hash, want []byte) error {
	dev, err := s.Device()
	if err != nil {
		return err
	}
	f, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("partition: slot %s: %w", s.cfg.Name, err)
	}
	defer f.Close()
	dropCache(f)
	h.Reset()
	buf := make([]byte, s.cfg.BlockSize)
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(len(buf))
		if size-off < n {
			n = size - off
		}
		m, err := f.ReadAt(buf[:n], off)
		h.Write(buf[:m])
		off += int64(m)
		if err != nil && off < size {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("partition: slot %s: %s ends at %d, before %d: %w", s.cfg.Name, dev, off, size, ErrVerify)
			}
			return fmt.Errorf("partition: slot %s: read back: %w", s.cfg.Name, err)
		}
	}
	if got := h.Sum(nil); string(got) != string(want) {
		return fmt.Errorf("partition: slot %s: read back %x, want %x: %w", s.cfg.Name, got, want, ErrVerify)
	}
	return nil
}
