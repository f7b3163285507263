package repository

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/durable"
	"github.com/switchback-ota/switchback/verify"
)

// ChunkStoreDir is the chunk store's directory under the targets
// directory, shared by every release (delta.StoreDir: the layout is
// defined once, in package delta, for the publisher and the devices).
// Prune leaves it alone.
const ChunkStoreDir = delta.StoreDir

// PackDir is where, under the chunk store, chunk packs live
// (delta.PackDir): "<targets>/chunks/packs/<index sha256>.pack" holds an
// image's distinct chunks as independent zstd frames and "<index
// sha256>.tab" its table (delta.WritePack).
const PackDir = delta.PackDir

// PackPaths returns the pack and table paths, relative to the chunk
// store, of the chunk index whose sha256 is indexSHA256 (hex); see
// delta.PackPaths.
func PackPaths(indexSHA256 string) (pack, table string) { return delta.PackPaths(indexSHA256) }

// ErrImageMismatch is wrapped (with ErrBadTarget) when the image given to
// AddChunkIndex or AddPatch is not the one the signed target describes.
var ErrImageMismatch = errors.New("repository: image does not match its target")

// imageOf returns the custom metadata of the full image target p and the
// digest of its uncompressed image.
func (r *Repo) imageOf(p string) (verify.Custom, verify.Digest, error) {
	tf, ok := r.targets().Signed.Targets[p]
	if !ok {
		return verify.Custom{}, verify.Digest{}, fmt.Errorf("%w: image target %q (add it first)", ErrNotFound, p)
	}
	if tf.Custom == nil {
		return verify.Custom{}, verify.Digest{}, fmt.Errorf("%w: %s has no custom metadata", ErrBadTarget, p)
	}
	c, err := verify.ParseCustom(*tf.Custom)
	if err != nil {
		return verify.Custom{}, verify.Digest{}, fmt.Errorf("%w: %s: %w", ErrBadTarget, p, err)
	}
	if c.Kind != "" && c.Kind != verify.KindImage {
		return verify.Custom{}, verify.Digest{}, fmt.Errorf("%w: %s is a %s, not an image", ErrBadTarget, p, c.Kind)
	}
	if c.Compression != "" {
		return c, *c.Uncompressed, nil
	}
	return c, verify.Digest{Length: tf.Length, SHA256: hex.EncodeToString(tf.Hashes["sha256"])}, nil
}

// digestReader counts and hashes what is read through it.
type digestReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	size int64 // expected length, a hint for Len
}

// Len tells delta.Diff how much is left to read, so that it sizes its
// buffer once instead of doubling it (an image of 512 MiB would otherwise
// take up to twice that). A wrong hint costs memory, not correctness.
func (d *digestReader) Len() int {
	if left := d.size - d.n; left > 0 && left <= delta.MaxImageSize && int64(int(left)) == left {
		return int(left)
	}
	return 0
}

func newDigestReader(ctx context.Context, r io.Reader) *digestReader {
	return &digestReader{r: ctxReader{ctx, r}, h: sha256.New()}
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}

func (d *digestReader) digest() verify.Digest {
	return verify.Digest{Length: d.n, SHA256: hex.EncodeToString(d.h.Sum(nil))}
}

func checkImage(p string, got, want verify.Digest) error {
	if got != want {
		return fmt.Errorf("%w: %w: %s: the image given has %d bytes, sha256 %s; the target describes %d bytes, sha256 %s",
			ErrBadTarget, ErrImageMismatch, p, got.Length, got.SHA256, want.Length, want.SHA256)
	}
	return nil
}

