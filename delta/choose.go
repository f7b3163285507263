package delta

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Chunkings returns the chunkings [ChooseChunking] tries when given none:
// fixed 4 KiB blocks (block file systems whose changes are a few
// blocks), content-defined chunks of 4 KiB average (packed formats with
// local changes) and of 16 KiB (content that changes nearly everywhere,
// such as executables whose code moved, where the larger chunks compress
// better and the index is smaller).
func Chunkings() []IndexOptions {
	return []IndexOptions{
		{Chunking: ChunkFixed, BlockSize: 4 << 10},
		{Chunking: ChunkCDC, AvgSize: 4 << 10},
		{Chunking: ChunkCDC, AvgSize: 16 << 10},
	}
}

// ChunkingCost is what an adaptive delta from a chunk pack is expected to
// cost a device that holds one base, with one chunking.
type ChunkingCost struct {
	// Options is the chunking, with defaults filled in.
	Options IndexOptions
	// IndexBytes is the chunk index, zstd-compressed as published.
	IndexBytes int64
	// TableBytes is the pack table (exact for the chunks fetched, the
	// others counted at the length of their uncompressed size).
	TableBytes int64
	// Fetched is the number of distinct chunks of the image the base
	// lacks; FetchBytes the size of their pack frames.
	Fetched    int
	FetchBytes int64
}

// Total is the bytes the device is expected to fetch: index, table and
// frames. The few unneeded bytes a request merges over are not counted.
func (c ChunkingCost) Total() int64 { return c.IndexBytes + c.TableBytes + c.FetchBytes }

// ChooseChunking returns the chunking among candidates (default
// [Chunkings]) whose adaptive delta of image from base (typically the
// release devices run now) fetches the fewest bytes, and the cost of
// every candidate, in order. Which chunking suits an image depends on how
// it changes, which the publisher knows and the device does not: fixed
// blocks find ext4's unchanged blocks, content-defined chunks follow
// shifted data, and when nearly everything changed larger chunks compress
// better. Publisher side, before [BuildIndex] and [WritePack]; devices
// follow any chunking, since they index their bases with the options of
// the index they fetch.
//
// It reads both images once per candidate and compresses the chunks the
// base lacks as [WritePack] would; memory is the indexes (about 64 bytes
// per chunk) and one chunk.
func ChooseChunking(ctx context.Context, image io.ReaderAt, imageSize int64, base io.ReaderAt, baseSize int64, candidates []IndexOptions) (ChunkingCost, []ChunkingCost, error) {
	if len(candidates) == 0 {
		candidates = Chunkings()
	}
	ienc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return ChunkingCost{}, nil, err
	}
	defer ienc.Close()
	costs := make([]ChunkingCost, 0, len(candidates))
	best := -1
	for _, o := range candidates {
		c, err := chunkingCost(ctx, ienc, image, imageSize, base, baseSize, o)
		if err != nil {
			return ChunkingCost{}, nil, err
		}
		costs = append(costs, c)
		if best < 0 || c.Total() < costs[best].Total() {
			best = len(costs) - 1
		}
	}
	return costs[best], costs, nil
}

// chunkingCost indexes both images with o and prices the chunks of image
// that base lacks; ienc compresses the index.
func chunkingCost(ctx context.Context, ienc *zstd.Encoder, image io.ReaderAt, imageSize int64, base io.ReaderAt, baseSize int64, o IndexOptions) (ChunkingCost, error) {
	ix, err := BuildIndex(ctxReader(ctx, io.NewSectionReader(image, 0, imageSize)), o)
	if err != nil {
		return ChunkingCost{}, err
	}
	bix, err := BuildIndex(ctxReader(ctx, io.NewSectionReader(base, 0, baseSize)), ix.opts)
	if err != nil {
		return ChunkingCost{}, err
	}
	c := ChunkingCost{Options: ix.opts}
	b, err := ix.MarshalBinary()
	if err != nil {
		return c, err
	}
	c.IndexBytes = int64(len(ienc.EncodeAll(b, nil)))
	have := make(map[[32]byte]bool, len(bix.chunks))
	for _, ch := range bix.chunks {
		have[ch.Hash] = true
	}
	enc, err := chunkEncoder(ix)
	if err != nil {
		return c, err
	}
	defer enc.Close()
	buf, seen := make([]byte, ix.opts.MaxSize), make(map[[32]byte]bool)
	var frame []byte
	for _, ch := range ix.chunks {
		if seen[ch.Hash] {
			continue
		}
		seen[ch.Hash] = true
		n := int64(uvarintLen(uint64(ch.Size)))
		if !have[ch.Hash] {
			if frame, err = chunkFrame(ctx, enc, image, ch, buf, frame); err != nil {
				return c, err
			}
			n = int64(uvarintLen(uint64(len(frame))))
			c.Fetched++
			c.FetchBytes += int64(len(frame))
		}
		c.TableBytes += n
	}
	c.TableBytes += int64(len(packMagic) + 1 + uvarintLen(uint64(len(seen))))
	return c, nil
}

// chunkFrame reads chunk ch of image into buf and compresses it into dst
// as a pack frame.
func chunkFrame(ctx context.Context, enc *zstd.Encoder, image io.ReaderAt, ch Chunk, buf, dst []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := buf[:ch.Size]
	if _, err := image.ReadAt(b, ch.Offset); err != nil && !(err == io.EOF && len(b) == int(ch.Size)) {
		return nil, fmt.Errorf("delta: reading image at %d: %w", ch.Offset, err)
	}
	return enc.EncodeAll(b, dst[:0]), nil
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// ctxReader returns r, failing once ctx is done.
func ctxReader(ctx context.Context, r io.Reader) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return r.Read(p)
	})
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
