package smp

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The MCUboot image format, as MCUboot's docs/design.md ("Image Format")
// and bootutil/image.h give it. All fields are little endian.
//
//	image_header (32 bytes)
//	  0  ih_magic            u32  0x96f3b83d
//	  4  ih_load_addr        u32
//	  8  ih_hdr_size         u16  offset of the body (>= 32)
//	 10  ih_protect_tlv_size u16  size of the protected TLV area (0: none)
//	 12  ih_img_size         u32  size of the body
//	 16  ih_flags            u32  IMAGE_F_*
//	 20  ih_ver              major u8, minor u8, revision u16, build u32
//	 28  _pad                u32
//	body                     ih_img_size bytes, at ih_hdr_size
//	protected TLV area       image_tlv_info {magic 0x6908 u16, total u16}
//	                         (total includes the 4-byte info), then TLVs;
//	                         covered by the hash and the signature
//	TLV area                 image_tlv_info {magic 0x6907 u16, total u16},
//	                         then TLVs: image_tlv {type u16, len u16}, value
//
// IMAGE_TLV_SHA256 (0x10) is the SHA-256 of the header, the body and the
// protected TLV area; IMAGE_TLV_ED25519 (0x24) signs that hash;
// IMAGE_TLV_KEYHASH (0x01) is the SHA-256 of the signing public key.

// MCUboot constants.
const (
	ImageMagic        = 0x96f3b83d
	ImageHeaderSize   = 32
	TLVInfoMagic      = 0x6907
	TLVProtInfoMagic  = 0x6908
	TLVKeyHash        = 0x01
	TLVSHA256         = 0x10
	TLVSHA384         = 0x11
	TLVSHA512         = 0x12
	TLVED25519        = 0x24
	FlagNonBootable   = 0x10
	FlagRAMLoad       = 0x20
	FlagROMFixed      = 0x100
	allowedImageFlags = FlagNonBootable | FlagRAMLoad | FlagROMFixed
)

// ErrImage is returned for bytes that are not a well-formed MCUboot image
// whose SHA-256 TLV matches its contents.
var ErrImage = errors.New("smp: invalid MCUboot image")

// ImageVersion is an MCUboot image version.
type ImageVersion struct {
	Major, Minor uint8
	Revision     uint16
	Build        uint32
}

// String formats the version as MCUmgr reports it: major.minor.revision,
// and .build when the build number is not zero.
func (v ImageVersion) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Revision)
	if v.Build != 0 {
		s += fmt.Sprintf(".%d", v.Build)
	}
	return s
}

// TLV is one type-length-value record of an image.
type TLV struct {
	Type  uint16
	Value []byte
}

// Image is a parsed MCUboot image.
type Image struct {
	LoadAddr      uint32
	HeaderSize    uint16
	ProtectedSize uint16
	BodySize      uint32
	Flags         uint32
	Version       ImageVersion
	// Size is the length of the whole image file.
	Size int64
	// Hash is the SHA-256 TLV, checked against the bytes: the image's
	// identity in MCUmgr's image state.
	Hash []byte
	// Protected and Unprotected are the TLVs of the two areas.
	Protected, Unprotected []TLV
}

// TLV returns the value of the first TLV of type t, or nil.
func (im *Image) TLV(t uint16) []byte {
	for _, l := range append(im.Protected, im.Unprotected...) {
		if l.Type == t {
			return l.Value
		}
	}
	return nil
}

// VerifyEd25519 checks the image's ED25519 signature TLV against pub.
func (im *Image) VerifyEd25519(pub ed25519.PublicKey) error {
	sig := im.TLV(TLVED25519)
	if sig == nil {
		return fmt.Errorf("%w: no ED25519 signature TLV", ErrImage)
	}
	if kh := im.TLV(TLVKeyHash); kh != nil {
		if h := sha256.Sum256(pub); string(kh) != string(h[:]) {
			return fmt.Errorf("%w: key hash TLV names another key", ErrImage)
		}
	}
	if !ed25519.Verify(pub, im.Hash, sig) {
		return fmt.Errorf("%w: ED25519 signature does not verify", ErrImage)
	}
	return nil
}

// ParseImage parses and checks the MCUboot image of size bytes in r:
// magic, header size, flags (no encrypted or position-independent
// images), sizes that add up to exactly size, both TLV areas with their
// magics and lengths, one SHA-256 TLV (of 32 bytes) that matches the
// bytes it covers, and well-formed key hash and ED25519 TLVs. It does not
// check the signature: see [Image.VerifyEd25519].
func ParseImage(r io.ReaderAt, size int64) (*Image, error) {
	im, err := parseHeader(r, size)
	if err != nil {
		return nil, err
	}
	off := int64(im.HeaderSize) + int64(im.BodySize)
	protSize := int64(im.ProtectedSize)
	if protSize > 0 {
		if im.Protected, err = readTLVArea(r, off, size, TLVProtInfoMagic); err != nil {
			return nil, err
		}
		if got := areaSize(im.Protected); got != protSize {
			return nil, fmt.Errorf("%w: protected TLV area is %d bytes, header says %d", ErrImage, got, protSize)
		}
	}
	if im.Unprotected, err = readTLVArea(r, off+protSize, size, TLVInfoMagic); err != nil {
		return nil, err
	}
	if end := off + protSize + areaSize(im.Unprotected); end != size {
		return nil, fmt.Errorf("%w: image ends at %d, file has %d bytes", ErrImage, end, size)
	}
	if err := im.checkTLVs(); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, off+protSize)); err != nil {
		return nil, fmt.Errorf("smp: read image: %w", err)
	}
	if got := h.Sum(nil); string(got) != string(im.Hash) {
		return nil, fmt.Errorf("%w: SHA-256 TLV %x does not match the image (%x)", ErrImage, im.Hash, got)
	}
	return im, nil
}