// AddChunkIndex adds the chunk index of the full image target imagePath,
// already added, as target "<imagePath>.idx" of kind chunk-index (same
// component, version and hardware as the image; of = imagePath; format =
// delta.IndexFormat), zstd-compressed (compression and uncompressed set,
// as for a compressed image; devices from before it fall back to the
// full image). image is the uncompressed release image, read once
// as a stream; it must match the target's signed digest (for a zstd
// target, its uncompressed digest), or ErrImageMismatch is returned and
// nothing is added.
//
// With store, or always when the image target is zstd-compressed (devices
// cannot fetch byte ranges of it), the image's chunks are also written to
// the chunk store <targets dir>/chunks/ (delta.WriteChunkStore, skipping
// chunks already there); that second pass reads the target file from the
// repository. opts choose the chunking: the zero value is fixed 4 KiB
// blocks (ext4), delta.ChunkCDC suits squashfs and other packed formats,
// and delta.ChooseChunking picks, from the release devices run now, the
// one whose adaptive delta fetches the fewest bytes (switchback-repo
// delta -chunking auto).
// The change is staged; Publish makes it visible.
//
// Publishing deltas: a device installs a release cheapest first, a static
// patch from the exact image it runs, else an adaptive delta from a chunk
// index, else the full image (packages delta and updater). After adding
// the full image target T (AddTarget), the publisher adds:
//
//   - AddChunkIndex: the chunk index of T, target "<T>.idx". Devices fetch
//     the chunks they lack as byte ranges of T when T is uncompressed, or
//     from the chunk store <targets>/chunks/<hh>/<hash>.zst, written when
//     asked and always for a zstd T (byte ranges of a compressed stream
//     are useless). The store is shared by every release.
//   - AddPatch: one patch per base release devices may still run, target
//     "<T>.from-<12 hex digits of the base's sha256>.patch". Patches from
//     different bases for one release coexist.
//
// Both read the uncompressed release image again (the repository keeps
// only the target) and refuse an image other than the one T describes.
// Then Publish, as for any change. Prune leaves the chunk store alone;
// PruneChunks, run after it, deletes the chunks no live index names. With
// the command line tool:
//
//	switchback-repo add -repo R -keys K -component rootfs -version 1.2.0 -hardware board-a -zstd x.img
//	switchback-repo delta -repo R -keys K -target rootfs/1.2.0/x.img.zst -image x.img \
//	    -index -chunking auto -base 1.1.0.img -base 1.0.0.img
//	switchback-repo prune -repo R -keys K && switchback-repo prune-chunks -repo R -keys K
//
// Fixed 4 KiB chunks suit ext4 and other block file systems; cdc suits
// squashfs, tarballs and other packed formats, and larger CDC chunks
// images that change nearly everywhere, such as executables; auto prices
// these from the first -base (see package delta).
func (r *Repo) AddChunkIndex(ctx context.Context, imagePath string, image io.Reader, opts delta.IndexOptions, store bool) (Target, error) {
	c, want, err := r.imageOf(imagePath)
	if err != nil {
		return Target{}, err
	}
	dr := newDigestReader(ctx, image)
	ix, err := delta.BuildIndex(dr, opts)
	if err != nil {
		if ctx.Err() != nil {
			return Target{}, ctx.Err()
		}
		return Target{}, fmt.Errorf("repository: chunk index of %s: %w", imagePath, err)
	}
	if err := checkImage(imagePath, dr.digest(), want); err != nil {
		return Target{}, err
	}
	b, err := ix.MarshalBinary()
	if err != nil {
		return Target{}, fmt.Errorf("repository: chunk index of %s: %w", imagePath, err)
	}
	// The index is published zstd-compressed, as one frame (about 2.4x
	// smaller on ext4). Its pack is named by the signed digest of the
	// target bytes, so compress first, the same way AddTarget will.
	var z bytes.Buffer
	if _, err := compressFrames(ctx, &z, bytes.NewReader(b), len(b)); err != nil {
		return Target{}, err
	}
	zsum := sha256.Sum256(z.Bytes())
	if store || c.Compression != "" {
		if _, err := r.writeChunkStore(ctx, imagePath, c, ix); err != nil {
			return Target{}, err
		}
		if err := r.writePack(ctx, imagePath, c, ix, hex.EncodeToString(zsum[:])); err != nil {
			return Target{}, err
		}
	}
	ic := verify.Custom{
		Component: c.Component, Version: c.Version, Hardware: c.Hardware,
		Kind: verify.KindChunkIndex, Of: imagePath, Format: delta.IndexFormat,
	}
	t, err := r.AddTarget(ctx, imagePath+".idx", bytes.NewReader(b), ic, AddOptions{Zstd: true, FrameSize: len(b)})
	if err == nil && t.SHA256 != hex.EncodeToString(zsum[:]) {
		// Cannot happen while compressFrames is deterministic; the pack
		// would be under another name.
		err = fmt.Errorf("repository: chunk index of %s compressed twice to different bytes", imagePath)
	}
	return t, err
}

