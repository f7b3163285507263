package smp_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/slots/smp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Golden packets, written byte by byte from the tables of the Zephyr SMP
// specification (smp_protocol.rst: the header; smp_group_0.rst and
// smp_group_1.rst: the bodies), with the CBOR encoded by hand per RFC
// 8949: the Zephyr pages print no example frames, so these are their
// tables applied by hand, not output of this package. mcumgr's own
// examples follow below (mcumgrExamples).
var goldenPackets = []struct {
	name   string
	hex    string
	header smp.Header
	body   string
}{{
	// Res 000, Ver 01, OP 010 (write) = 0x0a; flags 0; length 9;
	// group 0 (OS); seq 0x42; command 0 (echo); {"d": "hello"}.
	name:   "echo request, SMP v2",
	hex:    "0a 00 0009 0000 42 00 a1 61 64 65 68656c6c6f",
	header: smp.Header{Version: 1, Op: smp.OpWrite, Length: 9, Group: smp.GroupOS, Seq: 0x42, ID: smp.CmdEcho},
	body:   "a1 61 64 65 68656c6c6f",
}, {
	// Res 000, Ver 00, OP 011 (write response) = 0x03; {"r": "hello"}.
	name:   "echo response, SMP v1",
	hex:    "03 00 0009 0000 42 00 a1 61 72 65 68656c6c6f",
	header: smp.Header{Version: 0, Op: smp.OpWriteRsp, Length: 9, Group: smp.GroupOS, Seq: 0x42, ID: smp.CmdEcho},
	body:   "a1 61 72 65 68656c6c6f",
}, {
	// OP 000 (read), group 1 (image), command 0 (state): an empty map.
	name:   "image state read",
	hex:    "08 00 0001 0001 07 00 a0",
	header: smp.Header{Version: 1, Op: smp.OpRead, Length: 1, Group: smp.GroupImage, Seq: 7, ID: smp.CmdImageState},
	body:   "a0",
}, {
	// OP 010, group 0, command 5 (reset), no body.
	name:   "reset without data",
	hex:    "0a 00 0000 0000 ff 05",
	header: smp.Header{Version: 1, Op: smp.OpWrite, Group: smp.GroupOS, Seq: 0xff, ID: smp.CmdReset},
	body:   "",
}}

func TestGoldenPackets(t *testing.T) {
	for _, g := range goldenPackets {
		t.Run(g.name, func(t *testing.T) {
			pkt, body := unhex(t, g.hex), unhex(t, g.body)
			h, gotBody, err := smp.DecodePacket(pkt)
			if err != nil {
				t.Fatalf("DecodePacket: %v", err)
			}
			if h != g.header || !bytes.Equal(gotBody, body) {
				t.Errorf("DecodePacket = %+v, %x; want %+v, %x", h, gotBody, g.header, body)
			}
			enc, err := smp.EncodePacket(g.header, body)
			if err != nil || !bytes.Equal(enc, pkt) {
				t.Errorf("EncodePacket = %x, %v; want %x", enc, err, pkt)
			}
		})
	}
}

// TestGoldenBodies checks the CBOR encoder against the bodies above and
// the decoder against a response in the form zcbor writes it (indefinite
// lengths), built from smp_group_1.rst's "CBOR data of successful
// response".
func TestGoldenBodies(t *testing.T) {
	b, err := smp.Marshal(smp.EchoRequest{D: "hello"})
	if err != nil || !bytes.Equal(b, unhex(t, "a1 61 64 65 68656c6c6f")) {
		t.Errorf("Marshal(echo) = %x, %v", b, err)
	}
	b, err = smp.Marshal(smp.ImageStateRequest{Hash: []byte{1, 2}, Confirm: false})
	// {"hash": h'0102', "confirm": false}
	if want := unhex(t, "a2 64 68617368 42 0102 67 636f6e6669726d f4"); err != nil || !bytes.Equal(b, want) {
		t.Errorf("Marshal(image test) = %x, %v; want %x", b, err, want)
	}
	hash := bytes.Repeat([]byte{0xab}, 32)
	resp := "bf 66 696d61676573 9f" + // {_ "images": [_
		" bf 64 736c6f74 00 67 76657273696f6e 65 312e322e33" + // {_ "slot": 0, "version": "1.2.3",
		" 64 68617368 5820" + hex.EncodeToString(hash) + // "hash": h'abab…',
		" 66 616374697665 f5 69 636f6e6669726d6564 f5 ff" + // "active": true, "confirmed": true}
		" bf 64 736c6f74 01 67 76657273696f6e 65 322e302e30 67 70656e64696e67 f5 ff" + // {_ "slot": 1, "version": "2.0.0", "pending": true}
		" ff ff" // ] }
	var st smp.ImageStateResponse
	if err := smp.Unmarshal(unhex(t, resp), &st); err != nil {
		t.Fatalf("Unmarshal(image state): %v", err)
	}
	if len(st.Images) != 2 || st.Images[0].Version != "1.2.3" || !bytes.Equal(st.Images[0].Hash, hash) ||
		!st.Images[0].Active || !st.Images[0].Confirmed || st.Images[1].Slot != 1 || !st.Images[1].Pending || st.Images[1].Confirmed {
		t.Errorf("Unmarshal(image state) = %+v", st)
	}
	// Errors: SMP v1 {"rc": 6} and SMP v2 {"err": {"group": 1, "rc": 3}}.
	var s1, s2 smp.Status
	if err := smp.Unmarshal(unhex(t, "a1 62 7263 06"), &s1); err != nil || !smp.IsRC(s1.Err(), smp.RCBadState) {
		t.Errorf("v1 error: %+v, %v", s1, err)
	}
	var de *smp.DeviceError
	if err := smp.Unmarshal(unhex(t, "a1 63 657272 a2 65 67726f7570 01 62 7263 03"), &s2); err != nil ||
		!errors.As(s2.Err(), &de) || de.Group != smp.GroupImage || de.RC != 3 {
		t.Errorf("v2 error: %+v, %v", s2, err)
	}
}

