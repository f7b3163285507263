package delta

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/internal/durable"
)

// The layout of chunk stores, shared by the publisher (package repository
// writes it under its targets directory) and the device (package updater
// reads it under its targets URL): StoreDir holds the chunk files (see
// [Index.ChunkPath] and [WriteChunkStore]) and, below it, PackDir the
// chunk packs and their tables (see [PackPaths] and [WritePack]).
const (
	StoreDir = "chunks"
	PackDir  = "packs"
)

// PackPaths returns the paths, relative to the chunk store, of the pack
// and the pack table of the chunk index whose sha256 is indexSHA256 (hex):
// "packs/<sha256>.pack" and "packs/<sha256>.tab". Named by the signed
// index's digest, a pack needs no TUF entry: every chunk is checked
// against that index, and the image against its target.
func PackPaths(indexSHA256 string) (pack, table string) {
	return PackDir + "/" + indexSHA256 + ".pack", PackDir + "/" + indexSHA256 + ".tab"
}

// ChunkPath returns the path of chunk c in a chunk store, relative to
// the store's root: "<first two hex digits>/<hex hash>.zst", as in
// casync and desync stores. The file holds the chunk compressed with
// zstd, one frame.
func (ix *Index) ChunkPath(c Chunk) string {
	h := ix.HashString(c)
	return h[:2] + "/" + h + ".zst"
}

// StoreStats reports what [WriteChunkStore] did.
type StoreStats struct {
	// Chunks is the number of distinct chunks in the image; Written of
	// them were new to the store.
	Chunks, Written int
	// Bytes is the compressed size of the image's distinct chunks.
	Bytes int64
}

// chunkEncoder returns the encoder of chunk frames (chunk store and pack):
// a window of the largest chunk loses nothing, as every frame is one chunk,
// and keeps the encoder's tables small.
func chunkEncoder(ix *Index) (*zstd.Encoder, error) {
	window := zstd.MinWindowSize
	for window < ix.opts.MaxSize {
		window *= 2
	}
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false), zstd.WithWindowSize(window))
}

// WriteChunkStore writes every chunk of image, whose index is ix, into
// the chunk store under dir, compressed with zstd, skipping chunks the
// store already holds (stores are shared between releases). It reads
// image once, in order, and fails if a chunk does not match ix. Files
// appear atomically and durably (a temporary file fsynced and renamed, the
// directories fsynced before it returns), so a store being written can be
// served and a chunk file that exists is whole. Publisher side: the
// repository tool runs it beside [BuildIndex].
func WriteChunkStore(dir string, ix *Index, image io.Reader) (StoreStats, error) {
	var st StoreStats
	enc, err := chunkEncoder(ix)
	if err != nil {
		return st, err
	}
	defer enc.Close()
	buf := make([]byte, ix.opts.MaxSize)
	var cbuf []byte
	seen := make(map[[32]byte]bool)
	var files durable.Batch
	defer files.Cleanup() // of an unfinished store: temporary files
	for _, c := range ix.chunks {
		b := buf[:c.Size]
		if _, err := io.ReadFull(image, b); err != nil {
			return st, fmt.Errorf("delta: reading image at %d: %w", c.Offset, err)
		}
		if s := sha256.Sum256(b); string(s[:ix.opts.HashSize]) != string(c.Hash[:ix.opts.HashSize]) {
			return st, fmt.Errorf("delta: image bytes %d-%d do not match the index", c.Offset, c.Offset+c.Size-1)
		}
		if seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		st.Chunks++
		name := filepath.Join(dir, filepath.FromSlash(ix.ChunkPath(c)))
		if fi, err := os.Stat(name); err == nil {
			st.Bytes += fi.Size()
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return st, err
		}
		cbuf = enc.EncodeAll(b, cbuf[:0])
		if err := files.WriteFile(name, cbuf, 0o644); err != nil {
			return st, err
		}
		st.Written++
		st.Bytes += int64(len(cbuf))
	}
	var one [1]byte
	if n, _ := io.ReadFull(image, one[:]); n > 0 {
		return st, fmt.Errorf("delta: image longer than its index (%d bytes)", ix.length)
	}
	return st, files.Sync()
}
