package smp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// SMP over a serial console, as the Zephyr "SMP Transport Specification"
// (doc/services/device_mgmt/smp_transport.rst, "UART/serial and console")
// and mcumgr's transport/smp-console.md give it. A packet is
//
//	total length  2 bytes, big endian: len(body) + 2
//	body          the SMP packet (header and CBOR)
//	crc16         2 bytes, big endian: CRC-16 of body, polynomial 0x1021,
//	              initial value 0 (CRC-16/XMODEM), length not included
//
// base64-encoded and cut into frames of at most 127 bytes: a start
// marker, base64 text, and a newline (0x0a). The first frame starts with
// 0x06 0x09, each continuation with 0x04 0x14. Lines without a marker are
// console output and are skipped.

// Serial framing constants.
const (
	// SerialFrameMax is the longest frame sent, marker and newline
	// included: MCUmgr's limit.
	SerialFrameMax = 127
	// serialLineMax is the longest frame accepted: the limit "is not a
	// protocol constraint" (smp_transport.rst), and newtmgr sent frames of
	// 131 bytes.
	serialLineMax = 1024
	// serialChunk is the raw bytes one frame carries: 124 base64
	// characters, a multiple of 4, encode 93 bytes without padding.
	serialChunk = (SerialFrameMax - 3) / 4 * 3
)

var (
	markerStart = [2]byte{0x06, 0x09}
	markerCont  = [2]byte{0x04, 0x14}
)

// CRC16 is the CRC of the serial framing: CRC-16/XMODEM (polynomial
// 0x1021, initial value 0, no reflection, no final XOR).
func CRC16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// EncodeSerial returns the console frames that carry one SMP packet.
func EncodeSerial(packet []byte) ([]byte, error) {
	if len(packet)+2 > 0xffff {
		return nil, fmt.Errorf("%w: packet of %d bytes too long for serial framing", ErrFrame, len(packet))
	}
	raw := make([]byte, 0, len(packet)+4)
	raw = binary.BigEndian.AppendUint16(raw, uint16(len(packet)+2))
	raw = append(raw, packet...)
	raw = binary.BigEndian.AppendUint16(raw, CRC16(packet))
	var out []byte
	marker := markerStart
	for len(raw) > 0 {
		n := min(serialChunk, len(raw))
		out = append(out, marker[:]...)
		out = base64.StdEncoding.AppendEncode(out, raw[:n])
		out = append(out, '\n')
		raw, marker = raw[n:], markerCont
	}
	return out, nil
}

// SerialDecoder reassembles SMP packets from console lines. The zero value
// is ready for use.
type SerialDecoder struct {
	want int    // total length from the first frame (body + CRC)
	buf  []byte // body and CRC received so far
	open bool
}

// ErrSerialFrame is returned for a console frame that breaks the framing
// rules; the packet in progress is dropped.
var ErrSerialFrame = errors.New("smp: malformed serial frame")

// Line takes one line (with or without its newline). It returns a packet
// when the line completes one, nil otherwise. Lines without a frame
// marker are ignored; carriage returns around a frame (a console that
// ends its lines with CR LF) are.
func (d *SerialDecoder) Line(line []byte) ([]byte, error) {
	line = bytes.Trim(line, "\r\n")
	if len(line) < 2 {
		return nil, nil
	}
	first := [2]byte(line[:2]) == markerStart
	if !first && [2]byte(line[:2]) != markerCont {
		return nil, nil
	}
	if len(line)+1 > serialLineMax {
		return nil, d.fail("frame of %d bytes exceeds %d", len(line)+1, serialLineMax)
	}
	raw, err := base64.StdEncoding.DecodeString(string(line[2:]))
	if err != nil {
		return nil, d.fail("base64: %v", err)
	}
	if first {
		if len(raw) < 2 {
			return nil, d.fail("first frame without a length")
		}
		d.want, d.buf, d.open = int(binary.BigEndian.Uint16(raw)), raw[2:], true
		if d.want < 2+HeaderSize {
			return nil, d.fail("length %d too short for a packet", d.want)
		}
	} else {
		if !d.open {
			return nil, d.fail("continuation frame without a first frame")
		}
		d.buf = append(d.buf, raw...)
	}
	return d.complete()
}

func (d *SerialDecoder) complete() ([]byte, error) {
	switch {
	case len(d.buf) < d.want:
		return nil, nil
	case len(d.buf) > d.want:
		return nil, d.fail("%d bytes for a packet of %d", len(d.buf), d.want)
	}
	body, crc := d.buf[:d.want-2], binary.BigEndian.Uint16(d.buf[d.want-2:])
	if got := CRC16(body); got != crc {
		return nil, d.fail("CRC %#04x, frame says %#04x", got, crc)
	}
	d.open, d.buf = false, nil
	return body, nil
}

func (d *SerialDecoder) fail(format string, args ...any) error {
	d.open, d.buf, d.want = false, nil, 0
	return fmt.Errorf("%w: %s", ErrSerialFrame, fmt.Sprintf(format, args...))
}

// Serial is a [Transport] over a serial line carrying SMP console
// framing: a UART (open it with a serial port package, such as
// go.bug.st/serial, at the device's speed), a USB CDC ACM port, or a pty.
//
// A serial line is not encrypted: it is a physical link between the
// gateway and the device, and whoever can tap it can also reach the
// device's pins. Use it where that holds.
type Serial struct {
	rw      io.ReadWriteCloser
	packets chan []byte
	done    chan struct{}
	wmu     sync.Mutex

	errMu sync.Mutex
	err   error // the reader's error, once it stopped
	once  sync.Once
}

// NewSerial starts reading SMP packets from rw. Close closes rw.
func NewSerial(rw io.ReadWriteCloser) *Serial {
	s := &Serial{rw: rw, packets: make(chan []byte, 4), done: make(chan struct{})}
	go s.read()
	return s
}

// read decodes lines until rw fails. Over-long lines are skipped.
func (s *Serial) read() {
	defer close(s.done)
	br := bufio.NewReaderSize(s.rw, 4096)
	var d SerialDecoder
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			s.errMu.Lock()
			s.err = err
			s.errMu.Unlock()
			return
		}
		if p, _ := d.Line(line); p != nil {
			select {
			case s.packets <- p:
			default: // nobody waits: drop, as a device would
			}
		}
	}
}

// Send writes the frames of one packet.
func (s *Serial) Send(ctx context.Context, packet []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := EncodeSerial(packet)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err = s.rw.Write(b)
	return err
}

// Receive returns the next packet read from the line.
func (s *Serial) Receive(ctx context.Context) ([]byte, error) {
	select {
	case p := <-s.packets:
		return p, nil
	case <-s.done:
		s.errMu.Lock()
		defer s.errMu.Unlock()
		return nil, fmt.Errorf("smp: serial line closed: %w", s.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close closes the line and waits for the reader to stop.
func (s *Serial) Close() error {
	var err error
	s.once.Do(func() {
		err = s.rw.Close()
		<-s.done
	})
	return err
}
