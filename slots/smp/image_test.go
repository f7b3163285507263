package smp_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

func parse(b []byte) (*smp.Image, error) { return smp.ParseImage(bytes.NewReader(b), int64(len(b))) }

func TestParseImage(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	body := bytes.Repeat([]byte("firmware"), 500)
	v := smp.ImageVersion{Major: 1, Minor: 2, Revision: 3, Build: 4}
	for name, img := range map[string][]byte{
		"unsigned":   smptest.BuildImage(body, smptest.ImageOptions{Version: v}),
		"signed":     smptest.BuildImage(body, smptest.ImageOptions{Version: v, Key: priv}),
		"header 512": smptest.BuildImage(body, smptest.ImageOptions{Version: v, HeaderSize: 512}),
		"protected":  smptest.BuildImage(body, smptest.ImageOptions{Version: v, Protected: []smp.TLV{{Type: 0x50, Value: []byte{1, 0, 0, 0}}}}),
	} {
		im, err := parse(img)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if im.Version != v || im.Version.String() != "1.2.3.4" || im.Size != int64(len(img)) || len(im.Hash) != 32 || im.BodySize != uint32(len(body)) {
			t.Errorf("%s: parsed %+v", name, im)
		}
		err = im.VerifyEd25519(pub)
		if signed := name == "signed"; signed != (err == nil) {
			t.Errorf("%s: VerifyEd25519 = %v", name, err)
		}
	}
}

// TestParseImageRejects breaks a good image one way at a time.
func TestParseImageRejects(t *testing.T) {
	good := smptest.BuildImage(bytes.Repeat([]byte{7}, 1000), smptest.ImageOptions{})
	tlvOff := 32 + 1000 // the TLV info
	le := binary.LittleEndian
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	withTLVs := func(tlvs ...smp.TLV) []byte {
		b := bytes.Clone(good[:tlvOff])
		area := []byte{}
		for _, t := range tlvs {
			area = le.AppendUint16(area, t.Type)
			area = le.AppendUint16(area, uint16(len(t.Value)))
			area = append(area, t.Value...)
		}
		b = le.AppendUint16(b, smp.TLVInfoMagic)
		b = le.AppendUint16(b, uint16(4+len(area)))
		return append(b, area...)
	}
	hash := good[tlvOff+8 : tlvOff+40]
	cases := map[string][]byte{
		"empty":             nil,
		"short":             good[:20],
		"magic":             edit(func(b []byte) []byte { b[0] ^= 1; return b }),
		"header size 16":    edit(func(b []byte) []byte { le.PutUint16(b[8:], 16); return b }),
		"encrypted":         edit(func(b []byte) []byte { le.PutUint32(b[16:], 0x4); return b }),
		"pic":               edit(func(b []byte) []byte { le.PutUint32(b[16:], 0x1); return b }),
		"padding":           edit(func(b []byte) []byte { b[31] = 1; return b }),
		"body flipped":      edit(func(b []byte) []byte { b[100] ^= 0x80; return b }),
		"version changed":   edit(func(b []byte) []byte { b[20]++; return b }),
		"body size large":   edit(func(b []byte) []byte { le.PutUint32(b[12:], 1<<30); return b }),
		"info magic":        edit(func(b []byte) []byte { b[tlvOff] ^= 1; return b }),
		"protected magic":   edit(func(b []byte) []byte { le.PutUint16(b[tlvOff:], smp.TLVProtInfoMagic); return b }),
		"area too long":     edit(func(b []byte) []byte { le.PutUint16(b[tlvOff+2:], 0xff00); return b }),
		"trailing byte":     append(bytes.Clone(good), 0xff),
		"truncated":         good[:len(good)-1],
		"protected size":    edit(func(b []byte) []byte { le.PutUint16(b[10:], 8); return b }),
		"no sha":            withTLVs(smp.TLV{Type: 0x50, Value: []byte{1}}),
		"sha short":         withTLVs(smp.TLV{Type: smp.TLVSHA256, Value: hash[:31]}),
		"sha twice":         withTLVs(smp.TLV{Type: smp.TLVSHA256, Value: hash}, smp.TLV{Type: smp.TLVSHA256, Value: hash}),
		"sha384":            withTLVs(smp.TLV{Type: smp.TLVSHA256, Value: hash}, smp.TLV{Type: smp.TLVSHA384, Value: make([]byte, 48)}),
		"signature short":   withTLVs(smp.TLV{Type: smp.TLVSHA256, Value: hash}, smp.TLV{Type: smp.TLVED25519, Value: make([]byte, 63)}),
		"tlv overrun":       append(withTLVs(smp.TLV{Type: smp.TLVSHA256, Value: hash})[:tlvOff+4], 0x10, 0, 40, 0),
		"stray tlv bytes":   edit(func(b []byte) []byte { le.PutUint16(b[tlvOff+2:], le.Uint16(b[tlvOff+2:])+2); return append(b, 0, 0) }),
		"hash in protected": smptest.BuildImage(make([]byte, 10), smptest.ImageOptions{Protected: []smp.TLV{{Type: smp.TLVSHA256, Value: make([]byte, 32)}}}),
	}
	if _, err := parse(withTLVs(smp.TLV{Type: smp.TLVSHA256, Value: hash})); err != nil {
		t.Fatalf("the rebuilt good image does not parse: %v", err)
	}
	for name, b := range cases {
		if im, err := parse(b); !errors.Is(err, smp.ErrImage) {
			t.Errorf("%s: ParseImage = %+v, %v; want ErrImage", name, im, err)
		}
	}
}
