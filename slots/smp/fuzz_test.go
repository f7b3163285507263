package smp_test

import (
	"bytes"
	"testing"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

func FuzzDecodePacket(f *testing.F) {
	for _, g := range goldenPackets {
		f.Add(unhex(f, g.hex))
	}
	for _, g := range mcumgrExamples {
		f.Add(unhex(f, g.packet))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		h, body, err := smp.DecodePacket(p)
		if err != nil {
			return
		}
		enc, err := smp.EncodePacket(h, body)
		if err != nil || !bytes.Equal(enc, p) {
			t.Errorf("re-encoding %x gave %x, %v", p, enc, err)
		}
	})
}

// FuzzResponse decodes device responses: whatever a device sends, the
// decoder returns an error or a value, never panics or allocates without
// bound.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"a0", "a1 62 7263 06", "a1 63 657272 a2 65 67726f7570 01 62 7263 03",
		"bf 66 696d61676573 9f bf 64 736c6f74 00 67 76657273696f6e 65 312e322e33 ff ff ff",
		"a2 63 6f6666 19 0400 65 6d61746368 f5",
		"a2 68 6275665f73697a65 19 0180 69 6275665f636f756e74 04",
	} {
		f.Add(unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var st smp.ImageStateResponse
		var up smp.UploadResponse
		var pr smp.ParamsResponse
		var si smp.SlotInfoResponse
		for _, v := range []any{&st, &up, &pr, &si} {
			if smp.Unmarshal(b, v) == nil {
				_ = v.(interface{ Err() error }).Err()
			}
		}
	})
}

func FuzzParseImage(f *testing.F) {
	f.Add(smptest.BuildImage([]byte("hello"), smptest.ImageOptions{}))
	f.Add(smptest.BuildImage(make([]byte, 64), smptest.ImageOptions{HeaderSize: 64, Protected: []smp.TLV{{Type: 0x50, Value: []byte{1, 0, 0, 0}}}}))
	f.Add([]byte{0x3d, 0xb8, 0xf3, 0x96})
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := parse(b)
		if err != nil {
			return
		}
		if len(im.Hash) != 32 || im.Size != int64(len(b)) || int(im.HeaderSize) < smp.ImageHeaderSize {
			t.Errorf("accepted %x as %+v", b, im)
		}
	})
}

func FuzzSerialDecoder(f *testing.F) {
	for _, g := range goldenSerial {
		f.Add([]byte(g.frames))
	}
	for _, g := range mcumgrExamples {
		f.Add([]byte(g.frames))
	}
	f.Add([]byte("uart:~$ \n\x06\tAAoK\n\x04\x14AAAA\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d smp.SerialDecoder
		for _, line := range bytes.SplitAfter(b, []byte("\n")) {
			p, err := d.Line(line)
			if err != nil || p == nil {
				continue
			}
			// What decodes re-encodes into frames that decode to it.
			enc, err := smp.EncodeSerial(p)
			if err != nil {
				t.Fatalf("EncodeSerial(%x): %v", p, err)
			}
			var d2 smp.SerialDecoder
			var got []byte
			for _, l := range bytes.SplitAfter(enc, []byte("\n")) {
				if q, _ := d2.Line(l); q != nil {
					got = q
				}
			}
			if !bytes.Equal(got, p) {
				t.Errorf("round trip of %x gave %x", p, got)
			}
		}
	})
}