// openImage opens the image of target p, read back from its target file
// and decompressed if needed.
func (r *Repo) openImage(p string, c verify.Custom) (io.ReadCloser, error) {
	t, err := r.Target(p)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(r.TargetsDir(), filepath.FromSlash(t.File)))
	if err != nil {
		return nil, fmt.Errorf("repository: target file of %s: %w", p, err)
	}
	if c.Compression != verify.CompressionZstd {
		return f, nil
	}
	d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("repository: zstd: %w", err)
	}
	return struct {
		io.Reader
		io.Closer
	}{d, closerFunc(func() error { d.Close(); return f.Close() })}, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// writePack writes the chunk pack and its table for the index whose
// sha256 is ixSum (PackPaths), atomically (temporary files and renames,
// the table last, so a device never finds a table without its pack).
func (r *Repo) writePack(ctx context.Context, p string, c verify.Custom, ix *delta.Index, ixSum string) error {
	img, err := r.openImage(p, c)
	if err != nil {
		return err
	}
	defer img.Close()
	packRel, tabRel := PackPaths(ixSum)
	store := filepath.Join(r.TargetsDir(), ChunkStoreDir)
	var tab *delta.PackTable
	err = durable.MkdirAll(filepath.Join(store, PackDir), 0o755)
	if err == nil {
		err = durable.Write(filepath.Join(store, filepath.FromSlash(packRel)), 0o644, func(f *os.File) error {
			var err error
			tab, _, err = delta.WritePack(f, ix, ctxReader{ctx, img})
			return err
		})
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("repository: chunk pack for %s: %w", p, err)
	}
	tb, _ := tab.MarshalBinary()
	if err := writeFileDurable(filepath.Join(store, filepath.FromSlash(tabRel)), tb, 0o644); err != nil {
		return fmt.Errorf("repository: chunk pack table for %s: %w", p, err)
	}
	return nil
}

// writeChunkStore writes the chunks of the image target p, read back from
// its target file (decompressed if needed), into the chunk store.
func (r *Repo) writeChunkStore(ctx context.Context, p string, c verify.Custom, ix *delta.Index) (delta.StoreStats, error) {
	src, err := r.openImage(p, c)
	if err != nil {
		return delta.StoreStats{}, err
	}
	defer src.Close()
	st, err := delta.WriteChunkStore(filepath.Join(r.TargetsDir(), ChunkStoreDir), ix, ctxReader{ctx, src})
	if err != nil {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		return st, fmt.Errorf("repository: chunk store for %s: %w", p, err)
	}
	return st, nil
}

// PatchPath returns the target path of the patch to image target newPath
// from the base image whose hex sha256 is baseSHA256:
// "<newPath>.from-<first 12 hex digits>.patch".
func PatchPath(newPath, baseSHA256 string) string {
	if len(baseSHA256) > 12 {
		baseSHA256 = baseSHA256[:12]
	}
	return newPath + ".from-" + baseSHA256 + ".patch"
}

