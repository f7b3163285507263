package slotstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/switchback-ota/switchback/slots"
)

// MemSlot is an in-memory [slots.Slot] with fault-injection knobs and
// counters for tests. It keeps two copies of its image: what was written,
// and what was durable at the last successful Sync; a [PowerCut] reverts
// the first to the second.
//
// A MemSlot is safe for concurrent use, though the Slot contract does not
// require it.
type MemSlot struct {
	mu       sync.Mutex
	name     string
	capacity int64
	pc       *PowerCut
	boot     *FakeBoot

	data   []byte // what reads see
	has    bool   // a Writer was opened: the slot holds an image
	synced []byte // durable copy of data
	shas   bool
	gen    int // bumped at power-on: writers of an earlier generation fail

	running   bool
	failBytes int64 // -1: off
	failCalls int   // -1: off
	written   int64
	calls     int
	syncs     int
}

// MemOption configures a [MemSlot].
type MemOption func(*MemSlot)

// WithPowerCut attaches the slot to a power switch: its WriteAt and Sync
// calls count as write operations, and un-synced bytes are lost at a cut.
func WithPowerCut(pc *PowerCut) MemOption {
	return func(m *MemSlot) { m.pc = pc }
}

// WithBoot makes the slot refuse writers with [slots.ErrSlotActive] while
// boot reports it booted or primary, as a real slot does for the running
// one.
func WithBoot(boot *FakeBoot) MemOption {
	return func(m *MemSlot) { m.boot = boot }
}

// NewMemSlot returns an empty slot named name that holds images of up to
// capacity bytes.
func NewMemSlot(name string, capacity int64, opts ...MemOption) *MemSlot {
	m := &MemSlot{name: name, capacity: capacity, failBytes: -1, failCalls: -1}
	for _, o := range opts {
		o(m)
	}
	if m.pc != nil {
		m.pc.attach(m)
	}
	return m
}

// Name returns the slot's name.
func (m *MemSlot) Name() string { return m.name }

// SetRunning marks the slot as the running one (or not): while it is,
// Writer fails with [slots.ErrSlotActive].
func (m *MemSlot) SetRunning(running bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running = running
}

// FailWritesAfterBytes makes writes fail with [ErrInjected] once n more
// bytes have been written: the write that crosses the limit writes the
// bytes below it and reports how many. A negative n turns the fault off.
func (m *MemSlot) FailWritesAfterBytes(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n < 0 {
		m.failBytes = -1
		return
	}
	m.failBytes = m.written + n
}

// FailWritesAfterCalls makes every WriteAt call after the next n fail with
// [ErrInjected], writing nothing. A negative n turns the fault off.
func (m *MemSlot) FailWritesAfterCalls(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n < 0 {
		m.failCalls = -1
		return
	}
	m.failCalls = m.calls + n
}

// BytesWritten reports how many bytes WriteAt calls have written in total.
func (m *MemSlot) BytesWritten() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.written
}

// WriteCalls reports how many WriteAt calls have succeeded (fully or in
// part).
func (m *MemSlot) WriteCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// Syncs reports how many Sync calls have succeeded.
func (m *MemSlot) Syncs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

// Bytes returns a copy of the image the slot holds, or nil if it holds
// none. While the power is cut it returns what will survive: the image at
// the last Sync.
func (m *MemSlot) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pc.check() != nil {
		if !m.shas {
			return nil
		}
		return bytes.Clone(m.synced)
	}
	if !m.has {
		return nil
	}
	return append([]byte{}, m.data...)
}

// SetImage makes img the slot's image, durable, as if written and synced
// long ago (a factory image); it counts no write operation. Use it to set
// up the running slot of a test.
func (m *MemSlot) SetImage(img []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append([]byte{}, img...)
	m.synced = append([]byte{}, img...)
	m.has, m.shas = true, true
}

// SyncedBytes returns a copy of the image as it was at the last successful
// Sync, or nil if nothing was synced: what survives a power cut.
func (m *MemSlot) SyncedBytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.shas {
		return nil
	}
	return append([]byte{}, m.synced...)
}

func (m *MemSlot) powerOn() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = bytes.Clone(m.synced)
	m.has = m.shas
	m.gen++
}

