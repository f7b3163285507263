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
	"github.com/switchback-ota/switchback/verify"
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
// They are shared by every stage of the pipeline (receive or decode, hash,
// write): 1 MiB in flight, enough for each of the three stages to work on a
// buffer of its own, with one to spare.
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
	// direct: the writer is kernel-buffered, so a write holds once WriteAt
	// returns (nothing written is lost with the process), and the durable
	// checkpoints (Sync, then save) run on a goroutine of their own, the
	// syncer, which skips to the newest checkpoint when it falls behind:
	// writes go on during an fsync.
	direct   bool
	syncReq  chan *ckRecord
	syncing  bool
	deferred *ckRecord
	idle     *sync.Cond // signalled when syncing ends
	// durable records a checkpoint once the slot is synced. It runs on the
	// writer goroutine (the syncer for direct writers), which owns the
	// state store while items are queued.
	durable func(*ckRecord) error
	light   *lightLog // nil: no light checkpoints

	items    chan wbItem
	free     chan []byte
	done     chan struct{} // closed when run returns
	syncDone chan struct{} // closed when syncer returns (direct only)

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
		wb.syncReq, wb.syncDone = make(chan *ckRecord, 1), make(chan struct{})
		go wb.syncer()
	}
	go wb.run()
	return wb
}

// syncer takes the durable checkpoints of a direct writer, the newest
// one waiting each time it is done with one.
func (wb *writeBehind) syncer() {
	defer close(wb.syncDone)
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

// requestSync hands a durable checkpoint to the syncer, or, while it is
// busy, leaves it as the next one (replacing an older one waiting).
func (wb *writeBehind) requestSync(ck *ckRecord) {
	wb.mu.Lock()
	if wb.syncing {
		wb.deferred = ck
		wb.mu.Unlock()
		return
	}
	wb.syncing = true
	wb.mu.Unlock()
	wb.syncReq <- ck
}

// waitSynced waits until the syncer is idle.
func (wb *writeBehind) waitSynced() {
	wb.mu.Lock()
	for wb.syncing {
		wb.idle.Wait()
	}
	wb.mu.Unlock()
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

// run is the writer goroutine: it writes the queued buffers in order and
// takes their checkpoints.
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
		if err == nil {
			err = wb.checkpoint(it)
		}
		if err != nil {
			wb.fail(err)
		}
		if it.flushed != nil {
			if wb.direct {
				wb.waitSynced()
			}
			close(it.flushed)
		}
	}
}

// checkpoint takes the checkpoints of an item whose bytes are written.
func (wb *writeBehind) checkpoint(it wbItem) error {
	rec := it.lt
	if rec == nil {
		rec = it.ck
	}
	if wb.direct {
		// The bytes are in the kernel: a light checkpoint holds at once,
		// and the fsync goes on beside the next writes.
		if rec != nil {
			wb.light.write(rec)
		}
		if it.ck != nil {
			wb.requestSync(it.ck)
		}
		return nil
	}
	if it.ck != nil {
		if err := wb.w.Sync(); err != nil {
			return fmt.Errorf("sync slot: %w", err)
		}
		if err := wb.durable(it.ck); err != nil {
			return err
		}
	}
	if rec != nil {
		wb.light.write(rec)
	}
	return nil
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
	wb.items <- it
	return nil
}

// close finishes what is queued and stops the goroutines.
func (wb *writeBehind) close() error {
	close(wb.items)
	<-wb.done
	if wb.direct {
		wb.waitSynced()
		close(wb.syncReq)
		<-wb.syncDone
	}
	return wb.failed()
}

// hashStage hashes the bytes bound for the slot on a goroutine of its own,
// between the stage that produces them (the download, or the zstd decoder)
// and the writer: on two cores, hashing one buffer overlaps writing the one
// before and receiving or decoding the one after. Items keep their order
// through every stage, so a checkpoint is completed here with the hash
// state at its offset, after every byte before it was hashed, and taken by
// the writer after every byte before it was written: the same checkpoints,
// in the same order, as when one goroutine did everything.
type hashStage struct {
	// v is the verifier the stage feeds (the wire one for plain targets,
	// the image one for compressed targets); it is called on the stage's
	// goroutine, which owns that verifier while items are queued.
	v func() *verify.Verifier
	// image: the state completes ckRecord.ImageHashState, not HashState.
	image bool
	what  string // for errors: the target and the stream hashed
	wb    *writeBehind
	items chan hsItem
	done  chan struct{}
}

