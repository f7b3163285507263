package smptest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The flash of the simulated MCU: three files, the primary slot, the
// secondary slot and the scratch sector, erased to 0xff. Each slot's last
// sector holds its image trailer and is never part of an image; images
// live in the sectors before it.
//
// The trailer follows MCUboot's docs/design.md ("Image Trailer"), at the
// end of the slot:
//
//	swap status   maxSectors*3 one-byte records (0xff: not written)
//	swap size     u32 little endian, then 4 bytes 0xff
//	swap info     u8 (the swap type of the swap in progress), 7 bytes 0xff
//	copy done     u8 (0x01: done, 0xff: not), 7 bytes 0xff
//	image ok      u8 (0x01: confirmed, 0xff: not), 7 bytes 0xff
//	magic         16 bytes: 0xf395c277 0x7fefd260 0x0f505235 0x8079b62c,
//	              each little endian
//
// Simplifications, on purpose: a trailer is written whole in one flash
// operation (MCUboot writes its fields one by one in an order that makes
// each prefix safe; the states reachable here are the same), and the
// trailer sector is not swapped with the images, so the swap status of a
// swap in progress always lives in the primary slot's trailer.

const (
	flagSet   = 0x01
	flagUnset = 0xff
)

var bootMagic = func() []byte {
	var b []byte
	for _, w := range []uint32{0xf395c277, 0x7fefd260, 0x0f505235, 0x8079b62c} {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b
}()

// trailer is the decoded image trailer of one slot.
type trailer struct {
	status   []byte // one byte per record, 3 per sector index
	swapSize uint32
	swapInfo byte
	copyDone byte
	imageOK  byte
	magic    bool
}

func trailerSize(maxSectors int) int { return maxSectors*3 + 8 + 8 + 8 + 8 + 16 }

func (t trailer) encode(maxSectors int) []byte {
	b := bytes.Repeat([]byte{0xff}, trailerSize(maxSectors))
	copy(b, t.status)
	p := maxSectors * 3
	if t.swapSize != 0xffffffff {
		binary.LittleEndian.PutUint32(b[p:], t.swapSize)
	}
	b[p+8], b[p+16], b[p+24] = t.swapInfo, t.copyDone, t.imageOK
	if t.magic {
		copy(b[p+32:], bootMagic)
	}
	return b
}

func decodeTrailer(b []byte, maxSectors int) trailer {
	p := maxSectors * 3
	return trailer{
		status:   bytes.Clone(b[:p]),
		swapSize: binary.LittleEndian.Uint32(b[p:]),
		swapInfo: b[p+8],
		copyDone: b[p+16],
		imageOK:  b[p+24],
		magic:    bytes.Equal(b[p+32:p+48], bootMagic),
	}
}

func erasedTrailer(maxSectors int) trailer {
	return trailer{status: bytes.Repeat([]byte{0xff}, maxSectors*3), swapSize: 0xffffffff, swapInfo: 0xff, copyDone: 0xff, imageOK: 0xff}
}

// errPowerCut is returned by a flash operation when the power goes.
var errPowerCut = errors.New("smptest: power cut")

// slot indexes the flash files.
type slot int

const (
	primary slot = iota
	secondary
	scratch
)

// flash holds the files and counts operations for power cuts.
type flash struct {
	files      [3]*os.File
	slotSize   int64
	sectorSize int64
	maxSectors int // sectors an image may use: all but the trailer sector

	ops      int // mutating operations so far
	cutAfter int // operations left before the power goes; -1: none
}

func openFlash(dir string, slotSize, sectorSize int64) (*flash, error) {
	f := &flash{slotSize: slotSize, sectorSize: sectorSize, maxSectors: int(slotSize/sectorSize) - 1, cutAfter: -1}
	for i, name := range []string{"primary.bin", "secondary.bin", "scratch.bin"} {
		size := slotSize
		if slot(i) == scratch {
			size = sectorSize
		}
		if err := f.openFile(slot(i), filepath.Join(dir, name), size); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

// openFile opens one flash file, creating it erased.
func (f *flash) openFile(s slot, path string, size int64) error {
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, bytes.Repeat([]byte{0xff}, int(size)), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
		file, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return err
	}
	if fi, err := file.Stat(); err != nil || fi.Size() != size {
		file.Close()
		return fmt.Errorf("smptest: flash file %s: want %d bytes", path, size)
	}
	f.files[s] = file
	return nil
}

func (f *flash) close() {
	for _, file := range f.files {
		if file != nil {
			file.Close()
		}
	}
}

// op counts one mutating operation, failing when the power goes.
func (f *flash) op() error {
	if f.cutAfter == 0 {
		return errPowerCut
	}
	if f.cutAfter > 0 {
		f.cutAfter--
	}
	f.ops++
	return nil
}

func (f *flash) read(s slot, off int64, n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := f.files[s].ReadAt(b, off)
	return b, err
}

func (f *flash) write(s slot, off int64, b []byte) error {
	if err := f.op(); err != nil {
		return err
	}
	_, err := f.files[s].WriteAt(b, off)
	return err
}

func (f *flash) eraseSector(s slot, i int) error {
	return f.write(s, int64(i)*f.sectorSize, bytes.Repeat([]byte{0xff}, int(f.sectorSize)))
}

// copySector copies sector i of from to sector j of to (one operation: a
// real copy is a read and a program of the erased destination).
func (f *flash) copySector(from slot, i int, to slot, j int) error {
	b, err := f.read(from, int64(i)*f.sectorSize, int(f.sectorSize))
	if err != nil {
		return err
	}
	return f.write(to, int64(j)*f.sectorSize, b)
}

func (f *flash) trailerOff() int64 { return f.slotSize - int64(trailerSize(f.maxSectors)) }

func (f *flash) trailer(s slot) (trailer, error) {
	b, err := f.read(s, f.trailerOff(), trailerSize(f.maxSectors))
	if err != nil {
		return trailer{}, err
	}
	return decodeTrailer(b, f.maxSectors), nil
}

func (f *flash) writeTrailer(s slot, t trailer) error {
	return f.write(s, f.trailerOff(), t.encode(f.maxSectors))
}

// imageArea is how many bytes of a slot an image may use.
func (f *flash) imageArea() int64 { return int64(f.maxSectors) * f.sectorSize }
