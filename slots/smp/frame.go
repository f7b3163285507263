package smp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The SMP frame, as the Zephyr "SMP Protocol Specification"
// (doc/services/device_mgmt/smp_protocol.rst, "Frame: The envelope")
// draws it, big endian:
//
//	byte 0     bits 7-5 Res (0), bits 4-3 Ver, bits 2-0 OP
//	byte 1     Flags (none defined: 0)
//	bytes 2-3  Data Length: length of the CBOR body that follows
//	bytes 4-5  Group ID
//	byte 6     Sequence Num: a response echoes its request's
//	byte 7     Command ID, within the group
//	bytes 8-   Data: a CBOR map (groups below 64)

// HeaderSize is the size of the SMP header.
const HeaderSize = 8

// Op is the operation of an SMP frame (mcumgr_op_t).
type Op uint8

// Operations.
const (
	OpRead     Op = 0
	OpReadRsp  Op = 1
	OpWrite    Op = 2
	OpWriteRsp Op = 3
)

// Group is an SMP management group (mcumgr_group_t).
type Group uint16

// The groups this package speaks.
const (
	GroupOS    Group = 0
	GroupImage Group = 1
)

// Command IDs of the OS group (smp_group_0.rst) and the image group
// (smp_group_1.rst).
const (
	CmdEcho   uint8 = 0
	CmdReset  uint8 = 5
	CmdParams uint8 = 6

	CmdImageState  uint8 = 0
	CmdImageUpload uint8 = 1
	CmdImageErase  uint8 = 5
	CmdSlotInfo    uint8 = 6
)

// Version2 is the Ver value of SMP version 2, whose errors carry their
// group ("err": {"group", "rc"}); 0 is the legacy version 1.
const Version2 = 1

// Header is the 8-byte SMP header.
type Header struct {
	Version uint8 // 0 (SMP v1) or 1 (SMP v2)
	Op      Op
	Flags   uint8
	Length  uint16 // length of the body
	Group   Group
	Seq     uint8
	ID      uint8
}

// ErrFrame is returned for bytes that are not a well-formed SMP frame.
var ErrFrame = errors.New("smp: malformed frame")

// MarshalHeader appends the encoded header to b.
func (h Header) MarshalHeader(b []byte) []byte {
	b = append(b, (h.Version&0x3)<<3|uint8(h.Op)&0x7, h.Flags)
	b = binary.BigEndian.AppendUint16(b, h.Length)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Group))
	return append(b, h.Seq, h.ID)
}

// EncodePacket returns header and body as one SMP packet; the header's
// Length is set from the body.
func EncodePacket(h Header, body []byte) ([]byte, error) {
	if len(body) > 0xffff {
		return nil, fmt.Errorf("%w: body of %d bytes exceeds 65535", ErrFrame, len(body))
	}
	h.Length = uint16(len(body))
	return append(h.MarshalHeader(make([]byte, 0, HeaderSize+len(body))), body...), nil
}

// DecodePacket splits one SMP packet into its header and body. It refuses
// a reserved bit set, a reserved version (2, 3), and a length that does
// not match the bytes given.
func DecodePacket(p []byte) (Header, []byte, error) {
	if len(p) < HeaderSize {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrFrame, len(p))
	}
	h := Header{
		Version: p[0] >> 3 & 0x3,
		Op:      Op(p[0] & 0x7),
		Flags:   p[1],
		Length:  binary.BigEndian.Uint16(p[2:4]),
		Group:   Group(binary.BigEndian.Uint16(p[4:6])),
		Seq:     p[6],
		ID:      p[7],
	}
	switch {
	case p[0]&0xe0 != 0:
		return h, nil, fmt.Errorf("%w: reserved bits set (%#x)", ErrFrame, p[0])
	case h.Version > Version2:
		return h, nil, fmt.Errorf("%w: reserved version %d", ErrFrame, h.Version)
	case h.Op > OpWriteRsp:
		return h, nil, fmt.Errorf("%w: unknown op %d", ErrFrame, h.Op)
	case int(h.Length) != len(p)-HeaderSize:
		return h, nil, fmt.Errorf("%w: header says %d body bytes, packet has %d", ErrFrame, h.Length, len(p)-HeaderSize)
	}
	return h, p[HeaderSize:], nil
}
