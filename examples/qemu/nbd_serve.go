package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// errNBDDone ends a connection after NBD_CMD_DISC or NBD_OPT_ABORT.
var errNBDDone = errors.New("nbd: client disconnected")

// serve runs one connection: negotiation, then requests until the client
// disconnects or the connection is cut.
func (s *nbdServer) serve(c net.Conn) error {
	r := bufio.NewReaderSize(c, 1<<20)
	w := bufio.NewWriterSize(c, 1<<20)
	if err := s.negotiate(r, w); err != nil {
		if errors.Is(err, errNBDDone) {
			return nil
		}
		return err
	}
	h := make([]byte, 28)
	for {
		if _, err := io.ReadFull(r, h); err != nil {
			return err
		}
		req, err := parseNBDRequest(h)
		if err != nil {
			return err
		}
		if err := s.request(c, r, w, req); err != nil {
			if errors.Is(err, errNBDDone) {
				return nil
			}
			return err
		}
	}
}

// negotiate is the fixed newstyle handshake and option haggling, up to the
// option that starts transmission (EXPORT_NAME or GO).
func (s *nbdServer) negotiate(r *bufio.Reader, w *bufio.Writer) error {
	var hello [18]byte
	binary.BigEndian.PutUint64(hello[0:], nbdMagic)
	binary.BigEndian.PutUint64(hello[8:], nbdOptMagic)
	binary.BigEndian.PutUint16(hello[16:], nbdFlagFixedNewstyle|nbdFlagNoZeroes)
	if _, err := w.Write(hello[:]); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	var cf [4]byte
	if _, err := io.ReadFull(r, cf[:]); err != nil {
		return err
	}
	noZeroes := binary.BigEndian.Uint32(cf[:])&nbdFlagNoZeroes != 0
	for {
		opt, data, err := readOption(r)
		if err != nil {
			return err
		}
		done, err := s.option(w, opt, data, noZeroes)
		if err != nil || done {
			return err
		}
	}
}

// readOption reads one option request: magic, option, length, data.
func readOption(r io.Reader) (uint32, []byte, error) {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != nbdOptMagic {
		return 0, nil, fmt.Errorf("nbd: bad option magic %#x", m)
	}
	opt := binary.BigEndian.Uint32(h[8:])
	n := binary.BigEndian.Uint32(h[12:])
	if n > 4096 {
		return 0, nil, fmt.Errorf("nbd: option %d with %d bytes of data", opt, n)
	}
	data := make([]byte, n)
	_, err := io.ReadFull(r, data)
	return opt, data, err
}

// transmissionFlags are the export's flags: flush, FUA and trim supported.
const transmissionFlags = nbdFlagHasFlags | nbdFlagSendFlsh | nbdFlagSendFUA | nbdFlagSendTrim

// option answers one option; done is true when transmission begins.
func (s *nbdServer) option(w *bufio.Writer, opt uint32, data []byte, noZeroes bool) (bool, error) {
	switch opt {
	case nbdOptExportName:
		var b [10 + 124]byte
		binary.BigEndian.PutUint64(b[0:], uint64(s.size))
		binary.BigEndian.PutUint16(b[8:], transmissionFlags)
		out := b[:]
		if noZeroes {
			out = b[:10]
		}
		if _, err := w.Write(out); err != nil {
			return false, err
		}
		return true, w.Flush()
	case nbdOptInfo, nbdOptGo:
		var info [12]byte
		binary.BigEndian.PutUint16(info[0:], nbdInfoExport)
		binary.BigEndian.PutUint64(info[2:], uint64(s.size))
		binary.BigEndian.PutUint16(info[10:], transmissionFlags)
		if err := optionReply(w, opt, nbdRepInfo, info[:]); err != nil {
			return false, err
		}
		return opt == nbdOptGo, optionReply(w, opt, nbdRepAck, nil)
	case nbdOptAbort:
		optionReply(w, opt, nbdRepAck, nil)
		return false, errNBDDone
	default:
		// STRUCTURED_REPLY, SET_META_CONTEXT, LIST, STARTTLS, …: not
		// supported, and the client goes on with simple replies.
		return false, optionReply(w, opt, nbdRepErrUnsup, nil)
	}
}

