package updater

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
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

func publishIndex(t *testing.T, repo *tuftest.Repo, of string, img []byte, version string) {
	t.Helper()
	ix, err := delta.BuildIndex(bytes.NewReader(img), delta.IndexOptions{Chunking: delta.ChunkCDC}) // survives the insertion
	if err != nil {
		t.Fatal(err)
	}
	b, err := ix.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := custom(version)
	c.Kind, c.Of, c.Format = verify.KindChunkIndex, of, delta.IndexFormat
	repo.AddTarget(of+".idx", b, c)
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
				repo.Wrap(func(h http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						r.Header.Del("Range")
						h.ServeHTTP(w, r)
					})
				})
			}
			var method string
			d.cfg = nil
			d.start()
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			method = d.u.st.component("rootfs").Pending.Method
			if method != tt.wantMethod {
				t.Errorf("method = %s, want %s", method, tt.wantMethod)
			}
			if !bytes.Equal(d.a.Bytes()[:len(next)], next) {
				t.Fatal("slot a does not hold the new image")
			}
			if got := served.Load(); got > tt.maxFull {
				t.Errorf("full image bytes sent = %d, want at most %d", got, tt.maxFull)
			}
			t.Logf("%s: %d bytes of the %d-byte image fetched", method, served.Load(), len(next))
			if err := d.reboot(); err != nil {
				t.Fatalf("confirm: %v", err)
			}
			if got := d.installed(); got != "1.2.0" {
				t.Errorf("installed %q, want 1.2.0", got)
			}
		})
	}
}

// TestAdaptiveCompressedUsesChunkStore: a compressed full image cannot serve
// byte ranges; the chunks come from the chunk store beside the targets.
func TestAdaptiveCompressedUsesChunkStore(t *testing.T) {
	base := image("1.1.0", 1<<20)
	next := edit(base)
	repo, d, _ := deltaDevice(t, base)
	repo.AddCompressedTarget("rootfs/1.2.0.img.zst", next, custom("1.2.0"), 256<<10)
	ix, err := delta.BuildIndex(bytes.NewReader(next), delta.IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ix.MarshalBinary()
	c := custom("1.2.0")
	c.Kind, c.Of, c.Format = verify.KindChunkIndex, "rootfs/1.2.0.img.zst", delta.IndexFormat
	repo.AddTarget("rootfs/1.2.0.img.zst.idx", b, c)
	store := t.TempDir()
	if _, err := delta.WriteChunkStore(store, ix, bytes.NewReader(next)); err != nil {
		t.Fatal(err)
	}
	var chunks int
	filepath.Walk(store, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			data, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(store, p)
			repo.SetFile("/targets/"+ChunkStoreDir+"/"+filepath.ToSlash(rel), data)
			chunks++
		}
		return nil
	})
	repo.Publish()
	var storeReqs atomic.Int64
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/"+ChunkStoreDir+"/") {
				storeReqs.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got := d.u.st.component("rootfs").Pending.Method; got != methodAdaptive {
		t.Errorf("method %s, want adaptive", got)
	}
	if n := storeReqs.Load(); n == 0 || n >= int64(chunks) {
		t.Errorf("chunk store requests = %d of %d chunks: want some, not all", n, chunks)
	}
	if !bytes.Equal(d.a.Bytes()[:len(next)], next) {
		t.Fatal("slot a does not hold the new image")
	}
}

