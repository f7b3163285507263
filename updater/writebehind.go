package updater

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/switchback-ota/switchback/slots"
)

// Write-behind: the slot is written, synced and checkpointed from a
// goroutine of its own, so that receiving, hashing and decompressing go on
// while the slot waits for the disk. Without it every durable checkpoint
// stops the transfer for an fsync; with it the fsync of one checkpoint
// overlaps the download of the next bytes.
//
// At most wbBuffers buffers are in flight: when the slot is slower than the
// network, the transfer waits for a free buffer (and TCP for the transfer),
// so memory stays bounded and a killed process loses at most those buffers.
const (
	wbBuffers = 4
	wbBufSize = 256 << 10
)

// ckRecord is the resume point of a transfer: the fields of [pending] a
// checkpoint sets.
type ckRecord struct {
	Offset         int64  `json:"offset"`
	WireOffset     int64  `json:"wire_offset,omitempty"`
	HashState      []byte `json:"hash_state"`
	ImageHashState []byte `json:"image_hash_state,omitempty"`
	Validator      string `json:"validator,omitempty"`
}

// wbItem is one step for the writer goroutine, done in order: write buf at
// off (if any), then take the durable checkpoint ck (Sync, then save) or
// the light checkpoint lt, then close flushed.
type wbItem struct {
	buf     []byte
	off     int64
	ck, lt  *ckRecord
	flushed chan struct{}
}

type writeBehind struct {
	w       slots.Writer
	bufSize int
	// direct: the writer is kernel-buffered, so writes are made at once by
	// the caller (nothing received is lost with the process) and only the
	// durable checkpoints (Sync, then save) run on the goroutine, which
	// skips to the newest checkpoint when it falls behind.
	direct   bool
	syncReq  chan *ckRecord
	syncing  bool
	deferred *ckRecord
	idle     *sync.Cond // signalled when syncing ends
	// durable records a checkpoint once the slot is synced. It runs on the
	// writer goroutine, which owns the state store while items are queued.
	durable func(*ckRecord) error
	light   *lightLog // nil: no light checkpoints

	items chan wbItem
	free  chan []byte
	done  chan struct{}

	mu  sync.Mutex
	err error
}

func newWriteBehind(w slots.Writer, blockSize int, durable func(*ckRecord) error, light *lightLog) *writeBehind {
	size := wbBufSize
	if blockSize > 1 {
		size = (size + blockSize - 1) / blockSize * blockSize
	}
	wb := &writeBehind{
		w: w, bufSize: size, durable: durable, light: light,
		direct: kernelBuffered(w),
		items:  make(chan wbItem, 2*wbBuffers),
		free:   make(chan []byte, wbBuffers),
		done:   make(chan struct{}),
	}
	wb.idle = sync.NewCond(&wb.mu)
	for range wbBuffers {
		wb.free <- nil // allocated on first use
	}
	if wb.direct {
		wb.syncReq = make(chan *ckRecord, 1)
		go wb.syncer()
	} else {
		go wb.run()
	}
	return wb
}

// syncer takes the durable checkpoints of a direct writer, the newest
// one waiting each time it is done with one.
func (wb *writeBehind) syncer() {
	defer close(wb.done)
	for ck := range wb.syncReq {
		for ck != nil {
			err := wb.w.Sync()
			if err != nil {
				err = fmt.Errorf("sync slot: %w", err)
			} else {
				err = wb.durable(ck)
			}
			wb.mu.Lock()
			if err != nil && wb.err == nil {
				wb.err = err
			}
			ck, wb.deferred = wb.deferred, nil
			if ck == nil || wb.err != nil {
				ck = nil
				wb.syncing = false
				wb.idle.Broadcast()
			}
			wb.mu.Unlock()
		}
	}
}

