package slotstest

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchback-ota/switchback/slots"
)

// ErrUnaligned is returned by a [BlockSlot] write that does not start on a
// block boundary or does not cover whole blocks (except the image's last,
// partial block).
var ErrUnaligned = errors.New("slotstest: unaligned write")

// BlockSlot is a [MemSlot] that behaves like a raw partition or flash: it
// implements [slots.BlockSizer] and refuses writes that are not aligned to
// its block size with [ErrUnaligned], so tests catch an updater that
// ignores BlockSize. It does not pass [TestSlot], which writes at odd
// offsets on purpose.
type BlockSlot struct {
	*MemSlot
	blockSize int
}

// NewBlockSlot returns an empty slot with the given block size (at least
// 1); opts are those of [NewMemSlot].
func NewBlockSlot(name string, capacity int64, blockSize int, opts ...MemOption) *BlockSlot {
	if blockSize < 1 {
		panic("slotstest: NewBlockSlot: block size must be at least 1")
	}
	return &BlockSlot{MemSlot: NewMemSlot(name, capacity, opts...), blockSize: blockSize}
}

// BlockSize returns the block size writes must be aligned to.
func (b *BlockSlot) BlockSize() int { return b.blockSize }

// Writer opens the slot like [MemSlot.Writer], with alignment checks.
func (b *BlockSlot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	w, err := b.MemSlot.Writer(ctx, size)
	if err != nil {
		return nil, err
	}
	return &blockWriter{Writer: w, size: size, bs: int64(b.blockSize)}, nil
}

type blockWriter struct {
	slots.Writer
	size, bs int64
}

func (w *blockWriter) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if off%w.bs != 0 || (int64(len(p))%w.bs != 0 && end != w.size) {
		return 0, fmt.Errorf("slotstest: %d bytes at offset %d, block size %d, image of %d bytes: %w", len(p), off, w.bs, w.size, ErrUnaligned)
	}
	return w.Writer.WriteAt(p, off)
}

var _ slots.BlockSizer = (*BlockSlot)(nil)