// Writer opens the slot to receive an image of size bytes, keeping the
// bytes already there (resized to size).
func (m *MemSlot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("slotstest: slot %s: %w", m.name, err)
	}
	if size < 0 {
		return nil, fmt.Errorf("slotstest: slot %s: negative image size %d", m.name, size)
	}
	if size > m.capacity {
		return nil, fmt.Errorf("slotstest: slot %s: %d bytes, capacity %d: %w", m.name, size, m.capacity, slots.ErrTooLarge)
	}
	if m.boot != nil {
		st, err := m.boot.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("slotstest: slot %s: %w", m.name, err)
		}
		if st.Booted == m.name || st.Primary == m.name {
			return nil, fmt.Errorf("slotstest: slot %s: %w", m.name, slots.ErrSlotActive)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.pc.check(); err != nil {
		return nil, err
	}
	if m.running {
		return nil, fmt.Errorf("slotstest: slot %s: %w", m.name, slots.ErrSlotActive)
	}
	if int64(len(m.data)) > size {
		m.data = m.data[:size]
	} else {
		m.data = append(m.data, make([]byte, size-int64(len(m.data)))...)
	}
	m.has = true
	return &memWriter{m: m, size: size, gen: m.gen}, nil
}

// Reader opens the image the slot holds. It fails with [slots.ErrEmpty]
// if no Writer was ever opened (or none survived a power cut).
func (m *MemSlot) Reader(ctx context.Context) (slots.Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("slotstest: slot %s: %w", m.name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.pc.check(); err != nil {
		return nil, err
	}
	if !m.has {
		return nil, fmt.Errorf("slotstest: slot %s: %w", m.name, slots.ErrEmpty)
	}
	return &memReader{r: bytes.NewReader(bytes.Clone(m.data)), pc: m.pc}, nil
}

type memWriter struct {
	m      *MemSlot
	size   int64
	gen    int
	closed bool
}

var errClosed = errors.New("slotstest: writer is closed")

func (w *memWriter) WriteAt(p []byte, off int64) (int, error) {
	m := w.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.closed {
		return 0, errClosed
	}
	if w.gen != m.gen {
		return 0, fmt.Errorf("slotstest: slot %s: writer opened before a power cut: %w", m.name, ErrPowerCut)
	}
	end := off + int64(len(p))
	if off < 0 || end > w.size || end > int64(len(m.data)) {
		return 0, fmt.Errorf("slotstest: slot %s: write of %d bytes at offset %d outside image of %d bytes", m.name, len(p), off, w.size)
	}
	if err := m.pc.write(); err != nil {
		return 0, err
	}
	if m.failCalls >= 0 && m.calls >= m.failCalls {
		return 0, fmt.Errorf("slotstest: slot %s: write call %d: %w", m.name, m.calls+1, ErrInjected)
	}
	n := len(p)
	var err error
	if m.failBytes >= 0 && m.written+int64(n) > m.failBytes {
		n = int(m.failBytes - m.written)
		err = fmt.Errorf("slotstest: slot %s: after %d bytes: %w", m.name, m.failBytes, ErrInjected)
	}
	copy(m.data[off:], p[:n])
	m.calls++
	m.written += int64(n)
	return n, err
}

func (w *memWriter) Sync() error {
	m := w.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.closed {
		return errClosed
	}
	if w.gen != m.gen {
		return fmt.Errorf("slotstest: slot %s: writer opened before a power cut: %w", m.name, ErrPowerCut)
	}
	if err := m.pc.write(); err != nil {
		return err
	}
	m.synced = bytes.Clone(m.data)
	if m.synced == nil {
		m.synced = []byte{}
	}
	m.shas = m.has
	m.syncs++
	return nil
}

// Close is idempotent: later calls return nil.
func (w *memWriter) Close() error {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	w.closed = true
	return nil
}

type memReader struct {
	r      *bytes.Reader
	pc     *PowerCut
	closed bool
}

func (r *memReader) ReadAt(p []byte, off int64) (int, error) {
	if r.closed {
		return 0, errors.New("slotstest: reader is closed")
	}
	if err := r.pc.check(); err != nil {
		return 0, err
	}
	return r.r.ReadAt(p, off)
}

func (r *memReader) Size() int64 { return r.r.Size() }

// Close is idempotent.
func (r *memReader) Close() error {
	r.closed = true
	return nil
}

var _ io.ReaderAt = (*memReader)(nil)
