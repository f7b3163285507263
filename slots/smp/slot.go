package smp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/switchback-ota/switchback/slots"
)

// maxImageSize bounds an image: MCUboot's sizes are 32-bit.
const maxImageSize = 1<<32 - 1

// slot is one logical slot of a Device; its bytes are staged in the
// device's directory on the gateway.
type slot struct {
	d    *Device
	name string
}

func (s *slot) Name() string { return s.name }

func (s *slot) path() string { return filepath.Join(s.d.cfg.Dir, s.name+".img") }

// Writer stages an image for the slot. The slot running on the device,
// and the committed one, are refused with slots.ErrSlotActive: asking
// which they are takes one request to the device.
func (s *slot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("smp: slot %s: negative size %d", s.name, size)
	}
	limit, err := s.d.maxImage(ctx)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("smp: device %s slot %s: %d bytes, slot holds %d: %w", s.d.cfg.Name, s.name, size, limit, slots.ErrTooLarge)
	}
	bs, err := s.d.Status(ctx)
	if err != nil {
		return nil, err
	}
	if s.name == bs.Booted || s.name == bs.Primary {
		return nil, fmt.Errorf("smp: device %s slot %s: %w", s.d.cfg.Name, s.name, slots.ErrSlotActive)
	}
	f, err := os.OpenFile(s.path(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return &writer{f: f, size: size}, nil
}

// Reader reads the staged image of the slot; a slot whose image the
// gateway never staged (the factory image) is empty.
func (s *slot) Reader(ctx context.Context) (slots.Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("smp: device %s slot %s: %w", s.d.cfg.Name, s.name, slots.ErrEmpty)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &reader{f: f, size: fi.Size()}, nil
}

// parse checks the staged image strictly.
func (s *slot) parse() (*Image, error) {
	f, err := os.Open(s.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("slot %s: %w", s.name, slots.ErrEmpty)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return ParseImage(f, fi.Size())
}

// maxImage is the largest image the device takes.
func (d *Device) maxImage(ctx context.Context) (int64, error) {
	if d.cfg.SlotSize > 0 {
		return d.cfg.SlotSize, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st.SlotSize > 0 {
		return d.st.SlotSize, nil
	}
	info, err := d.c.SlotInfo(ctx)
	if IsRC(err, RCNotSup) {
		return maxImageSize, nil // the device will say at upload
	}
	if err != nil {
		return 0, fmt.Errorf("smp: device %s: slot info: %w", d.cfg.Name, err)
	}
	size := int64(maxImageSize)
	for _, im := range info {
		if im.Image != 0 {
			continue
		}
		for _, s := range im.Slots {
			if s.Slot == 1 {
				size = min(size, int64(s.Size))
			}
		}
		if im.MaxImageSize != nil {
			size = min(size, int64(*im.MaxImageSize))
		}
	}
	d.st.SlotSize = size
	return size, d.save()
}

func fileSHA256(r io.ReaderAt, size int64) ([]byte, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// writer stages an image in a file. Its bytes are in the kernel once
// WriteAt returns, and Sync may run beside WriteAt (pwrite and fsync).
type writer struct {
	f    *os.File
	size int64

	mu     sync.Mutex
	closed bool
}

var errClosed = errors.New("smp: slot writer or reader is closed")

func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, fmt.Errorf("smp: write of %d bytes at %d outside an image of %d", len(p), off, w.size)
	}
	if w.isClosed() {
		return 0, errClosed
	}
	return w.f.WriteAt(p, off)
}

func (w *writer) Sync() error {
	if w.isClosed() {
		return errClosed
	}
	return w.f.Sync()
}

func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.f.Close()
}

func (w *writer) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// KernelBuffered reports that written bytes outlive the process.
func (w *writer) KernelBuffered() bool { return true }

type reader struct {
	f    *os.File
	size int64

	mu     sync.Mutex
	closed bool
}

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return 0, errClosed
	}
	if off >= r.size {
		return 0, io.EOF
	}
	return r.f.ReadAt(p, off)
}

func (r *reader) Size() int64 { return r.size }

func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return r.f.Close()
}

var (
	_ slots.Slot           = (*slot)(nil)
	_ slots.KernelBuffered = (*writer)(nil)
)