// sendDirect writes at once and hands a durable checkpoint to the syncer.
func (wb *writeBehind) sendDirect(it wbItem) error {
	if it.buf != nil {
		_, err := wb.w.WriteAt(it.buf, it.off)
		wb.free <- it.buf
		if err != nil {
			err = fmt.Errorf("write slot: %w", err)
			wb.fail(err)
			return err
		}
	}
	rec := it.ck
	if rec == nil {
		rec = it.lt
	}
	if rec != nil {
		// The bytes are in the kernel: a light checkpoint holds at once.
		wb.light.write(rec)
	}
	if it.ck != nil {
		wb.mu.Lock()
		if wb.syncing {
			wb.deferred = it.ck
			wb.mu.Unlock()
			return nil
		}
		wb.syncing = true
		wb.mu.Unlock()
		wb.syncReq <- it.ck
	}
	return nil
}

// buffer returns an empty buffer of capacity bufSize, waiting for the
// writer to release one.
func (wb *writeBehind) buffer() []byte {
	b := <-wb.free
	if b == nil {
		b = make([]byte, 0, wb.bufSize)
	}
	return b[:0]
}

func (wb *writeBehind) run() {
	defer close(wb.done)
	for it := range wb.items {
		err := wb.failed()
		if err == nil && it.buf != nil {
			if _, werr := wb.w.WriteAt(it.buf, it.off); werr != nil {
				err = fmt.Errorf("write slot: %w", werr)
			}
		}
		if it.buf != nil {
			wb.free <- it.buf
		}
		if err == nil && it.ck != nil {
			if serr := wb.w.Sync(); serr != nil {
				err = fmt.Errorf("sync slot: %w", serr)
			} else {
				err = wb.durable(it.ck)
			}
		}
		if err == nil && wb.light != nil && (it.lt != nil || it.ck != nil) {
			rec := it.lt
			if rec == nil {
				rec = it.ck
			}
			wb.light.write(rec)
		}
		if err != nil {
			wb.fail(err)
		}
		if it.flushed != nil {
			close(it.flushed)
		}
	}
}

func (wb *writeBehind) fail(err error) {
	wb.mu.Lock()
	if wb.err == nil {
		wb.err = err
	}
	wb.mu.Unlock()
}

func (wb *writeBehind) failed() error {
	wb.mu.Lock()
	defer wb.mu.Unlock()
	return wb.err
}

// send queues an item. It returns the writer's first error, if any: the
// bytes of a failed write are not retried, and the last durable checkpoint
// stays where the slot is known good.
func (wb *writeBehind) send(it wbItem) error {
	if err := wb.failed(); err != nil {
		if it.buf != nil {
			wb.free <- it.buf
		}
		return err
	}
	if wb.direct {
		return wb.sendDirect(it)
	}
	wb.items <- it
	return nil
}

