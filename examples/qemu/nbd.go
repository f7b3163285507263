package main

// A small NBD server that serves the guest's disk from a raw image file and
// records, in order, every write, flush and FUA the guest's kernel issues.
//
// Protocol: the NBD protocol, fixed newstyle negotiation
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md):
// NBD_OPT_EXPORT_NAME and NBD_OPT_GO/NBD_OPT_INFO (other options answered
// NBD_REP_ERR_UNSUP, so simple replies only), then NBD_CMD_READ, WRITE
// (with NBD_CMD_FLAG_FUA), FLUSH, TRIM and DISC.
//
// Why our own and not nbdkit's log filter: a power cut must drop exactly
// the writes the guest has not flushed, and faults must hit chosen
// requests; both need the server's hands on each request, which a log
// filter in another process has not. The server keeps an undo record of
// every unflushed write, so Cut restores the disk to what a drive with a
// volatile cache may hold after power loss.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
)

// Protocol constants (proto.md, "Values").
const (
	nbdMagic           = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic        = 0x49484156454f5054 // "IHAVEOPT"
	nbdRepMagic        = 0x3e889045565a9
	nbdRequestMagic    = 0x25609513
	nbdSimpleReplyMagc = 0x67446698

	nbdFlagFixedNewstyle = 1 << 0
	nbdFlagNoZeroes      = 1 << 1

	nbdOptExportName = 1
	nbdOptAbort      = 2
	nbdOptInfo       = 6
	nbdOptGo         = 7

	nbdRepAck       = 1
	nbdRepInfo      = 3
	nbdRepErrUnsup  = 1<<31 + 1
	nbdInfoExport   = 0
	nbdFlagHasFlags = 1 << 0
	nbdFlagSendFlsh = 1 << 2
	nbdFlagSendFUA  = 1 << 3
	nbdFlagSendTrim = 1 << 5

	nbdCmdRead  = 0
	nbdCmdWrite = 1
	nbdCmdDisc  = 2
	nbdCmdFlush = 3
	nbdCmdTrim  = 4

	nbdCmdFlagFUA = 1 << 0

	nbdEIO    = 5
	nbdEINVAL = 22
	nbdENOSPC = 28

	// nbdMaxPayload bounds a request's length: QEMU sends at most 32 MiB.
	nbdMaxPayload = 32 << 20
)

// nbdRequest is one transmission-phase request.
type nbdRequest struct {
	Flags  uint16
	Type   uint16
	Cookie uint64
	Offset uint64
	Length uint32
}

// parseNBDRequest decodes the 28-byte request header. It is a pure
// function, fuzzed.
func parseNBDRequest(h []byte) (nbdRequest, error) {
	if len(h) != 28 {
		return nbdRequest{}, fmt.Errorf("nbd: request header is %d bytes, want 28", len(h))
	}
	if m := binary.BigEndian.Uint32(h[0:]); m != nbdRequestMagic {
		return nbdRequest{}, fmt.Errorf("nbd: bad request magic %#x", m)
	}
	r := nbdRequest{
		Flags:  binary.BigEndian.Uint16(h[4:]),
		Type:   binary.BigEndian.Uint16(h[6:]),
		Cookie: binary.BigEndian.Uint64(h[8:]),
		Offset: binary.BigEndian.Uint64(h[16:]),
		Length: binary.BigEndian.Uint32(h[24:]),
	}
	if r.Type == nbdCmdWrite && r.Length > nbdMaxPayload {
		return r, fmt.Errorf("nbd: write of %d bytes exceeds %d", r.Length, nbdMaxPayload)
	}
	return r, nil
}

// Write-log record kinds (one byte each).
const (
	logWrite = 'W' // a write, then its data
	logFUA   = 'U' // a write with FUA, then its data
	logFlush = 'F'
	logTrim  = 'T'
	logCut   = 'C' // a power cut: unflushed writes before it were dropped
)

// logRecord is one record of the write log: kind, offset, length, and for
// writes the data.
type logRecord struct {
	Kind   byte
	Offset int64
	Data   []byte
	Length uint32 // for trims; len(Data) for writes
}

// writeLogRecord appends a record: kind (1 byte), offset (8), length (4),
// big endian, then the data of a write.
func writeLogRecord(w io.Writer, r logRecord) error {
	var h [13]byte
	h[0] = r.Kind
	binary.BigEndian.PutUint64(h[1:], uint64(r.Offset))
	n := r.Length
	if r.Kind == logWrite || r.Kind == logFUA {
		n = uint32(len(r.Data))
	}
	binary.BigEndian.PutUint32(h[9:], n)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(r.Data)
	return err
}