// AddPatch adds a static patch (delta.Diff) that turns the base release
// image (the first baseSize bytes of base, exactly as devices run it) into
// the image of target newPath, already added. The patch becomes target
// PatchPath(newPath, sha256 of base) of kind patch, with of = newPath,
// base = the base image's hex sha256, format = delta.PatchFormat and
// uncompressed = the new image's digest. newImage is the uncompressed new
// image; it must match the target's signed digest (for a zstd target, its
// uncompressed digest), or ErrImageMismatch is returned and nothing is
// added. Add one patch per base devices may still run; patches from other
// bases stay. Diff holds both images in memory. The change is staged;
// Publish makes it visible.
//
// The patch has the resumable format switchback-patch-v3 (approximate
// copies, for executables whose code moved), its sections compressed by
// the zstd program too when it is installed (delta.ZstdCommand). Devices
// running an updater from before it know only switchback-patch-v2 or -v1,
// skip the patch and take the adaptive delta or the full image instead.
func (r *Repo) AddPatch(ctx context.Context, newPath string, base io.ReaderAt, baseSize int64, newImage io.Reader) (Target, error) {
	c, want, err := r.imageOf(newPath)
	if err != nil {
		return Target{}, err
	}
	if baseSize < 0 {
		return Target{}, fmt.Errorf("%w: %s: negative base size", ErrBadTarget, newPath)
	}
	bh := sha256.New()
	if n, err := io.Copy(bh, ctxReader{ctx, io.NewSectionReader(base, 0, baseSize)}); err != nil {
		return Target{}, fmt.Errorf("repository: read base image: %w", err)
	} else if n != baseSize {
		return Target{}, fmt.Errorf("%w: %s: base image has %d bytes, not %d", ErrBadTarget, newPath, n, baseSize)
	}
	baseSum := hex.EncodeToString(bh.Sum(nil))
	if baseSum == want.SHA256 {
		return Target{}, fmt.Errorf("%w: %s: the base image is the new image itself", ErrBadTarget, newPath)
	}
	dr := newDigestReader(ctx, newImage)
	dr.size = want.Length
	var patch bytes.Buffer
	var opts delta.DiffOptions
	// The C encoder, when installed, makes smaller patches (2% on a Go
	// executable; see examples/deltabench).
	if zc, err := delta.ZstdCommand(19); err == nil {
		opts.Compress = zc
	}
	if err := delta.Diff(base, baseSize, dr, &patch, opts); err != nil {
		if ctx.Err() != nil {
			return Target{}, ctx.Err()
		}
		return Target{}, fmt.Errorf("repository: patch to %s: %w", newPath, err)
	}
	got := dr.digest()
	if err := checkImage(newPath, got, want); err != nil {
		return Target{}, err
	}
	pc := verify.Custom{
		Component: c.Component, Version: c.Version, Hardware: c.Hardware,
		Kind: verify.KindPatch, Of: newPath, Base: baseSum, Format: delta.PatchFormat,
		Uncompressed: &got,
	}
	return r.AddTarget(ctx, PatchPath(newPath, baseSum), &patch, pc, AddOptions{})
}

// PruneChunks deletes the files of the chunk store that no chunk index
// names, and the packs (PackPaths) of chunk indexes no longer listed, and returns them relative to the repository directory. An index
// counts when it is a target of the working targets metadata or of any
// targets metadata still in metadata/: run Prune first, which deletes the
// expired ones (Prune itself leaves the store alone, since no target names
// its files). A chunk index whose file is missing or unreadable stops
// PruneChunks before it deletes anything. Like Prune, it holds the
// repository lock and refuses with ErrConflict when another process
// published since the Repo was opened.
func (r *Repo) PruneChunks(ctx context.Context) ([]string, error) {
	unlock, err := lockDir(r.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := r.checkUnchanged(); err != nil {
		return nil, err
	}
	refs, err := r.chunkRefs()
	if err != nil {
		return nil, err
	}
	if err := r.keepIndexedChunks(ctx, refs); err != nil {
		return nil, err
	}
	removed, err := r.removeUnreferencedChunks(ctx, refs)
	sort.Strings(removed)
	if err != nil {
		return removed, fmt.Errorf("repository: prune chunks: %w", err)
	}
	return removed, nil
}

// chunkStoreRefs is what the targets metadata still references in the
// chunk store.
type chunkStoreRefs struct {
	indexes map[string]verify.Custom // chunk index target file -> custom
	// Target files that happen to live under chunks/ are not chunks.
	files   map[string]bool
	liveIdx map[string]bool // sha256 of live indexes, naming their packs
	keep    map[string]bool // chunk paths named by a live index
}

// add records the target files and chunk indexes of ts.
func (c *chunkStoreRefs) add(ts map[string]*metadata.TargetFiles) {
	for p, tf := range ts {
		c.files[targetOf(p, tf).File] = true
		if tf.Custom == nil {
			continue
		}
		cu, err := verify.ParseCustom(*tf.Custom)
		if err != nil || cu.Kind != verify.KindChunkIndex {
			continue
		}
		c.indexes[targetOf(p, tf).File] = cu
		c.liveIdx[hex.EncodeToString(tf.Hashes["sha256"])] = true
	}
}

// unused reports whether the chunk store file rel (relative to the store)
// is a chunk or pack nothing references.
func (c *chunkStoreRefs) unused(rel string) bool {
	if c.files[ChunkStoreDir+"/"+rel] {
		return false
	}
	if sum, ok := packOf(rel); ok {
		return !c.liveIdx[sum]
	}
	return !c.keep[rel] && isChunkPath(rel)
}

// chunkRefs collects the targets of the working targets metadata and of
// every targets metadata file in metadata/.
func (r *Repo) chunkRefs() (*chunkStoreRefs, error) {
	refs := &chunkStoreRefs{
		indexes: map[string]verify.Custom{},
		files:   map[string]bool{},
		liveIdx: map[string]bool{},
		keep:    map[string]bool{},
	}
	refs.add(r.targets().Signed.Targets)
	entries, err := os.ReadDir(r.MetadataDir())
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), "."+RoleTargets+".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.MetadataDir(), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("repository: %w", err)
		}
		m, err := parse(RoleTargets, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		refs.add(m.(*metadata.Metadata[metadata.TargetsType]).Signed.Targets)
	}
	return refs, nil
}