func TestDecodePacketRejects(t *testing.T) {
	for name, p := range map[string]string{
		"short":         "0a 00 0000 0000 00",
		"reserved bit":  "2a 00 0000 0000 00 00",
		"version 2":     "12 00 0000 0000 00 00",
		"op 4":          "0c 00 0000 0000 00 00",
		"length > data": "0a 00 0002 0000 00 00 a0",
		"length < data": "0a 00 0000 0000 00 00 a0",
	} {
		if _, _, err := smp.DecodePacket(unhex(t, p)); !errors.Is(err, smp.ErrFrame) {
			t.Errorf("%s: DecodePacket(%s) = %v, want ErrFrame", name, p, err)
		}
	}
}

// Serial frames computed outside this package (Python's binascii.crc_hqx,
// the CRC-16/CCITT with initial value 0 that smp_transport.rst specifies,
// and base64.b64encode), for the echo request above and for one that
// needs a continuation frame.
var goldenSerial = []struct{ name, packet, frames string }{
	{"single frame", "0a00000900004200a161646568656c6c6f", "\x06\tABMKAAAJAABCAKFhZGVoZWxsb0YZ\n"},
	{"two frames", "0a00007d00000700 a161647878" + strings.Repeat("78", 120), // {"d": 120 × "x"}
		"\x06\tAIcKAAB9AAAHAKFhZHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4\n" +
			"\x04\x14eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4Mow=\n"},
}

// The example packets of mcumgr's own protocol description
// (apache/mynewt-mcumgr, protocol.md, "Example Packets"), as newtmgr
// logged them: the requests' packets and console frames, and the image
// list response's packet dump and the two frames it came in (the byte
// lists of the log written as text). The response's first frame is 131
// bytes: newtmgr cut frames at 128 base64 characters, before MCUmgr's
// limit became 127 bytes a frame; EncodeSerial cuts at 124 characters,
// so that example is checked by decoding only.
var mcumgrExamples = []struct {
	name, packet, frames string
	encodes              bool // EncodeSerial gives exactly these frames
}{
	{"taskstats request", "00 00 0000 0000 00 02", "\x06\tAAoAAAAAAAAAAiBC\n", true},
	{"image list request", "00 00 0000 0001 00 00", "\x06\tAAoAAAAAAAEAADcw\n", true},
	{"image list response", "01 01 007b 0001 00 00" +
		"bf66696d616765739fbf64736c6f74006776657273696f6e65302e332e3064686173685820d24cb3051354172b" +
		"b5109f9cb4ae7861d96d6afdfc46db482ceb2d34a8a78ed068626f6f7461626c65f56770656e64696e67f469636f" +
		"6e6669726d6564f566616374697665f5ffff6b73706c697453746174757300ff",
		"\x06\tAIUBAQB7AAEAAL9maW1hZ2Vzn79kc2xvdABndmVyc2lvbmUwLjMuMGRoYXNoWCDSTLMFE1QXK7UQn5y0rnhh2W1q/fxG20gs6y00qKeO0Ghib290YWJsZfVncGVuZGlu\n" +
			"\x04\x14Z/RpY29uZmlybWVk9WZhY3RpdmX1//9rc3BsaXRTdGF0dXMA/1Nt\n", false},
}

