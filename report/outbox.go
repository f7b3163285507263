package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Outbox is a bounded, durable queue of records in a directory: one file
// per record, named by its sequence number, plus a file counting the
// records dropped because the outbox was full. Safe for concurrent use by
// the goroutines of one process; one process per directory.
type Outbox struct {
	dir                  string
	maxRecords, maxBytes int64

	mu      sync.Mutex
	seqs    []uint64 // records on disk, oldest first
	sizes   map[uint64]int64
	bytes   int64
	next    uint64 // sequence number of the next record
	dropped uint64 // records dropped and not yet reported
}

const (
	recordExt   = ".json"
	droppedFile = "dropped"
	nextFile    = "next"
)

// OpenOutbox opens (creating) the outbox in dir, bounded to maxRecords
// records and maxBytes bytes of record files (each at least 1).
// Temporary files a crash left behind are removed.
func OpenOutbox(dir string, maxRecords, maxBytes int64) (*Outbox, error) {
	if maxRecords < 1 || maxBytes < 1 {
		return nil, errors.New("report: outbox bounds must be positive")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	o := &Outbox{dir: dir, maxRecords: maxRecords, maxBytes: maxBytes, sizes: map[uint64]int64{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, recordExt), 10, 64)
		if err != nil || !strings.HasSuffix(name, recordExt) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		o.seqs = append(o.seqs, seq)
		o.sizes[seq] = info.Size()
		o.bytes += info.Size()
		o.next = max(o.next, seq+1)
	}
	slices.Sort(o.seqs)
	o.dropped = readCounter(filepath.Join(dir, droppedFile))
	o.next = max(o.next, readCounter(filepath.Join(dir, nextFile)))
	return o, nil
}

// Add assigns r the next sequence number and stores it durably, dropping
// the oldest records (counted) while the outbox would exceed its bounds.
func (o *Outbox) Add(r Record) (Record, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r.Seq = o.next
	b, err := json.Marshal(r)
	if err != nil {
		return r, fmt.Errorf("report: %w", err)
	}
	size := int64(len(b))
	var drop []uint64
	for n := int64(len(o.seqs)); len(drop) < len(o.seqs) && (n+1 > o.maxRecords || o.bytes-o.sizesOf(drop)+size > o.maxBytes); n-- {
		drop = append(drop, o.seqs[len(drop)])
	}
	if len(drop) > 0 {
		// Count first: a crash after the count and before the removal
		// over-counts drops rather than losing records silently.
		if err := writeFileDurable(o.dir, droppedFile, []byte(strconv.FormatUint(o.dropped+uint64(len(drop)), 10))); err != nil {
			return r, err
		}
		o.dropped += uint64(len(drop))
		for _, seq := range drop {
			os.Remove(o.path(seq))
			o.bytes -= o.sizes[seq]
			delete(o.sizes, seq)
		}
		o.seqs = o.seqs[len(drop):]
	}
	if err := writeFileDurable(o.dir, name(r.Seq), b); err != nil {
		return r, err
	}
	o.seqs = append(o.seqs, r.Seq)
	o.sizes[r.Seq] = size
	o.bytes += size
	o.next++
	return r, nil
}

func (o *Outbox) sizesOf(seqs []uint64) (n int64) {
	for _, s := range seqs {
		n += o.sizes[s]
	}
	return n
}

// Peek returns up to n of the oldest records and the drop count to report
// with them.
func (o *Outbox) Peek(n int) ([]Record, uint64, error) {
	o.mu.Lock()
	seqs := slices.Clone(o.seqs[:min(n, len(o.seqs))])
	dropped := o.dropped
	o.mu.Unlock()
	var recs []Record
	for _, seq := range seqs {
		b, err := os.ReadFile(o.path(seq))
		if errors.Is(err, os.ErrNotExist) {
			continue // dropped meanwhile
		}
		if err != nil {
			return nil, 0, fmt.Errorf("report: %w", err)
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			continue // a torn file cannot be: it was renamed complete
		}
		recs = append(recs, r)
	}
	return recs, dropped, nil
}

// Ack removes records sent and acknowledged, and subtracts the drop count
// that went with them.
func (o *Outbox) Ack(recs []Record, dropped uint64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if dropped > 0 {
		o.dropped -= min(dropped, o.dropped)
		if err := writeFileDurable(o.dir, droppedFile, []byte(strconv.FormatUint(o.dropped, 10))); err != nil {
			return err
		}
	}
	acked := map[uint64]bool{}
	for _, r := range recs {
		acked[r.Seq] = true
	}
	if !slices.ContainsFunc(o.seqs, func(s uint64) bool { return !acked[s] }) {
		// Emptying the outbox: persist the sequence first, so that it
		// goes on after a restart and receivers can deduplicate on it.
		if err := writeFileDurable(o.dir, nextFile, []byte(strconv.FormatUint(o.next, 10))); err != nil {
			return err
		}
	}
	for _, r := range recs {
		if _, ok := o.sizes[r.Seq]; !ok {
			continue
		}
		if err := os.Remove(o.path(r.Seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("report: %w", err)
		}
		o.bytes -= o.sizes[r.Seq]
		delete(o.sizes, r.Seq)
		o.seqs = slices.DeleteFunc(o.seqs, func(s uint64) bool { return s == r.Seq })
	}
	return nil
}

// Len returns the number of records and bytes held, and the records
// dropped and not yet reported.
func (o *Outbox) Len() (records int, bytes int64, dropped uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.seqs), o.bytes, o.dropped
}

func (o *Outbox) path(seq uint64) string { return filepath.Join(o.dir, name(seq)) }

func name(seq uint64) string { return fmt.Sprintf("%020d%s", seq, recordExt) }

func readCounter(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// writeFileDurable writes dir/name through a synced temporary file and a
// rename, then syncs the directory.
func writeFileDurable(dir, name string, b []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("report: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