// TestAdaptiveResume: a write failure in the middle of an adaptive delta
// (a crash, a full disk) resumes in the same method from the checkpoint.
func TestAdaptiveResume(t *testing.T) {
	old := checkpointEvery
	checkpointEvery = 128 << 10
	t.Cleanup(func() { checkpointEvery = old })
	base := image("1.1.0", 1<<20)
	next := edit(base)
	repo, d, _ := deltaDevice(t, base)
	repo.AddTarget("rootfs/1.2.0.img", next, custom("1.2.0"))
	publishIndex(t, repo, "rootfs/1.2.0.img", next, "1.2.0")
	repo.Publish()
	d.a.FailWritesAfterBytes(600 << 10)
	if err := d.update(); err == nil {
		t.Fatal("update with a failing slot succeeded")
	}
	pd := d.u.st.component("rootfs").Pending
	if pd == nil {
		t.Fatal("no pending install after the failure")
	}
	d.a.FailWritesAfterBytes(-1)
	d.start()
	pd = d.u.st.component("rootfs").Pending
	if pd.Method != methodAdaptive || pd.Offset == 0 {
		t.Fatalf("pending after the failure: method %s offset %d, want adaptive with a checkpoint", pd.Method, pd.Offset)
	}
	resumedAt := pd.Offset
	if err := d.update(); err != nil {
		t.Fatalf("resumed update: %v", err)
	}
	if got := d.u.st.component("rootfs").Pending.Method; got != methodAdaptive {
		t.Errorf("finished with method %s, want adaptive", got)
	}
	if !bytes.Equal(d.a.Bytes()[:len(next)], next) {
		t.Fatal("slot a does not hold the new image")
	}
	t.Logf("resumed at %d of %d bytes", resumedAt, len(next))
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
			old := checkpointEvery
			checkpointEvery = 128 << 10
			t.Cleanup(func() { checkpointEvery = old })
			base := image("1.1.0", 1<<20)
			next := edit(base)
			repo, d, _ := deltaDevice(t, base)
			repo.AddCompressedTarget("rootfs/1.2.0.img.zst", next, custom("1.2.0"), 256<<10)
			ix, err := delta.BuildIndex(bytes.NewReader(next), delta.IndexOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := ix.MarshalBinary()
			c := custom("1.2.0")
			c.Kind, c.Of, c.Format = verify.KindChunkIndex, "rootfs/1.2.0.img.zst", delta.IndexFormat
			repo.AddTarget("rootfs/1.2.0.img.zst.idx", b, c)
			store := t.TempDir()
			if _, err := delta.WriteChunkStore(store, ix, bytes.NewReader(next)); err != nil {
				t.Fatal(err)
			}
			filepath.Walk(store, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					data, _ := os.ReadFile(p)
					rel, _ := filepath.Rel(store, p)
					repo.SetFile("/targets/"+ChunkStoreDir+"/"+filepath.ToSlash(rel), data)
				}
				return nil
			})
			if tt.publish {
				publishPack(t, repo, b, ix, next, tt.corrupt)
			}
			repo.Publish()
			var packReqs, storeReqs atomic.Int64
			repo.Wrap(func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					switch {
					case strings.HasSuffix(r.URL.Path, ".pack"):
						packReqs.Add(1)
						if tt.noRange {
							r.Header.Del("Range")
						}
					case strings.Contains(r.URL.Path, "/"+ChunkStoreDir+"/") && !strings.HasSuffix(r.URL.Path, ".tab"):
						storeReqs.Add(1)
					}
					h.ServeHTTP(w, r)
				})
			})
			if tt.failWrites {
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
			}
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			if got := d.u.st.component("rootfs").Pending.Method; got != methodAdaptive {
				t.Errorf("method %s, want adaptive", got)
			}
			if !bytes.Equal(d.a.Bytes()[:len(next)], next) {
				t.Fatal("slot a does not hold the new image")
			}
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
	full := repo.AddCompressedTarget("rootfs/1.2.0.img.zst", next, custom("1.2.0"), len(next))
	ix, err := delta.BuildIndex(bytes.NewReader(next), delta.IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ix.MarshalBinary()
	c := custom("1.2.0")
	c.Kind, c.Of, c.Format = verify.KindChunkIndex, "rootfs/1.2.0.img.zst", delta.IndexFormat
	repo.AddTarget("rootfs/1.2.0.img.zst.idx", b, c)
	publishPack(t, repo, b, ix, next, false)
	repo.Publish()
	var packReqs atomic.Int64
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".pack") {
				packReqs.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	served.Store(0)
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got := d.u.st.component("rootfs").Pending.Method; got != methodFull {
		t.Errorf("method %s, want %s", got, methodFull)
	}
	if packReqs.Load() != 0 || served.Load() != full.Length {
		t.Errorf("pack requests %d, image bytes %d; want none and the compressed image once (%d)", packReqs.Load(), served.Load(), full.Length)
	}
	if !bytes.Equal(d.a.Bytes()[:len(next)], next) {
		t.Fatal("slot a does not hold the new image")
	}
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
			var patchReqs, indexReqs atomic.Int64
			repo.Wrap(func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					switch {
					case strings.HasSuffix(r.URL.Path, ".patch"):
						patchReqs.Add(1)
					case strings.HasSuffix(r.URL.Path, ".idx"):
						indexReqs.Add(1)
					}
					h.ServeHTTP(w, r)
				})
			})
			served.Store(0)
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			if got := d.u.st.component("rootfs").Pending.Method; got != tt.wantMethod {
				t.Errorf("method %s, want %s", got, tt.wantMethod)
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
			if !bytes.Equal(d.a.Bytes()[:len(tt.next)], tt.next) {
				t.Fatal("slot a does not hold the new image")
			}
		})
	}
}

// publishIndexZstd publishes the chunk index of img zstd-compressed, as
// the repository tool does.
func publishIndexZstd(t *testing.T, repo *tuftest.Repo, of string, img []byte, version string) {
	t.Helper()
	ix, err := delta.BuildIndex(bytes.NewReader(img), delta.IndexOptions{Chunking: delta.ChunkCDC})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ix.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := custom(version)
	c.Kind, c.Of, c.Format = verify.KindChunkIndex, of, delta.IndexFormat
	repo.AddCompressedTarget(of+".idx", b, c, len(b))
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
	ix, err := delta.BuildIndex(bytes.NewReader(image("x", 64<<10)), delta.IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ix.MarshalBinary()
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
