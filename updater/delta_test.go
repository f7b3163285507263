package updater

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// edit returns a release of img: a few changed blocks and an insertion.
func edit(img []byte) []byte {
	out := bytes.Clone(img)
	for _, off := range []int{4096, 300_000, 700_000} {
		copy(out[off:], []byte("a small change in this release"))
	}
	return append(out[:500_000], append([]byte(strings.Repeat("inserted ", 100)), out[500_000:]...)...)
}

// deltaDevice is a device that has installed and committed base (1.1.0)
// in full, with a byte counter on the image files the server sends.
func deltaDevice(t *testing.T, base []byte) (*tuftest.Repo, *device, *atomic.Int64) {
	t.Helper()
	repo := tuftest.New(t)
	repo.AddTarget("rootfs/1.1.0.img", base, custom("1.1.0"))
	publishIndex(t, repo, "rootfs/1.1.0.img", base, "1.1.0")
	repo.Publish()
	d := newDevice(t, repo)
	if err := d.update(); err != nil {
		t.Fatal(err)
	}
	if err := d.reboot(); err != nil {
		t.Fatal(err)
	}
	var served atomic.Int64
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, ".img") && !strings.Contains(r.URL.Path, ".idx") && !strings.Contains(r.URL.Path, ".patch") {
				h.ServeHTTP(countingWriter{w, &served}, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	return repo, d, &served
}

// chunkIndex is the chunk index of img and its encoding.
func chunkIndex(t *testing.T, img []byte, opts delta.IndexOptions) (*delta.Index, []byte) {
	t.Helper()
	ix, err := delta.BuildIndex(bytes.NewReader(img), opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ix.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return ix, b
}

// indexCustom is the custom metadata of the chunk index of the target of.
func indexCustom(of, version string) verify.Custom {
	c := custom(version)
	c.Kind, c.Of, c.Format = verify.KindChunkIndex, of, delta.IndexFormat
	return c
}

// cdcIndex is the content-defined chunk index of img, which survives
// the insertion edit makes.
var cdcIndex = delta.IndexOptions{Chunking: delta.ChunkCDC}

// publishIndex publishes the chunk index of img as the index of of.
func publishIndex(t *testing.T, repo *tuftest.Repo, of string, img []byte, version string) {
	t.Helper()
	_, b := chunkIndex(t, img, cdcIndex)
	repo.AddTarget(of+".idx", b, indexCustom(of, version))
}

// publishIndexZstd publishes the chunk index of img zstd-compressed, as
// the repository tool does.
func publishIndexZstd(t *testing.T, repo *tuftest.Repo, of string, img []byte, version string) {
	t.Helper()
	_, b := chunkIndex(t, img, cdcIndex)
	repo.AddCompressedTarget(of+".idx", b, indexCustom(of, version), len(b))
}

// publishCompressedWithIndex publishes img as the compressed target
// rootfs/1.2.0.img.zst in frames of frameSize bytes, and its chunk index;
// it returns the target, the index and the index's encoding.
func publishCompressedWithIndex(t *testing.T, repo *tuftest.Repo, img []byte, frameSize int) (repository.Target, *delta.Index, []byte) {
	t.Helper()
	const of = "rootfs/1.2.0.img.zst"
	full := repo.AddCompressedTarget(of, img, custom("1.2.0"), frameSize)
	ix, b := chunkIndex(t, img, delta.IndexOptions{})
	repo.AddTarget(of+".idx", b, indexCustom(of, "1.2.0"))
	return full, ix, b
}

// publishChunkStore serves the chunk store of img, whose index is ix,
// beside repo's targets; it returns the number of chunk files.
func publishChunkStore(t *testing.T, repo *tuftest.Repo, ix *delta.Index, img []byte) int {
	t.Helper()
	store := t.TempDir()
	if _, err := delta.WriteChunkStore(store, ix, bytes.NewReader(img)); err != nil {
		t.Fatal(err)
	}
	chunks := 0
	err := filepath.WalkDir(store, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(store, p)
		if err != nil {
			return err
		}
		repo.SetFile("/targets/"+ChunkStoreDir+"/"+filepath.ToSlash(rel), data)
		chunks++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return chunks
}

// inChunkStore reports whether a URL path is of a chunk in the chunk
// store (not of a pack or its table).
func inChunkStore(path string) bool {
	return strings.Contains(path, "/"+ChunkStoreDir+"/") && !strings.HasSuffix(path, ".pack") && !strings.HasSuffix(path, ".tab")
}

// hasSuffix is a request matcher for URL paths ending in suffix.
func hasSuffix(suffix string) func(string) bool {
	return func(path string) bool { return strings.HasSuffix(path, suffix) }
}

func publishPatch(t *testing.T, repo *tuftest.Repo, of string, base, img []byte, version string, opts delta.DiffOptions) []byte {
	t.Helper()
	var patch bytes.Buffer
	if err := delta.Diff(bytes.NewReader(base), int64(len(base)), bytes.NewReader(img), &patch, opts); err != nil {
		t.Fatal(err)
	}
	c := custom(version)
	c.Kind, c.Of, c.Base, c.Format = verify.KindPatch, of, sha(base), delta.PatchFormat
	if opts.Format != "" {
		c.Format = opts.Format
	}
	c.Uncompressed = &verify.Digest{Length: int64(len(img)), SHA256: sha(img)}
	repo.AddTarget(of+".patch", patch.Bytes(), c)
	return patch.Bytes()
}

func TestDeltaPaths(t *testing.T) {
	base := image("1.1.0", 1<<20)
	next := edit(base)
	tests := []struct {
		name       string
		patch      bool
		index      bool
		corrupt    string // a target whose served bytes are damaged
		noRange    bool
		wantMethod string
		maxFull    int64 // most bytes of the full image the server may send
	}{
		{name: "static patch", patch: true, index: true, wantMethod: methodPatch, maxFull: 0},
		{name: "adaptive", index: true, wantMethod: methodAdaptive, maxFull: 200 << 10},
		{name: "corrupt patch falls back to adaptive", patch: true, index: true, corrupt: ".patch", wantMethod: methodAdaptive, maxFull: 200 << 10},
		{name: "server without ranges falls back to full", index: true, noRange: true, wantMethod: methodFull, maxFull: 1 << 30},
		{name: "no delta published", wantMethod: methodFull, maxFull: 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, d, served := deltaDevice(t, base)
			repo.AddTarget("rootfs/1.2.0.img", next, custom("1.2.0"))
			var patch []byte
			if tt.patch {
				patch = publishPatch(t, repo, "rootfs/1.2.0.img", base, next, "1.2.0", delta.DiffOptions{})
			}
			if tt.index {
				publishIndex(t, repo, "rootfs/1.2.0.img", next, "1.2.0")
			}
			repo.Publish()
			if tt.corrupt == ".patch" {
				bad := bytes.Clone(patch)
				bad[len(bad)/2] ^= 0x55
				repo.SetTargetBytes("rootfs/1.2.0.img.patch", bad)
			}
			if tt.noRange {
				ignoreRange(repo, func(string) bool { return true })
			}
			d.cfg = nil
			d.start()
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			d.wantPending(tt.wantMethod, next)
			if got := served.Load(); got > tt.maxFull {
				t.Errorf("full image bytes sent = %d, want at most %d", got, tt.maxFull)
			}
			t.Logf("%s: %d bytes of the %d-byte image fetched", tt.wantMethod, served.Load(), len(next))
			d.confirmed("1.2.0")
		})
	}
}

// TestAdaptiveCompressedUsesChunkStore: a compressed full image cannot serve
// byte ranges; the chunks come from the chunk store beside the targets.
func TestAdaptiveCompressedUsesChunkStore(t *testing.T) {
	base := image("1.1.0", 1<<20)
	next := edit(base)
	repo, d, _ := deltaDevice(t, base)
	_, ix, _ := publishCompressedWithIndex(t, repo, next, 256<<10)
	chunks := publishChunkStore(t, repo, ix, next)
	repo.Publish()
	storeReqs := countRequests(repo, inChunkStore)
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if n := storeReqs.Load(); n == 0 || n >= int64(chunks) {
		t.Errorf("chunk store requests = %d of %d chunks: want some, not all", n, chunks)
	}
	d.wantPending(methodAdaptive, next)
}

// TestAdaptiveResume: a write failure in the middle of an adaptive delta
// (a crash, a full disk) resumes in the same method from the checkpoint.
func TestAdaptiveResume(t *testing.T) {
	setCheckpointEvery(t, 128<<10)
	base := image("1.1.0", 1<<20)
	next := edit(base)
	repo, d, _ := deltaDevice(t, base)
	repo.AddTarget("rootfs/1.2.0.img", next, custom("1.2.0"))
	publishIndex(t, repo, "rootfs/1.2.0.img", next, "1.2.0")
	repo.Publish()
	resumedAt := failAdaptiveMidway(t, d)
	if err := d.update(); err != nil {
		t.Fatalf("resumed update: %v", err)
	}
	d.wantPending(methodAdaptive, next)
	t.Logf("resumed at %d of %d bytes", resumedAt, len(next))
}

// failAdaptiveMidway makes d's adaptive install fail part-way at a slot
// write and starts a new process; it returns the checkpointed offset the
// install resumes from.
func failAdaptiveMidway(t *testing.T, d *device) int64 {
	t.Helper()
	d.a.FailWritesAfterBytes(600 << 10)
	if err := d.update(); err == nil {
		t.Fatal("update with a failing slot succeeded")
	}
	d.a.FailWritesAfterBytes(-1)
	d.start()
	pd := d.u.st.component("rootfs").Pending
	if pd == nil || pd.Method != methodAdaptive || pd.Offset == 0 {
		t.Fatalf("pending after the failure: %+v, want adaptive with a checkpoint", pd)
	}
	return pd.Offset
}

// TestAdaptivePack: with a chunk pack published, the missing chunks come
// as byte ranges of it; a missing, corrupt or range-less pack falls back
// to the chunk store within the adaptive method, from the last verified
// byte; an interrupted install resumes from its checkpoint.
func TestAdaptivePack(t *testing.T) {
	tests := []struct {
		name       string
		publish    bool // the pack and its table
		corrupt    bool // damage every frame of the pack
		noRange    bool // the server ignores Range on the pack
		failWrites bool // the slot fails once mid-way, then the install resumes
		wantPack   bool // pack requests made
		wantStore  bool // chunk store requests made
	}{
		{name: "pack", publish: true, wantPack: true},
		{name: "no pack published", wantStore: true},
		{name: "corrupt pack falls back to the store", publish: true, corrupt: true, wantPack: true, wantStore: true},
		{name: "pack without ranges falls back to the store", publish: true, noRange: true, wantPack: true, wantStore: true},
		{name: "resume mid-install", publish: true, failWrites: true, wantPack: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setCheckpointEvery(t, 128<<10)
			base := image("1.1.0", 1<<20)
			next := edit(base)
			repo, d, _ := deltaDevice(t, base)
			_, ix, b := publishCompressedWithIndex(t, repo, next, 256<<10)
			publishChunkStore(t, repo, ix, next)
			if tt.publish {
				publishPack(t, repo, b, ix, next, tt.corrupt)
			}
			repo.Publish()
			packReqs := countRequests(repo, hasSuffix(".pack"))
			storeReqs := countRequests(repo, inChunkStore)
			if tt.noRange {
				ignoreRange(repo, hasSuffix(".pack"))
			}
			if tt.failWrites {
				failAdaptiveMidway(t, d)
			}
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			d.wantPending(methodAdaptive, next)
			if got := packReqs.Load() > 0; got != tt.wantPack {
				t.Errorf("pack requests %d, want some: %v", packReqs.Load(), tt.wantPack)
			}
			if got := storeReqs.Load() > 0; got != tt.wantStore {
				t.Errorf("store requests %d, want some: %v", storeReqs.Load(), tt.wantStore)
			}
			t.Logf("%d pack requests, %d store requests", packReqs.Load(), storeReqs.Load())
		})
	}
}

// publishPack publishes the chunk pack and table of img, whose index ix
// is published as indexTarget (the target's bytes), with every frame
// damaged when corrupt.
func publishPack(t *testing.T, repo *tuftest.Repo, indexTarget []byte, ix *delta.Index, img []byte, corrupt bool) {
	t.Helper()
	var pack bytes.Buffer
	tab, _, err := delta.WritePack(&pack, ix, bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	pb := pack.Bytes()
	if corrupt {
		for i := range tab.Len() {
			off, n := tab.Span(i)
			pb[off+n/2] ^= 0x5a
		}
	}
	tb, _ := tab.MarshalBinary()
	packPath := "/targets/" + ChunkStoreDir + "/" + PackDir + "/" + sha(indexTarget)
	repo.SetFile(packPath+".pack", pb)
	repo.SetFile(packPath+".tab", tb)
}

// TestAdaptivePricedByPackTable: an image that compresses far better
// whole than chunk by chunk (a random block repeated, every 4 KiB block
// made distinct). Half of it is in the running slot, so the missing
// chunks at the full image's compression ratio look like half of it; the
// pack table says their frames cost about 20 times the full image, and
// the updater installs the full image instead. Before the table was
// read, the adaptive delta fetched them.
func TestAdaptivePricedByPackTable(t *testing.T) {
	unit := image("unit", 16<<10)
	next := bytes.Repeat(unit, 64)
	for off := 0; off < len(next); off += 4096 {
		binary.BigEndian.PutUint32(next[off:], uint32(off))
	}
	base := append(bytes.Clone(next[:len(next)/2]), image("other half", len(next)/2)...)
	repo, d, served := deltaDevice(t, base)
	full, ix, b := publishCompressedWithIndex(t, repo, next, len(next))
	publishPack(t, repo, b, ix, next, false)
	repo.Publish()
	packReqs := countRequests(repo, hasSuffix(".pack"))
	served.Store(0)
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if packReqs.Load() != 0 || served.Load() != full.Length {
		t.Errorf("pack requests %d, image bytes %d; want none and the compressed image once (%d)", packReqs.Load(), served.Load(), full.Length)
	}
	d.wantPending(methodFull, next)
}

// TestChooseByExpectedBytes: the updater tries delta methods by the bytes
// they are expected to fetch, from signed sizes, and never one expected
// to cost the full image's bytes or more. Every case ends with the new
// image in the slot; the requests show what was fetched.
func TestChooseByExpectedBytes(t *testing.T) {
	base := image("1.1.0", 1<<20)
	tests := []struct {
		name        string
		next        []byte
		patch       bool
		patchFormat string // of Diff; "" for delta.PatchFormat
		index       string // "", "raw" or "zstd"
		wantMethod  string
		wantPatch   bool  // patch bytes fetched
		wantIndex   int64 // index requests (a full install keeps the index: 1)
	}{
		{name: "patch cheaper than adaptive", next: edit(base), patch: true, index: "zstd", wantMethod: methodPatch, wantPatch: true},
		{name: "version 2 patch", next: edit(base), patch: true, patchFormat: delta.PatchFormatV2, wantMethod: methodPatch, wantPatch: true},
		{name: "compressed index", next: edit(base), index: "zstd", wantMethod: methodAdaptive, wantIndex: 1},
		{name: "uncompressed index still read", next: edit(base), index: "raw", wantMethod: methodAdaptive, wantIndex: 1},
		// All new (random) bytes: the patch is larger than the image, and
		// so is index + patch; neither is fetched (the index only once the
		// image is installed, for the next update).
		{name: "patch above the full image", next: image("new 1.2.0", 1<<20), patch: true, index: "zstd", wantMethod: methodFull, wantIndex: 1},
		// No patch: the index is fetched, the plan finds nothing to copy.
		{name: "adaptive above the full image", next: image("new 1.2.0", 1<<20), index: "zstd", wantMethod: methodFull, wantIndex: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, d, served := deltaDevice(t, base)
			repo.AddTarget("rootfs/1.2.0.img", tt.next, custom("1.2.0"))
			if tt.patch {
				p := publishPatch(t, repo, "rootfs/1.2.0.img", base, tt.next, "1.2.0", delta.DiffOptions{Format: tt.patchFormat})
				t.Logf("patch %d bytes, image %d", len(p), len(tt.next))
			}
			switch tt.index {
			case "raw":
				publishIndex(t, repo, "rootfs/1.2.0.img", tt.next, "1.2.0")
			case "zstd":
				publishIndexZstd(t, repo, "rootfs/1.2.0.img", tt.next, "1.2.0")
			}
			repo.Publish()
			patchReqs := countRequests(repo, hasSuffix(".patch"))
			indexReqs := countRequests(repo, hasSuffix(".idx"))
			served.Store(0)
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			if got := patchReqs.Load() > 0; got != tt.wantPatch {
				t.Errorf("patch requests %d, want some: %v", patchReqs.Load(), tt.wantPatch)
			}
			if got := indexReqs.Load(); got != tt.wantIndex {
				t.Errorf("index requests %d, want %d", got, tt.wantIndex)
			}
			if tt.wantMethod == methodFull && served.Load() != int64(len(tt.next)) {
				t.Errorf("image bytes sent %d, want the image once (%d)", served.Load(), len(tt.next))
			}
			d.wantPending(tt.wantMethod, tt.next)
		})
	}
}

func TestAdaptiveEstimate(t *testing.T) {
	st := delta.PlanStats{FetchBytes: 1000, RangeBytes: 1200}
	tests := []struct {
		name string
		t    verify.Target
		img  int64
		want int64
	}{
		{"uncompressed: the ranges", verify.Target{Length: 10000}, 10000, 1200},
		{"compressed to a quarter", verify.Target{Length: 2500, Custom: verify.Custom{Compression: verify.CompressionZstd}}, 10000, 250},
		{"compressed larger than the image", verify.Target{Length: 12000, Custom: verify.Custom{Compression: verify.CompressionZstd}}, 10000, 1200},
		{"empty image", verify.Target{Length: 10, Custom: verify.Custom{Compression: verify.CompressionZstd}}, 0, 1200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := adaptiveEstimate(st, tt.t, tt.img); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDecompressIndex(t *testing.T) {
	_, b := chunkIndex(t, image("x", 64<<10), delta.IndexOptions{})
	enc, _ := zstd.NewWriter(nil)
	z := enc.EncodeAll(b, nil)
	enc.Close()
	good := verify.Digest{Length: int64(len(b)), SHA256: sha(b)}
	tests := []struct {
		name string
		z    []byte
		want verify.Digest
		ok   bool
	}{
		{"good", z, good, true},
		{"wrong digest", z, verify.Digest{Length: good.Length, SHA256: sha(nil)}, false},
		{"longer than signed", z, verify.Digest{Length: good.Length - 1, SHA256: good.SHA256}, false},
		{"beyond the limit", z, verify.Digest{Length: maxIndexLength + 1, SHA256: good.SHA256}, false},
		{"not zstd", b, good, false},
		{"truncated", z[:len(z)/2], good, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decompressIndex(tt.z, tt.want)
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok %v", err, tt.ok)
			}
			if tt.ok && !bytes.Equal(got, b) {
				t.Error("decompressed index differs")
			}
		})
	}
}
