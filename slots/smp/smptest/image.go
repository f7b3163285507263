package smptest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"

	"github.com/switchback-ota/switchback/slots/smp"
)

// ImageOptions describes an MCUboot image for [BuildImage].
type ImageOptions struct {
	Version smp.ImageVersion
	// HeaderSize pads the header (default and minimum 32; imgtool's
	// --header-size, often 0x200 on Zephyr).
	HeaderSize uint16
	LoadAddr   uint32
	Flags      uint32
	// Protected TLVs go in the protected area, covered by the hash.
	Protected []smp.TLV
	// Key, when set, signs the image: a key hash TLV and an ED25519 TLV
	// over the SHA-256 of the image, as imgtool does for ed25519 keys.
	Key ed25519.PrivateKey
}

// BuildImage returns an MCUboot image of body, as imgtool sign would make
// it (without --pad): header, body, protected TLVs, and the TLV area with
// the SHA-256 and, with a key, the signature.
func BuildImage(body []byte, o ImageOptions) []byte {
	le := binary.LittleEndian
	hs := max(o.HeaderSize, smp.ImageHeaderSize)
	var prot []byte
	if len(o.Protected) > 0 {
		prot = tlvArea(smp.TLVProtInfoMagic, o.Protected)
	}
	b := make([]byte, hs, int(hs)+len(body)+len(prot)+256)
	le.PutUint32(b[0:], smp.ImageMagic)
	le.PutUint32(b[4:], o.LoadAddr)
	le.PutUint16(b[8:], hs)
	le.PutUint16(b[10:], uint16(len(prot)))
	le.PutUint32(b[12:], uint32(len(body)))
	le.PutUint32(b[16:], o.Flags)
	b[20], b[21] = o.Version.Major, o.Version.Minor
	le.PutUint16(b[22:], o.Version.Revision)
	le.PutUint32(b[24:], o.Version.Build)
	b = append(b, body...)
	b = append(b, prot...)
	hash := sha256.Sum256(b)
	tlvs := []smp.TLV{{Type: smp.TLVSHA256, Value: hash[:]}}
	if o.Key != nil {
		kh := sha256.Sum256(o.Key.Public().(ed25519.PublicKey))
		tlvs = append(tlvs, smp.TLV{Type: smp.TLVKeyHash, Value: kh[:]},
			smp.TLV{Type: smp.TLVED25519, Value: ed25519.Sign(o.Key, hash[:])})
	}
	return append(b, tlvArea(smp.TLVInfoMagic, tlvs)...)
}

func tlvArea(magic uint16, tlvs []smp.TLV) []byte {
	le := binary.LittleEndian
	var body []byte
	for _, t := range tlvs {
		body = le.AppendUint16(body, t.Type)
		body = le.AppendUint16(body, uint16(len(t.Value)))
		body = append(body, t.Value...)
	}
	out := le.AppendUint16(nil, magic)
	out = le.AppendUint16(out, uint16(4+len(body)))
	return append(out, body...)
}