// writeAt copies b into buffers and queues them, for writers that do not
// checkpoint within b (the zstd decoder).
func (wb *writeBehind) writeAt(b []byte, off int64) error {
	for len(b) > 0 {
		buf := wb.buffer()
		n := min(len(b), wb.bufSize)
		buf = append(buf, b[:n]...)
		if err := wb.send(wbItem{buf: buf, off: off}); err != nil {
			return err
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// flush waits until everything queued is done.
func (wb *writeBehind) flush() error {
	if wb.direct {
		wb.mu.Lock()
		for wb.syncing {
			wb.idle.Wait()
		}
		wb.mu.Unlock()
		return wb.failed()
	}
	ch := make(chan struct{})
	if err := wb.send(wbItem{flushed: ch}); err != nil {
		return err
	}
	<-ch
	return wb.failed()
}

// close finishes what is queued and stops the goroutine.
func (wb *writeBehind) close() error {
	if wb.direct {
		err := wb.flush()
		close(wb.syncReq)
		<-wb.done
		return err
	}
	close(wb.items)
	<-wb.done
	return wb.failed()
}

// A light checkpoint is a ckRecord written into a small file with one
// pwrite and no fsync, every buffer. It is trusted only by a process of the
// same boot (the kernel's boot_id), and only for slots whose writes are in
// the kernel once WriteAt returns ([slots.KernelBuffered]): then a killed
// and restarted process resumes within a buffer of where it died, while a
// power cut (a new boot) falls back to the last durable checkpoint.
type lightLog struct {
	f                  *os.File
	path               string
	boot, target, slot string
	disabled           bool
}

// lightFile is the name of the light checkpoint in the state directory.
const lightFile = "transfer.light"

// lightSize is the fixed size of a record on disk; one page, so that a
// pwrite of it is never torn by a killed process in practice (and a torn
// one fails its checksum).
const lightSize = 4096

type lightRecord struct {
	BootID       string   `json:"boot_id"`
	TargetSHA256 string   `json:"target"`
	Slot         string   `json:"slot"`
	Ck           ckRecord `json:"checkpoint"`
}

// bootID identifies this boot of the kernel; "" when unknown, which turns
// light checkpoints off. A variable for tests.
var bootID = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// kernelBuffered reports whether w's writes survive the process.
func kernelBuffered(w slots.Writer) bool {
	kb, ok := w.(slots.KernelBuffered)
	return ok && kb.KernelBuffered()
}

// openLight opens the light checkpoint log of a transfer, or returns nil
// when light checkpoints cannot be trusted here.
func openLight(dir, target, slot string, w slots.Writer) *lightLog {
	if !kernelBuffered(w) {
		return nil
	}
	boot := bootID()
	if boot == "" {
		return nil
	}
	path := filepath.Join(dir, lightFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil
	}
	return &lightLog{f: f, path: path, boot: boot, target: target, slot: slot}
}

func (l *lightLog) write(ck *ckRecord) {
	if l == nil || l.disabled {
		return
	}
	b, err := encodeLight(lightRecord{BootID: l.boot, TargetSHA256: l.target, Slot: l.slot, Ck: *ck})
	if err == nil {
		_, err = l.f.WriteAt(b, 0)
	}
	if err != nil {
		// Only an optimisation: durable checkpoints go on.
		l.disabled = true
	}
}

// clear invalidates the record, when the transfer restarts or ends.
func (l *lightLog) clear() {
	if l == nil {
		return
	}
	_ = l.f.Truncate(0)
}

func (l *lightLog) close() {
	if l != nil {
		l.f.Close()
	}
}

// remove deletes the record once the transfer is verified.
func (l *lightLog) remove() {
	if l != nil {
		_ = os.Remove(l.path)
	}
}

// encodeLight lays out a record: 4-byte length, JSON, SHA-256 of the JSON,
// zero padding to lightSize.
func encodeLight(r lightRecord) ([]byte, error) {
	j, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if 4+len(j)+sha256.Size > lightSize {
		return nil, errors.New("light checkpoint too large")
	}
	b := make([]byte, lightSize)
	binary.LittleEndian.PutUint32(b, uint32(len(j)))
	copy(b[4:], j)
	sum := sha256.Sum256(j)
	copy(b[4+len(j):], sum[:])
	return b, nil
}

// decodeLight parses a record; anything short, torn or altered is refused.
func decodeLight(b []byte) (lightRecord, error) {
	var r lightRecord
	if len(b) < 4 {
		return r, errors.New("light checkpoint: short")
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n <= 0 || 4+n+sha256.Size > len(b) || 4+n+sha256.Size > lightSize {
		return r, errors.New("light checkpoint: bad length")
	}
	j := b[4 : 4+n]
	sum := sha256.Sum256(j)
	if !bytes.Equal(sum[:], b[4+n:4+n+sha256.Size]) {
		return r, errors.New("light checkpoint: checksum mismatch")
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("light checkpoint: %w", err)
	}
	if r.Ck.Offset < 0 || r.Ck.WireOffset < 0 {
		return r, errors.New("light checkpoint: negative offset")
	}
	return r, nil
}

// readLight returns the light checkpoint for target in slot left by an
// earlier process of this boot, if there is one.
func readLight(dir, target, slot string, w slots.Writer) (ckRecord, bool) {
	if !kernelBuffered(w) {
		return ckRecord{}, false
	}
	boot := bootID()
	if boot == "" {
		return ckRecord{}, false
	}
	b, err := os.ReadFile(filepath.Join(dir, lightFile))
	if err != nil {
		return ckRecord{}, false
	}
	r, err := decodeLight(b)
	if err != nil || r.BootID != boot || r.TargetSHA256 != target || r.Slot != slot {
		return ckRecord{}, false
	}
	return r.Ck, true
}