// TestMcumgrExamples encodes and decodes the specification's example
// frames, and decodes the image list response down to its fields.
func TestMcumgrExamples(t *testing.T) {
	for _, g := range mcumgrExamples {
		t.Run(g.name, func(t *testing.T) {
			pkt := unhex(t, g.packet)
			got, err := smp.EncodeSerial(pkt)
			if err != nil || g.encodes && string(got) != g.frames {
				t.Errorf("EncodeSerial = %q, %v; want %q", got, err, g.frames)
			}
			var d smp.SerialDecoder
			var out []byte
			// newtmgr's log shows a carriage return between frames.
			for _, line := range strings.SplitAfter(strings.ReplaceAll(g.frames, "\n", "\r\n"), "\n") {
				p, err := d.Line([]byte(line))
				if err != nil {
					t.Fatal(err)
				}
				if p != nil {
					out = p
				}
			}
			if !bytes.Equal(out, pkt) {
				t.Fatalf("decoded %x, want %x", out, pkt)
			}
			h, body, err := smp.DecodePacket(out)
			if err != nil {
				t.Fatal(err)
			}
			if g.name != "image list response" {
				return
			}
			if h != (smp.Header{Op: smp.OpReadRsp, Flags: 1, Length: 123, Group: smp.GroupImage}) {
				t.Errorf("header %+v", h)
			}
			var st smp.ImageStateResponse
			if err := smp.Unmarshal(body, &st); err != nil {
				t.Fatal(err)
			}
			want := unhex(t, "d24cb3051354172bb5109f9cb4ae7861d96d6afdfc46db482ceb2d34a8a78ed0")
			if len(st.Images) != 1 || st.Err() != nil {
				t.Fatalf("response %+v", st)
			}
			if im := st.Images[0]; im.Slot != 0 || im.Version != "0.3.0" || !bytes.Equal(im.Hash, want) ||
				!im.Bootable || im.Pending || !im.Confirmed || !im.Active {
				t.Errorf("image %+v", im)
			}
		})
	}
}

func TestGoldenSerial(t *testing.T) {
	if got := smp.CRC16([]byte("123456789")); got != 0x31c3 {
		t.Errorf("CRC16(123456789) = %#04x, want 0x31c3 (the CRC-16/XMODEM check value)", got)
	}
	for _, g := range goldenSerial {
		t.Run(g.name, func(t *testing.T) {
			pkt := unhex(t, g.packet)
			got, err := smp.EncodeSerial(pkt)
			if err != nil || string(got) != g.frames {
				t.Errorf("EncodeSerial = %q, %v; want %q", got, err, g.frames)
			}
			var d smp.SerialDecoder
			var out []byte
			for _, line := range strings.SplitAfter(g.frames, "\n") {
				if len(line) > smp.SerialFrameMax {
					t.Errorf("frame of %d bytes", len(line))
				}
				p, err := d.Line([]byte(line))
				if err != nil {
					t.Fatalf("Line: %v", err)
				}
				if p != nil {
					out = p
				}
			}
			if !bytes.Equal(out, pkt) {
				t.Errorf("decoded %x, want %x", out, pkt)
			}
		})
	}
}

func TestSerialDecoderRejects(t *testing.T) {
	good := "\x06\tABMKAAAJAABCAKFhZGVoZWxsb0YZ\n"
	for name, lines := range map[string][]string{
		"bad CRC":             {strings.Replace(good, "0YZ", "0YA", 1)},
		"continuation alone":  {"\x04\x14eHh4\n"},
		"bad base64":          {"\x06\t!!!!\n"},
		"too long":            {"\x06\t" + strings.Repeat("A", 2000) + "\n"},
		"length too short":    {"\x06\tAAE=\n"},
		"more than announced": {"\x06\tAAoKAAAJAABCAKFhZGVoZWxsb0YZ\n"},
	} {
		var d smp.SerialDecoder
		var err error
		for _, l := range lines {
			var p []byte
			p, err = d.Line([]byte(l))
			if p != nil {
				t.Errorf("%s: decoded a packet", name)
			}
		}
		if !errors.Is(err, smp.ErrSerialFrame) {
			t.Errorf("%s: got %v, want ErrSerialFrame", name, err)
		}
	}
	// Console output between frames is skipped, and a good frame after an
	// error decodes.
	var d smp.SerialDecoder
	for _, l := range []string{"uart:~$ hello\n", "\x04\x14eHh4\n", good} {
		if p, _ := d.Line([]byte(l)); p != nil && l != good {
			t.Errorf("line %q decoded a packet", l)
		}
	}
}