func parseHeader(r io.ReaderAt, size int64) (*Image, error) {
	var b [ImageHeaderSize]byte
	if size < ImageHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the header", ErrImage, size)
	}
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("smp: read image header: %w", err)
	}
	le := binary.LittleEndian
	im := &Image{
		LoadAddr:      le.Uint32(b[4:]),
		HeaderSize:    le.Uint16(b[8:]),
		ProtectedSize: le.Uint16(b[10:]),
		BodySize:      le.Uint32(b[12:]),
		Flags:         le.Uint32(b[16:]),
		Version:       ImageVersion{Major: b[20], Minor: b[21], Revision: le.Uint16(b[22:]), Build: le.Uint32(b[24:])},
		Size:          size,
	}
	switch {
	case le.Uint32(b[0:]) != ImageMagic:
		return nil, fmt.Errorf("%w: magic %#08x, want %#08x", ErrImage, le.Uint32(b[0:]), uint32(ImageMagic))
	case im.HeaderSize < ImageHeaderSize:
		return nil, fmt.Errorf("%w: header size %d below %d", ErrImage, im.HeaderSize, ImageHeaderSize)
	case im.Flags&^allowedImageFlags != 0:
		return nil, fmt.Errorf("%w: flags %#x (encrypted, position-independent or unknown)", ErrImage, im.Flags)
	case le.Uint32(b[28:]) != 0:
		return nil, fmt.Errorf("%w: padding field is not zero", ErrImage)
	case int64(im.HeaderSize)+int64(im.BodySize)+4 > size:
		return nil, fmt.Errorf("%w: header and body (%d+%d bytes) leave no room for TLVs in %d bytes", ErrImage, im.HeaderSize, im.BodySize, size)
	}
	return im, nil
}

// readTLVArea reads the TLV area at off, which must start with an info
// record carrying magic.
func readTLVArea(r io.ReaderAt, off, size int64, magic uint16) ([]TLV, error) {
	var info [4]byte
	if off+4 > size {
		return nil, fmt.Errorf("%w: no TLV info at %d", ErrImage, off)
	}
	if _, err := r.ReadAt(info[:], off); err != nil {
		return nil, fmt.Errorf("smp: read TLV info: %w", err)
	}
	if m := binary.LittleEndian.Uint16(info[:]); m != magic {
		return nil, fmt.Errorf("%w: TLV info magic %#04x at %d, want %#04x", ErrImage, m, off, magic)
	}
	total := int64(binary.LittleEndian.Uint16(info[2:]))
	if total < 4 || off+total > size {
		return nil, fmt.Errorf("%w: TLV area of %d bytes at %d in %d", ErrImage, total, off, size)
	}
	area := make([]byte, total-4)
	if _, err := r.ReadAt(area, off+4); err != nil {
		return nil, fmt.Errorf("smp: read TLV area: %w", err)
	}
	var tlvs []TLV
	for len(area) > 0 {
		if len(area) < 4 {
			return nil, fmt.Errorf("%w: %d stray bytes at the end of a TLV area", ErrImage, len(area))
		}
		t, n := binary.LittleEndian.Uint16(area), int(binary.LittleEndian.Uint16(area[2:]))
		if 4+n > len(area) {
			return nil, fmt.Errorf("%w: TLV %#x of %d bytes overruns its area", ErrImage, t, n)
		}
		tlvs = append(tlvs, TLV{Type: t, Value: area[4 : 4+n]})
		area = area[4+n:]
	}
	return tlvs, nil
}

// areaSize is the size of a TLV area, its info record included.
func areaSize(tlvs []TLV) int64 {
	n := int64(4)
	for _, t := range tlvs {
		n += 4 + int64(len(t.Value))
	}
	return n
}

// checkTLVs finds the hash and checks the lengths of the TLVs this
// package knows. Hashes and signatures belong in the unprotected area.
func (im *Image) checkTLVs() error {
	for _, t := range im.Protected {
		switch t.Type {
		case TLVKeyHash, TLVSHA256, TLVSHA384, TLVSHA512, TLVED25519:
			return fmt.Errorf("%w: TLV %#x in the protected area", ErrImage, t.Type)
		}
	}
	want := map[uint16]int{TLVKeyHash: 32, TLVSHA256: 32, TLVED25519: 64}
	seen := map[uint16]bool{}
	for _, t := range im.Unprotected {
		switch t.Type {
		case TLVSHA384, TLVSHA512:
			return fmt.Errorf("%w: TLV %#x: only SHA-256 images are supported", ErrImage, t.Type)
		}
		n, known := want[t.Type]
		if !known {
			continue
		}
		if seen[t.Type] {
			return fmt.Errorf("%w: TLV %#x twice", ErrImage, t.Type)
		}
		seen[t.Type] = true
		if len(t.Value) != n {
			return fmt.Errorf("%w: TLV %#x of %d bytes, want %d", ErrImage, t.Type, len(t.Value), n)
		}
		if t.Type == TLVSHA256 {
			im.Hash = t.Value
		}
	}
	if im.Hash == nil {
		return fmt.Errorf("%w: no SHA-256 TLV", ErrImage)
	}
	return nil
}