// optionReply writes one option reply and flushes it.
func optionReply(w *bufio.Writer, opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], nbdRepMagic)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	w.Write(h[:])
	w.Write(data)
	return w.Flush()
}

// request serves one request and sends its simple reply.
func (s *nbdServer) request(c net.Conn, r io.Reader, w *bufio.Writer, req nbdRequest) error {
	var payload []byte
	if req.Type == nbdCmdWrite {
		payload = make([]byte, req.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return err
		}
	}
	if req.Type == nbdCmdDisc {
		return errNBDDone
	}
	if req.Type == nbdCmdRead && req.Length > nbdMaxPayload {
		return fmt.Errorf("nbd: read of %d bytes", req.Length)
	}
	data, code, err := s.apply(c, req, payload)
	if err != nil {
		return err
	}
	var h [16]byte
	binary.BigEndian.PutUint32(h[0:], nbdSimpleReplyMagc)
	binary.BigEndian.PutUint32(h[4:], code)
	binary.BigEndian.PutUint64(h[8:], req.Cookie)
	w.Write(h[:])
	if code == 0 {
		w.Write(data)
	}
	return w.Flush()
}

// apply performs a request on the disk under the lock. A request from a
// connection that a Cut has closed is dropped: it came after the power went.
func (s *nbdServer) apply(c net.Conn, req nbdRequest, payload []byte) ([]byte, uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != c {
		return nil, 0, net.ErrClosed
	}
	end := req.Offset + uint64(req.Length)
	if end < req.Offset || end > uint64(s.size) {
		return nil, nbdEINVAL, nil
	}
	if s.cutAt > 0 && (req.Type == nbdCmdWrite || req.Type == nbdCmdFlush) && s.stats.Writes+s.stats.Flushes+1 >= s.cutAt {
		s.cutAt = 0
		_, err := s.cut()
		close(s.cutDone)
		return nil, 0, errors.Join(net.ErrClosed, err)
	}
	if s.fault != nil {
		if code := s.fault(req); code != 0 {
			s.stats.Faults++
			return nil, code, nil
		}
	}
	off := int64(req.Offset)
	switch req.Type {
	case nbdCmdRead:
		data := make([]byte, req.Length)
		_, err := s.disk.ReadAt(data, off)
		return data, 0, err
	case nbdCmdWrite:
		return nil, 0, s.write(off, payload, req.Flags&nbdCmdFlagFUA != 0)
	case nbdCmdFlush:
		s.pending = nil
		s.stats.Flushes++
		return nil, 0, s.record(logRecord{Kind: logFlush})
	case nbdCmdTrim:
		// Trimmed blocks may read back as anything: they keep their data.
		s.stats.Trims++
		return nil, 0, s.record(logRecord{Kind: logTrim, Offset: off, Length: req.Length})
	}
	return nil, nbdEINVAL, nil
}

// write writes data at off, keeping what it overwrote until the next flush.
// A FUA write is durable at once: it is not undone by a Cut, and the undo
// records of earlier writes it overlaps take its data instead.
func (s *nbdServer) write(off int64, data []byte, fua bool) error {
	kind := byte(logWrite)
	if fua {
		kind = logFUA
		s.stats.FUAs++
		for _, u := range s.pending {
			overlapCopy(u.old, u.off, data, off)
		}
	} else {
		old := make([]byte, len(data))
		if _, err := s.disk.ReadAt(old, off); err != nil {
			return err
		}
		s.pending = append(s.pending, undo{off: off, old: old})
	}
	s.stats.Writes++
	s.stats.Bytes += int64(len(data))
	if _, err := s.disk.WriteAt(data, off); err != nil {
		return err
	}
	return s.record(logRecord{Kind: kind, Offset: off, Data: data})
}

// overlapCopy copies into dst (at disk offset dstOff) the part of src (at
// srcOff) that overlaps it.
func overlapCopy(dst []byte, dstOff int64, src []byte, srcOff int64) {
	lo := max(dstOff, srcOff)
	hi := min(dstOff+int64(len(dst)), srcOff+int64(len(src)))
	if lo < hi {
		copy(dst[lo-dstOff:hi-dstOff], src[lo-srcOff:hi-srcOff])
	}
}

func (s *nbdServer) record(r logRecord) error {
	if s.log == nil {
		return nil
	}
	return writeLogRecord(s.log, r)
}