// hsItem is a buffer to hash and write at off (if any), then a checkpoint
// at its end to complete (if any: durable or light), then a flush.
type hsItem struct {
	buf     []byte
	off     int64
	ck      *ckRecord
	durable bool
	flushed chan struct{}
}

func newHashStage(wb *writeBehind, v func() *verify.Verifier, image bool, what string) *hashStage {
	hs := &hashStage{v: v, image: image, what: what, wb: wb, items: make(chan hsItem, wbBuffers), done: make(chan struct{})}
	go hs.run()
	return hs
}

func (hs *hashStage) run() {
	defer close(hs.done)
	for it := range hs.items {
		w := wbItem{buf: it.buf, off: it.off, flushed: it.flushed}
		if err := hs.hash(it, &w); err != nil {
			hs.wb.fail(err)
		}
		if err := hs.wb.send(w); err != nil && w.flushed != nil {
			close(w.flushed)
		}
	}
}

// hash hashes it.buf and completes its checkpoint into w.
func (hs *hashStage) hash(it hsItem, w *wbItem) error {
	if hs.wb.failed() != nil {
		return nil // send frees the buffer
	}
	v := hs.v()
	if it.buf != nil {
		if _, err := v.Write(it.buf); err != nil {
			return fmt.Errorf("%s: %w", hs.what, err)
		}
	}
	if it.ck == nil {
		return nil
	}
	st, err := v.MarshalBinary()
	if err != nil {
		return err
	}
	if hs.image {
		it.ck.ImageHashState = st
	} else {
		it.ck.HashState = st
	}
	if it.durable {
		w.ck = it.ck
	} else {
		w.lt = it.ck
	}
	return nil
}

// send queues an item; it returns the first error of any later stage.
func (hs *hashStage) send(it hsItem) error {
	if err := hs.wb.failed(); err != nil {
		if it.buf != nil {
			hs.wb.free <- it.buf
		}
		return err
	}
	hs.items <- it
	return nil
}

// flush waits until everything queued is hashed, written and synced.
func (hs *hashStage) flush() error {
	ch := make(chan struct{})
	hs.items <- hsItem{flushed: ch}
	<-ch
	return hs.wb.failed()
}

// close finishes what is queued, then the writer.
func (hs *hashStage) close() error {
	close(hs.items)
	<-hs.done
	return hs.wb.close()
}

// A light checkpoint is a ckRecord written into a small file with one
// pwrite and no fsync, every buffer. It is trusted only by a process of the
// same boot (the kernel's boot_id), and only for slots whose writes are in
// the kernel once WriteAt returns ([slots.KernelBuffered]): then a killed
// and restarted process resumes within a buffer of where it died, while a
// power cut (a new boot) falls back to the last durable checkpoint.
type lightLog struct {
	f                  *os.File
	buf                []byte // the record being written, lightSize bytes
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
	if l.buf == nil {
		l.buf = make([]byte, lightSize)
	}
	err := encodeLightInto(l.buf, lightRecord{BootID: l.boot, TargetSHA256: l.target, Slot: l.slot, Ck: *ck})
	if err == nil {
		_, err = l.f.WriteAt(l.buf, 0)
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
	b := make([]byte, lightSize)
	return b, encodeLightInto(b, r)
}

// encodeLightInto lays out r in b, of lightSize bytes (as encodeLight),
// so that a transfer reuses one buffer for its records.
func encodeLightInto(b []byte, r lightRecord) error {
	j, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if 4+len(j)+sha256.Size > lightSize {
		return errors.New("light checkpoint too large")
	}
	binary.LittleEndian.PutUint32(b, uint32(len(j)))
	copy(b[4:], j)
	sum := sha256.Sum256(j)
	end := 4 + len(j) + copy(b[4+len(j):], sum[:])
	clear(b[end:]) // the padding: nothing of an older, longer record
	return nil
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
