package updater

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/tuftest"
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
			packPath := "/targets/" + ChunkStoreDir + "/" + PackDir + "/" + sha(b)
			if tt.publish {
				var pack bytes.Buffer
				tab, _, err := delta.WritePack(&pack, ix, bytes.NewReader(next))
				if err != nil {
					t.Fatal(err)
				}
				pb := pack.Bytes()
				if tt.corrupt {
					for i := range tab.Len() {
						off, n := tab.Span(i)
						pb[off+n/2] ^= 0x5a
					}
				}
				tb, _ := tab.MarshalBinary()
				repo.SetFile(packPath+".pack", pb)
				repo.SetFile(packPath+".tab", tb)
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
