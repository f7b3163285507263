package smptest

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/switchback-ota/switchback/slots/smp"
)

// Swap types, as MCUboot's docs/design.md ("Boot Swap Types") names them;
// the values are what the trailer's swap info records.
type swapType byte

const (
	swapNone   swapType = 1
	swapTest   swapType = 2
	swapPerm   swapType = 3
	swapRevert swapType = 4
)

func (t swapType) String() string {
	switch t {
	case swapNone:
		return "none"
	case swapTest:
		return "test"
	case swapPerm:
		return "perm"
	case swapRevert:
		return "revert"
	}
	return fmt.Sprintf("swap type %d", byte(t))
}

// pendingSwap reads the trailers the way MCUboot's state tables
// (docs/design.md, "Image Trailers", states I to IV) do, in order:
//
//	I    secondary magic good, secondary image-ok unset      test
//	II   secondary magic good, secondary image-ok 0x01       perm
//	III  primary magic good, primary image-ok unset,
//	     primary copy-done 0x01                              revert
//	IV   anything else                                       none
func pendingSwap(p, s trailer) swapType {
	switch {
	case s.magic && s.imageOK == flagUnset:
		return swapTest
	case s.magic && s.imageOK == flagSet:
		return swapPerm
	case p.magic && p.imageOK == flagUnset && p.copyDone == flagSet:
		return swapRevert
	}
	return swapNone
}

// boot runs the bootloader: it finishes a swap a reset interrupted, or
// starts the one the trailers ask for, after validating the image to be
// run; then it checks the primary image. It returns the image to run, or
// an error when there is none (MCUboot then hangs).
func (m *MCU) boot() (*smp.Image, error) {
	f := m.flash
	p, err := f.trailer(primary)
	if err != nil {
		return nil, err
	}
	if p.magic && p.copyDone == flagUnset && p.swapInfo >= byte(swapTest) && p.swapInfo <= byte(swapRevert) {
		m.event("resume %s swap", swapType(p.swapInfo))
		if err := m.swap(p); err != nil {
			return nil, err
		}
	} else if err := m.startSwap(p); err != nil {
		return nil, err
	}
	im, err := m.slotImage(primary)
	if err != nil {
		return nil, fmt.Errorf("smptest: no bootable image in the primary slot: %w", err)
	}
	return im, nil
}

// startSwap starts the swap the trailers ask for, if any.
func (m *MCU) startSwap(p trailer) error {
	f := m.flash
	s, err := f.trailer(secondary)
	if err != nil {
		return err
	}
	typ := pendingSwap(p, s)
	if typ == swapNone {
		return nil
	}
	if typ != swapRevert {
		if _, err := m.slotImage(secondary); err != nil {
			// MCUboot erases an image that fails validation and leaves the
			// primary slot in place.
			m.event("secondary image rejected: %v", err)
			return m.eraseSlot(secondary)
		}
	}
	n := m.sectorsInUse()
	m.event("start %s swap of %d sectors", typ, n)
	t := erasedTrailer(f.maxSectors)
	t.magic, t.swapInfo, t.swapSize = true, byte(typ), uint32(int64(n)*f.sectorSize)
	if err := f.writeTrailer(primary, t); err != nil {
		return err
	}
	return m.swap(t)
}

// sectorsInUse is how many sectors the larger of the two images spans.
func (m *MCU) sectorsInUse() int {
	size := int64(0)
	for _, s := range []slot{primary, secondary} {
		if im, err := m.slotHeader(s); err == nil {
			size = max(size, im.Size)
		}
	}
	n := int((size + m.flash.sectorSize - 1) / m.flash.sectorSize)
	return max(n, 1)
}