// keepIndexedChunks reads every referenced chunk index and marks its
// chunks to keep.
func (r *Repo) keepIndexedChunks(ctx context.Context, refs *chunkStoreRefs) error {
	for file, c := range refs.indexes {
		if err := ctx.Err(); err != nil {
			return err
		}
		ix, err := r.readIndex(file, c)
		if err != nil {
			return fmt.Errorf("repository: prune chunks: index %s: %w", file, err)
		}
		for _, ch := range ix.Chunks() {
			refs.keep[ix.ChunkPath(ch)] = true
		}
	}
	return nil
}

// removeUnreferencedChunks walks the chunk store and deletes the files
// refs does not reference, returning them relative to the repository
// directory, unsorted.
func (r *Repo) removeUnreferencedChunks(ctx context.Context, refs *chunkStoreRefs) ([]string, error) {
	store := filepath.Join(r.TargetsDir(), ChunkStoreDir)
	var removed []string
	err := filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == store {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil // a WriteChunkStore in progress
		}
		rel, err := filepath.Rel(store, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !refs.unused(rel) {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		removed = append(removed, path.Join(TargetsPath, ChunkStoreDir, rel))
		return nil
	})
	return removed, err
}

// packOf returns the index digest naming rel, relative to the chunk
// store, when rel is a pack or pack table (PackPaths).
func packOf(rel string) (string, bool) {
	name, ok := strings.CutPrefix(rel, PackDir+"/")
	if !ok {
		return "", false
	}
	sum, ok := strings.CutSuffix(name, ".pack")
	if !ok {
		sum, ok = strings.CutSuffix(name, ".tab")
	}
	if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 64 || strings.ToLower(sum) != sum {
		return "", false
	}
	return sum, true
}

// isChunkPath reports whether rel, relative to the chunk store, names a
// chunk as delta.Index.ChunkPath does: "<hh>/<hex hash>.zst". Other files
// are left alone.
func isChunkPath(rel string) bool {
	dir, name, ok := strings.Cut(rel, "/")
	h, zst := strings.CutSuffix(name, ".zst")
	if !ok || !zst || len(h) < 32 || !strings.HasPrefix(h, dir) || len(dir) != 2 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// readIndex reads and parses the chunk index in target file file.
func (r *Repo) readIndex(file string, c verify.Custom) (*delta.Index, error) {
	f, err := os.Open(filepath.Join(r.TargetsDir(), filepath.FromSlash(file)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var src io.Reader = f
	if c.Compression == verify.CompressionZstd {
		d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		src = d
	}
	// Far above any valid index (MaxChunks entries of at most 40 bytes).
	b, err := io.ReadAll(io.LimitReader(src, 64*delta.MaxChunks))
	if err != nil {
		return nil, err
	}
	return delta.ParseIndex(b)
}
