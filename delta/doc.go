// Package delta moves only what changed between two releases of an
// image. It produces deltas on the publisher side (used by the
// repository tool) and applies them on the device as a stream, in order,
// with memory bounded by constants rather than by image size. It imports
// only the standard library and klauspost/compress/zstd; bases are plain
// io.ReaderAt, so any slot reader serves.
//
// There are two kinds, and the updater tries them cheapest first, falling
// back to the next on any error: static patch for its exact base, else
// adaptive delta, else the full image. Whatever the path, the caller
// hashes the bytes it writes and checks them against the full image's
// TUF target (length and sha256; for a patch or index target, its
// custom "uncompressed" digest) before anything is activated: this
// package checks pieces, not the whole.
//
// # Adaptive delta
//
// Publisher: [BuildIndex] cuts the uncompressed image into chunks and
// lists their hashes; [Index.MarshalBinary] encodes the index (format
// [IndexFormat], documented in index.go; [ParseIndex] decodes it). The
// repository tool publishes it as a TUF target of kind "chunk-index"
// with of = the image's target path and format = [IndexFormat]
// (optionally zstd-compressed, compression = "zstd"). Missing chunks are
// served either as byte ranges of the uncompressed image, published
// beside it, or from a chunk store written by [WriteChunkStore]: one
// zstd file per distinct chunk at <store>/<hh>/<hash>.zst, shared by all
// releases, like casync and desync stores. Any static server will do.
//
// Choose the chunking by how the image changes, best with
// [ChooseChunking], which prices the candidates against the release
// devices run now and returns the cheapest (measured by
// examples/deltabench; figures in examples/deltabench/README.md):
// fixed 4 KiB blocks
// ([ChunkFixed], the default) for ext4 and other block-allocating file
// systems, where they fetch the fewest bytes from a chunk store;
// content-defined chunks ([ChunkCDC], average 4 KiB) for squashfs,
// tarballs and other packed formats, where data shifts and fixed blocks
// find nothing; these compress no further, so byte ranges are as small as
// a chunk store and take far fewer requests; content-defined chunks of
// 16 KiB average where nearly everything changed (executables whose code
// moved), as larger chunks compress better and need a smaller index.
//
// Device, to install image target T with chunk-index target X:
//
//  1. Keep an index of every slot. While writing a slot, tee the bytes
//     into an [IndexWriter] made with the options of the indexes the
//     repository publishes, and persist [Index.MarshalBinary] beside the
//     slot together with the slot's image hash. The index is stale when
//     that hash is not the slot's, when it was made with other options
//     ([ErrIndexMismatch] from [NewPlan]), or when a write was resumed
//     without feeding the IndexWriter the bytes before the resume point;
//     then recompute it once with [BuildIndex] over the slot reader.
//  2. Download X through TUF (length and hash verified; the repository
//     tool publishes it zstd-compressed, with the uncompressed digest in
//     its custom metadata) and [ParseIndex] it. Make a [Plan] with [NewPlan]: bases are the running slot, then
//     the inactive slot (holding the release before) with InPlace set,
//     since the new image is written over it.
//  3. Open the inactive slot for writing and call [Apply] with the base
//     readers in the same order, a [Source] (Pack: the chunk pack's
//     table and a RangeFunc over its URL; Range: a RangeFunc over the
//     uncompressed image URL; or Store: a StoreFunc over the chunk store
//     URL — on a device, all fetched by its download client with its
//     stall and low-speed limits, retries, rate limit, pause and mirrors;
//     [HTTPRange] and [HTTPStore] are plain versions for tools and tests;
//     with a pack or store, Written: a reader of the slot being written,
//     so that chunks repeated in the image are copied, not fetched
//     again), and a writer that writes the slot in order and hashes for
//     the TUF check. Every pack response is read to its end: servers send
//     what was asked whether it is read or not. Every chunk is checked as
//     it arrives. To resume
//     after an interruption, apply [Plan.From] at the offset durably
//     written (re-hash the slot's bytes before it for the TUF check).
//  4. Verify the whole image against T. On [ErrNoRange] (a server that
//     ignores Range), [ErrCorruptChunk], a fetch error or a failed final
//     check, fall back to the full image.
//
// Memory on the device: one chunk buffer (at most the index's maximum
// chunk size) plus, for a store, a zstd decoder of that window, and the
// indexes: about 64 bytes per chunk of the new image and of each base
// (131072 chunks for a 512 MiB image in 4 KiB blocks).
//
// # Static patch
//
// Publisher: [Diff] turns one base (the exact image of a release devices
// run) and the new image into a patch (format [PatchFormat], documented
// in patch.go): copies from anywhere in the base, exact or approximate
// (base bytes plus byte differences, bsdiff-style, for code whose
// addresses moved), and zstd-compressed literals, in frames of about
// 1 MiB that each decode on their own. The
// repository tool publishes it as a TUF target of kind "patch" with of =
// the image target, base = the base image's sha256, format =
// [PatchFormat] and uncompressed = the new image's digest.
//
// Device: when the running slot holds exactly the base (its image hash
// equals the patch's base), stream the patch into [ApplyPatch] with the
// running slot's reader as base, writing the inactive slot in order and
// hashing both the patch bytes (for the patch target) and the output (for
// the image target). Never use the slot being written as the base of a
// patch: it reads the base anywhere. After each frame [ApplyPatch] reports
// a [PatchCheckpoint]: sync the slot, then persist the checkpoint with
// both hash states. To resume after an interruption, fetch the patch from
// the checkpoint's PatchOffset (HTTP Range), restore the hash states, and
// call [ApplyPatch] with From set, writing from its OutputOffset; at most
// one frame is fetched again. The patch reader must deliver the bytes the
// publisher wrote: check the patch target's hash over all of them before
// using the image. [ApplyPatch] checks its output against the hash in the
// patch ([ErrCorruptPatch]) and a short base ([ErrBaseMismatch]); on any
// error fall back to the adaptive delta or the full image. Patches of the
// earlier formats still apply: [PatchFormatV2] resumes like version 3,
// [PatchFormatV1] from its start only. Memory is bounded by two zstd
// decoders of [PatchMaxWindow], one frame's instructions
// ([PatchMaxInstructions]) and compressed differences (at most
// [PatchMaxFrame]) and small buffers: under 64 MiB.
//
// Concurrency: indexes and plans are immutable and may be shared;
// IndexWriter is for one goroutine; Apply, Patch, ApplyPatch and Diff use
// only what they are given.
package delta