// swap exchanges the images sector by sector through the scratch sector,
// from the last sector down, recording three steps per sector in the
// primary trailer's swap status (docs/design.md, "Image Swapping" and
// "Swap Status"), so that a reset resumes at the step it interrupted.
func (m *MCU) swap(t trailer) error {
	f := m.flash
	n := int(int64(t.swapSize) / f.sectorSize)
	if n < 1 || n > f.maxSectors {
		return fmt.Errorf("smptest: swap size %d in the trailer is out of range", t.swapSize)
	}
	for i := n - 1; i >= 0; i-- {
		steps := []func() error{
			func() error { return m.sectorStep(scratch, 0, secondary, i) },
			func() error { return m.sectorStep(secondary, i, primary, i) },
			func() error { return m.sectorStep(primary, i, scratch, 0) },
		}
		for j, step := range steps {
			if t.status[i*3+j] != flagUnset {
				continue
			}
			if err := step(); err != nil {
				return err
			}
			t.status[i*3+j] = byte(j + 1)
			if err := f.writeTrailer(primary, t); err != nil {
				return err
			}
		}
	}
	return m.finishSwap(t)
}

// sectorStep erases sector di of dst and copies sector si of src into it.
func (m *MCU) sectorStep(dst slot, di int, src slot, si int) error {
	if err := m.flash.eraseSector(dst, di); err != nil {
		return err
	}
	return m.flash.copySector(src, si, dst, di)
}

// finishSwap erases the secondary trailer (the request is served) and
// records in the primary one that the copy is done; a test leaves image-ok
// unset, so that the next reset reverts unless the image confirms itself.
func (m *MCU) finishSwap(t trailer) error {
	f := m.flash
	if err := f.writeTrailer(secondary, erasedTrailer(f.maxSectors)); err != nil {
		return err
	}
	typ := swapType(t.swapInfo)
	t.copyDone = flagSet
	if typ == swapPerm || typ == swapRevert {
		t.imageOK = flagSet
	}
	if err := f.writeTrailer(primary, t); err != nil {
		return err
	}
	m.event("%s swap done", typ)
	return nil
}

// eraseSlot erases every sector of a slot, trailer included.
func (m *MCU) eraseSlot(s slot) error {
	for i := 0; i <= m.flash.maxSectors; i++ {
		if err := m.flash.eraseSector(s, i); err != nil {
			return err
		}
	}
	return nil
}

// slotHeader parses the image in a slot without checking anything beyond
// its layout (what image state reports for a slot).
func (m *MCU) slotHeader(s slot) (*smp.Image, error) {
	r := &slotReader{f: m.flash, s: s}
	head, err := m.flash.read(s, 0, smp.ImageHeaderSize)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(head, bytes.Repeat([]byte{0xff}, len(head))) {
		return nil, fmt.Errorf("smptest: slot %d is empty", s)
	}
	return smp.ParseImage(r, m.imageLen(s, head))
}

// slotImage is slotHeader plus MCUboot's signature check, when the MCU
// has a key.
func (m *MCU) slotImage(s slot) (*smp.Image, error) {
	im, err := m.slotHeader(s)
	if err != nil {
		return nil, err
	}
	if m.cfg.Key != nil {
		if err := im.VerifyEd25519(m.cfg.Key); err != nil {
			return nil, err
		}
	}
	return im, nil
}

// imageLen finds the length of the image in slot s whose header is
// head: header, body, protected TLV area, and the TLV area, whose size
// its info record gives (as MCUboot walks an image in flash).
func (m *MCU) imageLen(s slot, head []byte) int64 {
	le := binary.LittleEndian
	off := int64(le.Uint16(head[8:])) + int64(le.Uint32(head[12:])) + int64(le.Uint16(head[10:]))
	if off+4 > m.flash.imageArea() {
		return m.flash.imageArea()
	}
	info, err := m.flash.read(s, off, 4)
	if err != nil || le.Uint16(info) != smp.TLVInfoMagic {
		return off + 4 // too short: ParseImage says why
	}
	return min(off+int64(le.Uint16(info[2:])), m.flash.imageArea())
}

// slotReader reads a slot's image area.
type slotReader struct {
	f *flash
	s slot
}

func (r *slotReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.f.imageArea() {
		return 0, fmt.Errorf("smptest: read beyond the image area")
	}
	return r.f.files[r.s].ReadAt(p, off)
}