// readLogRecord reads the next record; io.EOF at a clean end.
func readLogRecord(r io.Reader) (logRecord, error) {
	var h [13]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return logRecord{}, err
	}
	rec := logRecord{Kind: h[0], Offset: int64(binary.BigEndian.Uint64(h[1:])), Length: binary.BigEndian.Uint32(h[9:])}
	switch rec.Kind {
	case logWrite, logFUA:
		if rec.Length > nbdMaxPayload {
			return rec, fmt.Errorf("write log: record of %d bytes", rec.Length)
		}
		rec.Data = make([]byte, rec.Length)
		if _, err := io.ReadFull(r, rec.Data); err != nil {
			return rec, fmt.Errorf("write log: truncated write record: %w", err)
		}
	case logFlush, logTrim, logCut:
	default:
		return rec, fmt.Errorf("write log: unknown record kind %q", rec.Kind)
	}
	return rec, nil
}

// nbdFault decides whether a request fails: it returns 0, or the NBD error
// (nbdEIO, nbdENOSPC) to answer with. The disk is not changed by a failed
// request.
type nbdFault func(r nbdRequest) uint32

// undo is what an unflushed write overwrote.
type undo struct {
	off int64
	old []byte
}

// nbdServer serves one raw image file to one client at a time.
type nbdServer struct {
	ln   net.Listener
	disk *os.File
	size int64

	mu      sync.Mutex
	log     *bufio.Writer // nil when not recording
	logFile *os.File
	pending []undo // unflushed writes, oldest first
	conn    net.Conn
	fault   nbdFault
	stats   nbdStats
	// cutAt, when not 0, is the write or flush request (counting from 1)
	// at which the power goes: the server cuts before applying it and
	// closes cutDone.
	cutAt   int
	cutDone chan struct{}
	// off is set by a cut and cleared by PowerOn: no connection is served
	// in between (a client reconnecting after the cut must not write).
	off bool
}

// nbdStats counts requests, for the transcript.
type nbdStats struct {
	Writes, FUAs, Flushes, Trims, Faults int
	Dropped                              int // unflushed writes undone by cuts
	Bytes                                int64
}

// startNBD serves the raw image at path on a loopback TCP port; when
// logPath is not "" every write, FUA, flush and trim goes to it.
func startNBD(path, logPath string) (*nbdServer, error) {
	disk, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fi, err := disk.Stat()
	if err != nil {
		disk.Close()
		return nil, err
	}
	s := &nbdServer{disk: disk, size: fi.Size()}
	if logPath != "" {
		if s.logFile, err = os.Create(logPath); err != nil {
			disk.Close()
			return nil, err
		}
		s.log = bufio.NewWriterSize(s.logFile, 1<<20)
	}
	if s.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		s.Close()
		return nil, err
	}
	go s.accept()
	return s, nil
}

// URL is the drive QEMU opens.
func (s *nbdServer) URL() string { return "nbd://" + s.ln.Addr().String() }

func (s *nbdServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.off {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conn = c
		s.mu.Unlock()
		go func() {
			defer c.Close()
			if err := s.serve(c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				fmt.Fprintln(os.Stderr, "nbd:", err)
			}
		}()
	}
}

// SetFault installs (or, with nil, removes) a fault injector.
func (s *nbdServer) SetFault(f nbdFault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Stats returns the request counts so far.
func (s *nbdServer) Stats() nbdStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Cut is a power cut under the guest: the connection drops and every write
// not yet flushed (nor written with FUA) is undone, newest first, as a
// drive's volatile cache loses it. It returns how many writes were lost.
func (s *nbdServer) Cut() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cut()
}

// CutAt arms a cut at the n-th write or flush request from now (n ≥ 1):
// the server drops the connection and the unflushed writes just before
// applying it, whatever the guest's speed. The channel closes when the cut
// has happened.
func (s *nbdServer) CutAt(n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cutAt = s.stats.Writes + s.stats.Flushes + n
	s.cutDone = make(chan struct{})
	return s.cutDone
}

// PowerOn serves connections again after a cut.
func (s *nbdServer) PowerOn() {
	s.mu.Lock()
	s.off = false
	s.mu.Unlock()
}

// cut is Cut with the lock held.
func (s *nbdServer) cut() (int, error) {
	s.off = true
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	n := len(s.pending)
	s.stats.Dropped += n
	for i := len(s.pending) - 1; i >= 0; i-- {
		u := s.pending[i]
		if _, err := s.disk.WriteAt(u.old, u.off); err != nil {
			return n, err
		}
	}
	s.pending = nil
	if s.log != nil {
		if err := writeLogRecord(s.log, logRecord{Kind: logCut}); err != nil {
			return n, err
		}
	}
	return n, s.disk.Sync()
}

// Close stops the server and flushes the log.
func (s *nbdServer) Close() error {
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
	var errs []error
	if s.log != nil {
		errs = append(errs, s.log.Flush(), s.logFile.Close())
		s.log = nil
	}
	errs = append(errs, s.disk.Close())
	return errors.Join(errs...)
}
