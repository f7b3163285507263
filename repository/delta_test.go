package repository

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/verify"
)

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// release returns a pseudo-random image of n bytes.
func release(seed uint64, n int) []byte {
	b := make([]byte, n)
	rnd := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// changed returns img with a few changed blocks and an insertion.
func changed(img []byte) []byte {
	out := bytes.Clone(img)
	for _, off := range []int{4096, 50_000, 150_000} {
		copy(out[off:], "a small change in this release")
	}
	return append(out[:100_000:100_000], append(bytes.Repeat([]byte("inserted "), 50), out[100_000:]...)...)
}

func customOf(t *testing.T, tg Target) verify.Custom {
	t.Helper()
	c, err := verify.ParseCustom(tg.Custom)
	if err != nil {
		t.Fatalf("custom of %s: %v", tg.Path, err)
	}
	return c
}

func targetBytes(t *testing.T, r *Repo, tg Target) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.TargetsDir(), filepath.FromSlash(tg.File)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// indexOf returns the chunk index published as tg, after checking that it
// is zstd-compressed with a matching signed uncompressed digest.
func indexOf(t *testing.T, r *Repo, tg Target) *delta.Index {
	t.Helper()
	c := customOf(t, tg)
	if c.Compression != verify.CompressionZstd || c.Uncompressed == nil {
		t.Fatalf("index %s: compression %q, uncompressed %v; want zstd", tg.Path, c.Compression, c.Uncompressed)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	b, err := dec.DecodeAll(targetBytes(t, r, tg), nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := (verify.Digest{Length: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}); got != *c.Uncompressed {
		t.Fatalf("index %s: uncompressed %+v, signed %+v", tg.Path, got, *c.Uncompressed)
	}
	ix, err := delta.ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestAddChunkIndex(t *testing.T) {
	img := release(1, 200_000)
	tests := []struct {
		name      string
		zstd      bool
		store     bool
		opts      delta.IndexOptions
		wantStore bool
	}{
		{name: "ranges", wantStore: false},
		{name: "store", store: true, wantStore: true},
		{name: "cdc store", store: true, opts: delta.IndexOptions{Chunking: delta.ChunkCDC}, wantStore: true},
		{name: "zstd target always gets a store", zstd: true, wantStore: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := initRepo(t, InitOptions{})
			p := "rootfs/1.2.0/x.img"
			if _, err := r.AddTarget(ctx, p, bytes.NewReader(img), rootfs("1.2.0"), AddOptions{Zstd: tt.zstd, FrameSize: 64 << 10}); err != nil {
				t.Fatal(err)
			}
			tg, err := r.AddChunkIndex(ctx, p, bytes.NewReader(img), tt.opts, tt.store)
			if err != nil {
				t.Fatalf("AddChunkIndex: %v", err)
			}
			if got, want := tg.Path, p+".idx"; got != want {
				t.Errorf("path %q, want %q", got, want)
			}
			c := customOf(t, tg)
			if c.Kind != verify.KindChunkIndex || c.Of != p || c.Format != delta.IndexFormat ||
				c.Component != "rootfs" || c.Version != "1.2.0" || len(c.Hardware) != 1 || c.Hardware[0] != "board-a" {
				t.Errorf("custom = %+v", c)
			}
			ix := indexOf(t, r, tg)
			want, _ := delta.BuildIndex(bytes.NewReader(img), tt.opts)
			wb, _ := want.MarshalBinary()
			if gb, _ := ix.MarshalBinary(); !bytes.Equal(gb, wb) {
				t.Error("published index differs from the image's index")
			}
			storeDir := filepath.Join(r.TargetsDir(), ChunkStoreDir)
			_, err = os.Stat(storeDir)
			if got := err == nil; got != tt.wantStore {
				t.Fatalf("chunk store written = %v, want %v", got, tt.wantStore)
			}
			pack, tab := PackPaths(tg.SHA256)
			for _, f := range []string{pack, tab} {
				if _, err := os.Stat(filepath.Join(storeDir, filepath.FromSlash(f))); (err == nil) != tt.wantStore {
					t.Errorf("%s (named by the signed index digest): %v, want written %v", f, err, tt.wantStore)
				}
			}
			if tt.wantStore {
				dec, _ := zstd.NewReader(nil)
				defer dec.Close()
				for _, ch := range ix.Chunks() {
					z, err := os.ReadFile(filepath.Join(storeDir, filepath.FromSlash(ix.ChunkPath(ch))))
					if err != nil {
						t.Fatal(err)
					}
					b, err := dec.DecodeAll(z, nil)
					if err != nil || !bytes.Equal(b, img[ch.Offset:ch.Offset+int64(ch.Size)]) {
						t.Fatalf("chunk at %d: wrong content (%v)", ch.Offset, err)
					}
				}
			}
			if err := r.Publish(ctx); err != nil {
				t.Fatal(err)
			}
			// Prune keeps the store: no target names its files.
			if _, err := r.Prune(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(storeDir); (err == nil) != tt.wantStore {
				t.Errorf("chunk store after Prune: %v", err)
			}
		})
	}
}

func TestAddDeltaRefuses(t *testing.T) {
	img := release(2, 200_000)
	base := release(3, 50_000)
	r, _ := initRepo(t, InitOptions{})
	p := "rootfs/1.2.0/x.img"
	if _, err := r.AddTarget(ctx, p, bytes.NewReader(img), rootfs("1.2.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddTarget(ctx, "rootfs/1.3.0/z.img", bytes.NewReader(img), rootfs("1.3.0"), AddOptions{Zstd: true}); err != nil {
		t.Fatal(err)
	}
	other := changed(img)
	tests := []struct {
		name string
		add  func() error
		want error
	}{
		{"index of another image", func() error {
			_, err := r.AddChunkIndex(ctx, p, bytes.NewReader(other), delta.IndexOptions{}, true)
			return err
		}, ErrImageMismatch},
		{"index of a truncated image", func() error {
			_, err := r.AddChunkIndex(ctx, p, bytes.NewReader(img[:len(img)-1]), delta.IndexOptions{}, false)
			return err
		}, ErrImageMismatch},
		{"index of another image, zstd target", func() error {
			_, err := r.AddChunkIndex(ctx, "rootfs/1.3.0/z.img", bytes.NewReader(other), delta.IndexOptions{}, false)
			return err
		}, ErrImageMismatch},
		{"index of a missing target", func() error {
			_, err := r.AddChunkIndex(ctx, "rootfs/9.9.9/x.img", bytes.NewReader(img), delta.IndexOptions{}, false)
			return err
		}, ErrNotFound},
		{"bad chunking", func() error {
			_, err := r.AddChunkIndex(ctx, p, bytes.NewReader(img), delta.IndexOptions{Chunking: "rolling"}, false)
			return err
		}, nil},
		{"patch to another image", func() error {
			_, err := r.AddPatch(ctx, p, bytes.NewReader(base), int64(len(base)), bytes.NewReader(other))
			return err
		}, ErrImageMismatch},
		{"patch from itself", func() error {
			_, err := r.AddPatch(ctx, p, bytes.NewReader(img), int64(len(img)), bytes.NewReader(img))
			return err
		}, ErrBadTarget},
		{"patch to a missing target", func() error {
			_, err := r.AddPatch(ctx, "rootfs/9.9.9/x.img", bytes.NewReader(base), int64(len(base)), bytes.NewReader(img))
			return err
		}, ErrNotFound},
		{"patch base shorter than said", func() error {
			_, err := r.AddPatch(ctx, p, bytes.NewReader(base), int64(len(base))+1, bytes.NewReader(img))
			return err
		}, ErrBadTarget},
	}
	before := len(r.Targets())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.add()
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			t.Log(err)
			if got := len(r.Targets()); got != before {
				t.Errorf("%d targets after a refusal, want %d", got, before)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(r.TargetsDir(), ChunkStoreDir)); err == nil {
		t.Error("a refused index wrote a chunk store")
	}
	// A delta of a delta is refused: its of must be a full image.
	idx, err := r.AddChunkIndex(ctx, p, bytes.NewReader(img), delta.IndexOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddChunkIndex(ctx, idx.Path, bytes.NewReader(targetBytes(t, r, idx)), delta.IndexOptions{}, false); !errors.Is(err, ErrBadTarget) {
		t.Errorf("index of an index: %v, want ErrBadTarget", err)
	}
}

func TestAddPatch(t *testing.T) {
	base1 := release(4, 150_000)
	base2 := changed(base1)
	next := changed(base2)
	for _, zst := range []bool{false, true} {
		r, _ := initRepo(t, InitOptions{})
		p := "rootfs/1.2.0/x.img"
		img, err := r.AddTarget(ctx, p, bytes.NewReader(next), rootfs("1.2.0"), AddOptions{Zstd: zst})
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, base := range [][]byte{base1, base2} {
			tg, err := r.AddPatch(ctx, p, bytes.NewReader(base), int64(len(base)), bytes.NewReader(next))
			if err != nil {
				t.Fatalf("zstd %v: AddPatch: %v", zst, err)
			}
			paths = append(paths, tg.Path)
			if got, want := tg.Path, p+".from-"+hexSHA(base)[:12]+".patch"; got != want {
				t.Errorf("path %q, want %q", got, want)
			}
			c := customOf(t, tg)
			if c.Kind != verify.KindPatch || c.Of != p || c.Base != hexSHA(base) || c.Format != delta.PatchFormat ||
				c.Version != "1.2.0" || c.Component != "rootfs" {
				t.Errorf("custom = %+v", c)
			}
			wantU := verify.Digest{Length: int64(len(next)), SHA256: hexSHA(next)}
			if c.Uncompressed == nil || *c.Uncompressed != wantU {
				t.Errorf("uncompressed = %+v, want %+v", c.Uncompressed, wantU)
			}
			if !zst && wantU.SHA256 != img.SHA256 {
				t.Errorf("uncompressed sha256 %s is not the image target's %s", wantU.SHA256, img.SHA256)
			}
			var out bytes.Buffer
			if err := delta.Patch(bytes.NewReader(base), bytes.NewReader(targetBytes(t, r, tg)), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), next) {
				t.Error("patch does not produce the new image")
			}
			t.Logf("zstd %v: patch %d bytes for a %d-byte image", zst, tg.Length, len(next))
		}
		for _, p := range paths {
			if _, err := r.Target(p); err != nil {
				t.Errorf("patch %s gone after adding another base: %v", p, err)
			}
		}
		if err := r.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDuplicatePatchBases: the uniqueness rule of AddTarget keeps one
// patch per base, not one per release.
func TestDuplicatePatchBases(t *testing.T) {
	r, _ := initRepo(t, InitOptions{})
	patch := func(base string) verify.Custom {
		c := rootfs("1.2.0")
		c.Kind, c.Of, c.Base, c.Format = verify.KindPatch, "x.img", base, delta.PatchFormat
		c.Uncompressed = &verify.Digest{Length: 1, SHA256: hexSHA([]byte("x"))}
		return c
	}
	a, b := hexSHA([]byte("a")), hexSHA([]byte("b"))
	tests := []struct {
		path, base string
		ok         bool
	}{
		{"x.img.from-a.patch", a, true},
		{"x.img.from-b.patch", b, true},
		{"x.img.from-a-again.patch", a, false},
		{"x.img.from-a.patch", a, true}, // replaces itself
	}
	for _, tt := range tests {
		_, err := r.AddTarget(ctx, tt.path, bytes.NewReader([]byte("p")), patch(tt.base), AddOptions{})
		if got := err == nil; got != tt.ok {
			t.Errorf("%s from %s: error %v, want ok %v", tt.path, tt.base[:4], err, tt.ok)
		}
	}
}

// TestPruneChunks: chunks of expired releases go once Prune has removed
// their metadata; chunks still named by a live index stay.
func TestPruneChunks(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r, err := Init(ctx, Config{Dir: t.TempDir(), Now: func() time.Time { return now }}, InitOptions{KeysDir: filepath.Join(t.TempDir(), "keys")})
	if err != nil {
		t.Fatal(err)
	}
	v1 := release(5, 64<<10)
	v2 := bytes.Clone(v1)
	copy(v2[8192:], release(6, 4096)) // one 4 KiB block differs
	publishRelease := func(version string, img []byte) (*delta.Index, string) {
		t.Helper()
		p := "rootfs/" + version + "/x.img"
		if _, err := r.AddTarget(ctx, p, bytes.NewReader(img), rootfs(version), AddOptions{}); err != nil {
			t.Fatal(err)
		}
		tg, err := r.AddChunkIndex(ctx, p, bytes.NewReader(img), delta.IndexOptions{}, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Publish(ctx); err != nil {
			t.Fatal(err)
		}
		return indexOf(t, r, tg), tg.SHA256
	}
	ix1, sum1 := publishRelease("1.0.0", v1)
	stray := filepath.Join(r.TargetsDir(), ChunkStoreDir, "ab", strings.Repeat("ab", 16)+".zst")
	if err := os.MkdirAll(filepath.Dir(stray), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stray, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(r.TargetsDir(), ChunkStoreDir, "ab", ".tmp-123")
	if err := os.WriteFile(tmp, []byte("being written"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Files that are not chunks stay: a target someone put under chunks/
	// and anything not named like a chunk.
	other, err := r.AddTargetRaw(ctx, "chunks/ab/zst", strings.NewReader("a target"), nil)
	if err != nil {
		t.Fatal(err)
	}
	readme := filepath.Join(r.TargetsDir(), ChunkStoreDir, "README")
	if err := os.WriteFile(readme, []byte("chunk store"), 0o644); err != nil {
		t.Fatal(err)
	}
	removed, err := r.PruneChunks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{readme, filepath.Join(r.TargetsDir(), filepath.FromSlash(other.File))} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("PruneChunks removed a file that is not a chunk: %v", err)
		}
	}
	if err := r.RemoveTarget(other.Path); err != nil {
		t.Fatal(err)
	}
	if want := []string{"targets/chunks/ab/" + strings.Repeat("ab", 16) + ".zst"}; strings.Join(removed, " ") != strings.Join(want, " ") {
		t.Errorf("removed %v, want %v", removed, want)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("a temporary file of a store being written was removed: %v", err)
	}
	for _, p := range []string{"rootfs/1.0.0/x.img", "rootfs/1.0.0/x.img.idx"} {
		if err := r.RemoveTarget(p); err != nil {
			t.Fatal(err)
		}
	}
	ix2, sum2 := publishRelease("1.1.0", v2)
	// 1.0.0's targets metadata has not expired: its chunks stay.
	if removed, err := r.PruneChunks(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("PruneChunks before expiry = %v, %v; want nothing", removed, err)
	}
	now = now.Add(DefaultExpiry[RoleTargets] + time.Hour)
	if _, err := r.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.TargetsDir(), ChunkStoreDir)); err != nil {
		t.Fatalf("Prune removed the chunk store: %v", err)
	}
	removed, err = r.PruneChunks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live := map[string]bool{}
	for _, c := range ix2.Chunks() {
		live[ix2.ChunkPath(c)] = true
	}
	var want []string
	for _, c := range ix1.Chunks() {
		if p := ix1.ChunkPath(c); !live[p] && !slices.Contains(want, "targets/chunks/"+p) {
			want = append(want, "targets/chunks/"+p)
		}
	}
	// 1.0.0's pack goes with its index; 1.1.0's stays.
	pack1, tab1 := PackPaths(sum1)
	want = append(want, "targets/chunks/"+pack1, "targets/chunks/"+tab1)
	slices.Sort(want)
	if len(want) == 0 || strings.Join(removed, " ") != strings.Join(want, " ") {
		t.Errorf("removed %v, want %v", removed, want)
	}
	pack2, tab2 := PackPaths(sum2)
	for _, p := range []string{pack2, tab2} {
		if _, err := os.Stat(filepath.Join(r.TargetsDir(), ChunkStoreDir, filepath.FromSlash(p))); err != nil {
			t.Errorf("live pack file %s: %v", p, err)
		}
	}
	for p := range live {
		if _, err := os.Stat(filepath.Join(r.TargetsDir(), ChunkStoreDir, filepath.FromSlash(p))); err != nil {
			t.Errorf("live chunk %s: %v", p, err)
		}
	}
	// An index file that cannot be read stops pruning before any deletion.
	idx, err := r.Target("rootfs/1.1.0/x.img.idx")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.TargetsDir(), filepath.FromSlash(idx.File)), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if removed, err := r.PruneChunks(ctx); err == nil || len(removed) != 0 {
		t.Errorf("PruneChunks with a corrupt index = %v, %v; want an error and nothing removed", removed, err)
	}
}

func TestAddDeltaCanceled(t *testing.T) {
	img := release(8, 200_000)
	r, _ := initRepo(t, InitOptions{})
	p := "rootfs/1.2.0/x.img"
	if _, err := r.AddTarget(ctx, p, bytes.NewReader(img), rootfs("1.2.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.AddChunkIndex(canceled, p, bytes.NewReader(img), delta.IndexOptions{}, true); !errors.Is(err, context.Canceled) {
		t.Errorf("AddChunkIndex: %v, want context.Canceled", err)
	}
	base := changed(img)
	if _, err := r.AddPatch(canceled, p, bytes.NewReader(base), int64(len(base)), bytes.NewReader(img)); !errors.Is(err, context.Canceled) {
		t.Errorf("AddPatch: %v, want context.Canceled", err)
	}
	if got := len(r.Targets()); got != 1 {
		t.Errorf("%d targets after canceled calls, want 1", got)
	}
}

func TestIsChunkPath(t *testing.T) {
	h := strings.Repeat("ab", 16)
	tests := []struct {
		rel  string
		want bool
	}{
		{"ab/" + h + ".zst", true},
		{"ab/" + h + h + ".zst", true},
		{"cd/" + h + ".zst", false},
		{"ab/" + h, false},
		{"ab/" + strings.ToUpper(h) + ".zst", false},
		{"ab/" + h[:30] + ".zst", false},
		{"ab/cd/" + h + ".zst", false},
		{h + ".zst", false},
		{"README", false},
		{"ab/" + h + "0.zst", false}, // odd length
	}
	for _, tt := range tests {
		if got := isChunkPath(tt.rel); got != tt.want {
			t.Errorf("isChunkPath(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

func FuzzIsChunkPath(f *testing.F) {
	f.Add("ab/" + strings.Repeat("ab", 16) + ".zst")
	f.Add("README")
	f.Add("ab/cd/ef.zst")
	f.Fuzz(func(t *testing.T, rel string) {
		if !isChunkPath(rel) {
			return
		}
		dir, name, _ := strings.Cut(rel, "/")
		if strings.Contains(name, "/") || !strings.HasPrefix(name, dir) || !strings.HasSuffix(name, ".zst") {
			t.Errorf("isChunkPath(%q) accepted a path unlike <hh>/<hash>.zst", rel)
		}
	})
}

// servedFiles lists the files under targets/, relative to the repository
// directory, temporary files left out.
func servedFiles(t *testing.T, r *Repo) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(r.TargetsDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return err
		}
		rel, err := filepath.Rel(r.Dir(), p)
		out[filepath.ToSlash(rel)] = true
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReferenced: what the metadata on disk names is every served target
// file, chunk and pack, before and after a prune; a target removed from
// the current metadata stays referenced while older metadata names it.
func TestReferenced(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r, err := Init(ctx, Config{Dir: t.TempDir(), Now: func() time.Time { return now }}, InitOptions{KeysDir: filepath.Join(t.TempDir(), "keys")})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"1.0.0", "1.1.0"} {
		p := "rootfs/" + v + "/x.img"
		img := release(uint64(10+i), 64<<10)
		if _, err := r.AddTarget(ctx, p, bytes.NewReader(img), rootfs(v), AddOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AddChunkIndex(ctx, p, bytes.NewReader(img), delta.IndexOptions{}, true); err != nil {
			t.Fatal(err)
		}
		if err := r.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		got, err := r.Referenced(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := servedFiles(t, r)
		if !maps.Equal(got, want) {
			t.Errorf("%s: Referenced = %d files, want the %d served ones", when, len(got), len(want))
			for f := range want {
				if !got[f] {
					t.Errorf("%s: %s not referenced", when, f)
				}
			}
			for f := range got {
				if !want[f] {
					t.Errorf("%s: %s referenced but absent", when, f)
				}
			}
		}
	}
	check("two releases")
	for _, p := range []string{"rootfs/1.0.0/x.img", "rootfs/1.0.0/x.img.idx"} {
		if err := r.RemoveTarget(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	check("1.0.0 removed, its metadata not expired")
	now = now.Add(DefaultExpiry[RoleTargets] + time.Hour)
	if _, err := r.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PruneChunks(ctx); err != nil {
		t.Fatal(err)
	}
	check("after Prune and PruneChunks")
}
