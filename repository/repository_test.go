package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/switchback-ota/switchback/verify"
)

var ctx = context.Background()

func rootfs(version string) verify.Custom {
	return verify.Custom{Component: "rootfs", Version: version, Hardware: []string{"board-a"}}
}

func initRepo(t *testing.T, opts InitOptions) (*Repo, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if opts.KeysDir == "" {
		opts.KeysDir = filepath.Join(t.TempDir(), "keys")
	}
	r, err := Init(ctx, Config{Dir: dir}, opts)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return r, opts.KeysDir
}

// refresh reads the repository directory as a device would, with go-tuf's
// client over file:// URLs is not supported, so through a local fetcher.
func refresh(t *testing.T, r *Repo, root []byte, metaDir string) (*updater.Updater, error) {
	t.Helper()
	cfg, err := config.New("http://repo.invalid/metadata/", root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Fetcher = dirFetcher{r.Dir()}
	cfg.LocalMetadataDir = metaDir
	cfg.LocalTargetsDir = t.TempDir()
	cfg.RemoteTargetsURL = "http://repo.invalid/targets/"
	u, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	return u, u.Refresh()
}

// dirFetcher serves a repository directory to go-tuf without a network.
type dirFetcher struct{ dir string }

func (f dirFetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	rel, ok := strings.CutPrefix(url, "http://repo.invalid/")
	if !ok {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: url}
	}
	b, err := os.ReadFile(filepath.Join(f.dir, filepath.FromSlash(rel)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: url}
	}
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: "too long"}
	}
	return b, nil
}

func root1(t *testing.T, r *Repo) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.MetadataDir(), "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInitAddPublishVerify(t *testing.T) {
	for _, kt := range []KeyType{Ed25519, ECDSAP256} {
		t.Run(string(kt), func(t *testing.T) {
			r, keysDir := initRepo(t, InitOptions{KeyType: kt})
			ents, err := os.ReadDir(keysDir)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(ents), 4; got != want {
				t.Fatalf("key files = %d, want %d", got, want)
			}
			for _, e := range ents {
				fi, _ := e.Info()
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("%s: mode %v, want 0600", e.Name(), got)
				}
			}
			img := []byte("release 1.0.0")
			tg, err := r.AddTarget(ctx, "rootfs/1.0.0/rootfs.img", bytes.NewReader(img), rootfs("1.0.0"), AddOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Publish(ctx); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"metadata/1.root.json", "metadata/root.json", "metadata/2.targets.json", "metadata/2.snapshot.json", "metadata/timestamp.json", "targets/" + tg.File} {
				if _, err := os.Stat(filepath.Join(r.Dir(), f)); err != nil {
					t.Errorf("missing %s: %v", f, err)
				}
			}
			if !strings.HasPrefix(tg.File, "rootfs/1.0.0/"+tg.SHA256+".") {
				t.Errorf("file = %s, want hash-prefixed", tg.File)
			}
			u, err := refresh(t, r, root1(t, r), t.TempDir())
			if err != nil {
				t.Fatalf("device refresh: %v", err)
			}
			tf, err := u.GetTargetInfo("rootfs/1.0.0/rootfs.img")
			if err != nil {
				t.Fatal(err)
			}
			if err := tf.VerifyLengthHashes(img); err != nil {
				t.Error(err)
			}
			if len(tf.Hashes) != 1 {
				t.Errorf("hashes = %v, want sha256 only", tf.Hashes)
			}
			c, err := verify.ParseCustom(*tf.Custom)
			if err != nil || c.Version != "1.0.0" {
				t.Errorf("custom = %+v, %v", c, err)
			}

			// Reopen from disk with the key files: same state.
			keys, err := LoadKeys(keysDir)
			if err != nil {
				t.Fatal(err)
			}
			r2, err := Open(Config{Dir: r.Dir(), Keys: keys})
			if err != nil {
				t.Fatal(err)
			}
			if got := r2.Targets(); len(got) != 1 || got[0].SHA256 != tg.SHA256 {
				t.Errorf("reopened targets = %+v", got)
			}
			if err := r2.RemoveTarget("rootfs/1.0.0/rootfs.img"); err != nil {
				t.Fatal(err)
			}
			if err := r2.Publish(ctx); err != nil {
				t.Fatal(err)
			}
			u, err = refresh(t, r2, root1(t, r), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := u.GetTargetInfo("rootfs/1.0.0/rootfs.img"); err == nil {
				t.Error("removed target still listed")
			}
		})
	}
}

func TestInitRefusesExisting(t *testing.T) {
	r, keys := initRepo(t, InitOptions{})
	_, err := Init(ctx, Config{Dir: r.Dir()}, InitOptions{KeysDir: keys})
	if !errors.Is(err, ErrExists) {
		t.Errorf("Init twice: %v, want ErrExists", err)
	}
}

func TestAddTargetRejects(t *testing.T) {
	r, _ := initRepo(t, InitOptions{})
	tests := []struct {
		name   string
		path   string
		custom verify.Custom
		opts   AddOptions
	}{
		{"absolute", "/etc/passwd", rootfs("1.0.0"), AddOptions{}},
		{"dotdot", "a/../../b", rootfs("1.0.0"), AddOptions{}},
		{"unclean", "a//b", rootfs("1.0.0"), AddOptions{}},
		{"query", "a?b=1", rootfs("1.0.0"), AddOptions{}},
		{"space", "a b", rootfs("1.0.0"), AddOptions{}},
		{"percent", "a%2fb", rootfs("1.0.0"), AddOptions{}},
		{"empty", "", rootfs("1.0.0"), AddOptions{}},
		{"no version", "a", verify.Custom{Component: "x", Hardware: []string{"h"}}, AddOptions{}},
		{"no hardware", "a", verify.Custom{Component: "x", Version: "1.0.0"}, AddOptions{}},
		{"compression without zstd", "a", verify.Custom{Component: "x", Version: "1.0.0", Hardware: []string{"h"}, Compression: "zstd", Uncompressed: &verify.Digest{SHA256: strings.Repeat("a", 64)}}, AddOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.AddTarget(ctx, tt.path, strings.NewReader("x"), tt.custom, tt.opts)
			if !errors.Is(err, ErrBadTarget) {
				t.Errorf("err = %v, want ErrBadTarget", err)
			}
			if got := r.Targets(); len(got) != 0 {
				t.Errorf("targets = %v, want none", got)
			}
		})
	}
	if _, err := r.AddTarget(ctx, "one", strings.NewReader("1"), rootfs("1.0.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddTarget(ctx, "two", strings.NewReader("2"), rootfs("v1.0.0"), AddOptions{}); !errors.Is(err, ErrBadTarget) {
		t.Errorf("same release under a second path: %v, want ErrBadTarget", err)
	}
	// The same release under the same path: published bytes of a
	// version never change under devices' feet.
	if _, err := r.AddTarget(ctx, "one", strings.NewReader("1b"), rootfs("1.0.0"), AddOptions{}); !errors.Is(err, ErrBadTarget) {
		t.Errorf("same release again under its path: %v, want ErrBadTarget", err)
	}
	if got, err := r.Target("one"); err != nil || got.Length != 1 {
		t.Errorf("target one after a refused add: %+v, %v; want the first one (1 byte)", got, err)
	}
	other := rootfs("1.0.0")
	other.Hardware = []string{"board-z"}
	if _, err := r.AddTarget(ctx, "three", strings.NewReader("3"), other, AddOptions{}); err != nil {
		t.Errorf("same version for other hardware: %v", err)
	}
	if err := r.RemoveTarget("one"); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveTarget("three"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddTargetRaw(ctx, "x", strings.NewReader("x"), json.RawMessage("{")); !errors.Is(err, ErrBadTarget) {
		t.Errorf("AddTargetRaw(bad JSON) = %v, want ErrBadTarget", err)
	}
	if err := r.RemoveTarget("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveTarget(missing) = %v, want ErrNotFound", err)
	}
}

func TestZstdFrames(t *testing.T) {
	r, _ := initRepo(t, InitOptions{})
	img := make([]byte, 10000)
	for i := range img {
		img[i] = byte(i * 7 % 251)
	}
	const frame = 4096
	tg, err := r.AddTarget(ctx, "app.zst", bytes.NewReader(img), verify.Custom{Component: "app", Version: "1.0.0", Hardware: []string{"*"}}, AddOptions{Zstd: true, FrameSize: frame})
	if err != nil {
		t.Fatal(err)
	}
	c, err := verify.ParseCustom(tg.Custom)
	if err != nil {
		t.Fatal(err)
	}
	if c.Compression != verify.CompressionZstd || c.Uncompressed.Length != int64(len(img)) {
		t.Errorf("custom = %+v", c)
	}
	data, err := os.ReadFile(filepath.Join(r.TargetsDir(), tg.File))
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	got, err := dec.DecodeAll(data, nil)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("decoded %d bytes, %v; want the %d input bytes", len(got), err, len(img))
	}
	// Walk the frames: each is independent and holds frame bytes (the
	// last one the rest), so decoding can restart at any boundary.
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
	defer enc.Close()
	rest := data
	for off := 0; off < len(img); off += frame {
		end := min(off+frame, len(img))
		want := enc.EncodeAll(img[off:end], nil)
		if !bytes.HasPrefix(rest, want) {
			t.Fatalf("frame at %d is not an independent frame of %d bytes", off, end-off)
		}
		var h zstd.Header
		if err := h.Decode(rest); err != nil || !h.HasFCS || h.FrameContentSize != uint64(end-off) {
			t.Errorf("frame at %d: header %+v, %v", off, h, err)
		}
		rest = rest[len(want):]
	}
	if len(rest) != 0 {
		t.Errorf("%d trailing bytes", len(rest))
	}
}

func TestZstdEmpty(t *testing.T) {
	var buf bytes.Buffer
	n, err := compressFrames(ctx, &buf, strings.NewReader(""), 16)
	if err != nil || n != 0 {
		t.Fatalf("compressFrames(empty) = %d, %v", n, err)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	got, err := dec.DecodeAll(buf.Bytes(), nil)
	if err != nil || len(got) != 0 || buf.Len() == 0 {
		t.Errorf("empty input: %d compressed bytes decode to %d bytes, %v; want one empty frame", buf.Len(), len(got), err)
	}
}

func TestThresholdOfflineSigning(t *testing.T) {
	keysDir := filepath.Join(t.TempDir(), "keys")
	r, _ := initRepo(t, InitOptions{KeysDir: keysDir, Roles: map[string]RoleOptions{RoleTargets: {Threshold: 2}}})
	all, err := LoadKeys(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	// This machine holds only one of the two targets keys.
	var online []*Key
	var offline *Key
	for _, k := range all {
		if offline == nil && isRoleKey(r, RoleTargets, k) {
			offline = k
			continue
		}
		online = append(online, k)
	}
	r2, err := Open(Config{Dir: r.Dir(), Keys: online})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.AddTarget(ctx, "a", strings.NewReader("a"), rootfs("1.0.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r2.Publish(ctx); !errors.Is(err, ErrThreshold) {
		t.Fatalf("Publish with 1 of 2 keys = %v, want ErrThreshold", err)
	}
	if _, err := os.Stat(filepath.Join(r.MetadataDir(), "2.targets.json")); err == nil {
		t.Fatal("under-signed targets were published")
	}
	// A new process sees the staged change.
	r3, err := Open(Config{Dir: r.Dir(), Keys: online})
	if err != nil {
		t.Fatal(err)
	}
	st := statusOf(r3, RoleTargets)
	if !st.Staged || st.StagedVersion != 2 || len(st.StagedSignedBy) != 1 {
		t.Fatalf("status = %+v, want staged v2 with one signature", st)
	}
	exported, err := r3.Export(RoleTargets)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := SignExported(exported, offline)
	if err != nil {
		t.Fatal(err)
	}
	// A signature over other content is refused.
	other, _ := SignExported(bytes.Replace(exported, []byte(`"version": 2`), []byte(`"version": 7`), 1), offline)
	if _, _, err := r3.MergeSignatures(other); err == nil {
		t.Error("merged a signature over different content")
	}
	role, n, err := r3.MergeSignatures(signed)
	if err != nil || role != RoleTargets || n != 1 {
		t.Fatalf("MergeSignatures = %s, %d, %v", role, n, err)
	}
	if err := r3.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := refresh(t, r3, root1(t, r3), t.TempDir()); err != nil {
		t.Fatalf("device refresh: %v", err)
	}
	if _, err := r3.Export(RoleTargets); !errors.Is(err, ErrNotFound) {
		t.Errorf("Export after publish = %v, want ErrNotFound", err)
	}
}

func isRoleKey(r *Repo, role string, k *Key) bool {
	for _, id := range r.root().Signed.Roles[role].KeyIDs {
		if id == k.ID() {
			return true
		}
	}
	return false
}

func statusOf(r *Repo, role string) RoleStatus {
	for _, s := range r.Status() {
		if s.Role == role {
			return s
		}
	}
	return RoleStatus{}
}

func TestRotateAndOfflineRoot(t *testing.T) {
	keysDir := filepath.Join(t.TempDir(), "keys")
	r, _ := initRepo(t, InitOptions{KeysDir: keysDir})
	trusted := root1(t, r)
	metaDir := t.TempDir()
	if _, err := refresh(t, r, trusted, metaDir); err != nil {
		t.Fatal(err)
	}
	var nonRoot []*Key
	all, _ := LoadKeys(keysDir)
	for _, k := range all {
		if !isRoleKey(r, RoleRoot, k) {
			nonRoot = append(nonRoot, k)
		}
	}
	// Without the root key, a key rotation stays staged.
	r2, err := Open(Config{Dir: r.Dir(), Keys: nonRoot})
	if err != nil {
		t.Fatal(err)
	}
	nk, _ := GenerateKey(Ed25519)
	if err := r2.RotateKeys(RoleTargets, []*Key{nk}, 0); err != nil {
		t.Fatal(err)
	}
	if err := r2.Publish(ctx); !errors.Is(err, ErrThreshold) {
		t.Fatalf("Publish without root key = %v, want ErrThreshold", err)
	}
	// With it (the offline key brought in), it publishes.
	r3, err := Open(Config{Dir: r.Dir(), Keys: append(all, nk)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r3.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	// Rotate the root key itself: the new root is signed by both.
	newRoot, _ := GenerateKey(ECDSAP256)
	if err := r3.RotateKeys(RoleRoot, []*Key{newRoot}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r3.AddTarget(ctx, "a", strings.NewReader("a"), rootfs("1.0.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r3.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	st := statusOf(r3, RoleRoot)
	if st.Version != 3 || len(st.SignedBy) != 2 {
		t.Errorf("root status = %+v, want v3 signed by 2 keys", st)
	}
	u, err := refresh(t, r3, trusted, metaDir)
	if err != nil {
		t.Fatalf("device walking the root chain: %v", err)
	}
	if got := u.GetTrustedMetadataSet().Root.Signed.Version; got != 3 {
		t.Errorf("device root version = %d, want 3", got)
	}
	if _, err := u.GetTargetInfo("a"); err != nil {
		t.Error(err)
	}
}

func TestRefreshAndExpiry(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	keysDir := filepath.Join(t.TempDir(), "keys")
	r, _ := initRepo(t, InitOptions{KeysDir: keysDir})
	keys, _ := LoadKeys(keysDir)
	r, err := Open(Config{Dir: r.Dir(), Keys: keys, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetExpiry(RoleTimestamp, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	before := statusOf(r, RoleSnapshot).Version
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ts := statusOf(r, RoleTimestamp)
	if want := now.Add(2 * time.Hour); !ts.Expires.Equal(want) {
		t.Errorf("timestamp expires %v, want %v", ts.Expires, want)
	}
	if got := statusOf(r, RoleSnapshot).Version; got != before+1 {
		t.Errorf("snapshot version = %d, want %d", got, before+1)
	}
	// The period is saved with the repository.
	r2, err := Open(Config{Dir: r.Dir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.Expiry(RoleTimestamp); got != 2*time.Hour {
		t.Errorf("reopened expiry = %v", got)
	}
	if err := r2.SetExpiry(RoleTimestamp, -time.Hour); err == nil {
		t.Error("negative expiry accepted")
	}
	// Nothing changed: Publish is a no-op.
	v := statusOf(r2, RoleTimestamp).Version
	if err := r2.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if got := statusOf(r2, RoleTimestamp).Version; got != v {
		t.Errorf("no-op publish bumped timestamp %d -> %d", v, got)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateKey(ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, KeyFileName(RoleTargets, k))
	if err := k.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteFile(p); err == nil {
		t.Error("WriteFile overwrote an existing key")
	}
	k2, err := LoadKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID() != k.ID() || k2.Type() != ECDSAP256 {
		t.Errorf("loaded key %s %s, want %s %s", k2.ID(), k2.Type(), k.ID(), k.Type())
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(p); !errors.Is(err, ErrBadKey) {
		t.Errorf("world-readable key: %v, want ErrBadKey", err)
	}
	if _, err := GenerateKey("rsa"); !errors.Is(err, ErrBadKey) {
		t.Errorf("GenerateKey(rsa) = %v", err)
	}
}

func FuzzParseKey(f *testing.F) {
	for _, kt := range []KeyType{Ed25519, ECDSAP256} {
		k, _ := GenerateKey(kt)
		b, _ := k.MarshalPEM()
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Errorf("error %v does not wrap ErrBadKey", err)
			}
			return
		}
		b, err := k.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParseKey(b)
		if err != nil || k2.ID() != k.ID() {
			t.Errorf("round trip: %v", err)
		}
	})
}

func FuzzValidTargetPath(f *testing.F) {
	for _, s := range []string{"a", "a/b.img", "../x", "/x", "a//b", "a/./b", "a\\b", ".tmp-x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidTargetPath(p) != nil {
			return
		}
		full := filepath.Join("/base", filepath.FromSlash(p))
		if !strings.HasPrefix(full, "/base/") {
			t.Errorf("valid path %q escapes the base: %s", p, full)
		}
		if u := (&url.URL{Path: p}).EscapedPath(); u != p {
			t.Errorf("valid path %q needs URL escaping: %s", p, u)
		}
	})
}

var _ io.Reader = (*errReader)(nil)

// errReader fails mid-stream.
type errReader struct{ n int }

func (e *errReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errors.New("disk gone")
	}
	n := min(len(p), e.n)
	e.n -= n
	return n, nil
}

func TestAddTargetReadErrorLeavesNothing(t *testing.T) {
	r, _ := initRepo(t, InitOptions{})
	for _, zst := range []bool{false, true} {
		_, err := r.AddTarget(ctx, "d/a.img", &errReader{n: 100}, rootfs("1.0.0"), AddOptions{Zstd: zst, FrameSize: 64})
		if err == nil {
			t.Fatal("AddTarget succeeded on a failing reader")
		}
	}
	ents, _ := os.ReadDir(filepath.Join(r.TargetsDir(), "d"))
	if len(ents) != 0 || len(r.Targets()) != 0 {
		t.Errorf("left %d files and %d targets", len(ents), len(r.Targets()))
	}
}

func TestMergeRefusesForeignKey(t *testing.T) {
	keysDir := filepath.Join(t.TempDir(), "keys")
	r, _ := initRepo(t, InitOptions{KeysDir: keysDir, Roles: map[string]RoleOptions{RoleTargets: {Threshold: 2}}})
	all, _ := LoadKeys(keysDir)
	var online []*Key
	skipped := false
	for _, k := range all {
		if !skipped && isRoleKey(r, RoleTargets, k) {
			skipped = true
			continue
		}
		online = append(online, k)
	}
	r, err := Open(Config{Dir: r.Dir(), Keys: online})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddTarget(ctx, "a", strings.NewReader("a"), rootfs("1.0.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(ctx); !errors.Is(err, ErrThreshold) {
		t.Fatal(err)
	}
	exported, _ := r.Export(RoleTargets)
	stranger, _ := GenerateKey(Ed25519)
	signed, _ := SignExported(exported, stranger)
	if _, n, err := r.MergeSignatures(signed); err == nil || n != 0 {
		t.Errorf("merge of a stranger's signature = %d, %v; want refused", n, err)
	}
	if got := len(statusOf(r, RoleTargets).StagedSignedBy); got != 1 {
		t.Errorf("staged signatures = %d, want 1", got)
	}
	if _, _, err := r.MergeSignatures([]byte(`{"signed":{"_type":"mirror"}}`)); err == nil {
		t.Error("merged non top-level metadata")
	}
}

// A crash after the new targets and snapshot files were written but before
// the timestamp was: the next Open and Publish finish the job.
func TestRecoverInterruptedPublish(t *testing.T) {
	keysDir := filepath.Join(t.TempDir(), "keys")
	r, _ := initRepo(t, InitOptions{KeysDir: keysDir})
	keys, _ := LoadKeys(keysDir)
	oldTS, err := os.ReadFile(filepath.Join(r.MetadataDir(), "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddTarget(ctx, "a", strings.NewReader("a"), rootfs("1.0.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	// Undo the last step of that publish and leave a stale staged file.
	if err := os.WriteFile(filepath.Join(r.MetadataDir(), "timestamp.json"), oldTS, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.stage(RoleTargets); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(Config{Dir: r.Dir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if st := statusOf(r2, RoleTargets); st.Staged {
		t.Errorf("stale staged targets kept: %+v", st)
	}
	if err := r2.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := refresh(t, r2, root1(t, r2), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.GetTargetInfo("a"); err != nil {
		t.Errorf("target after recovery: %v", err)
	}
}

// FuzzMergeSignatures feeds arbitrary "signed" files, as they come back
// from another machine, to MergeSignatures: it must refuse without
// panicking, and never accept a signature it cannot verify.
func FuzzMergeSignatures(f *testing.F) {
	dir := f.TempDir()
	keys := map[string][]*Key{}
	for _, role := range Roles {
		k, _ := GenerateKey(Ed25519)
		keys[role] = []*Key{k}
	}
	t2, _ := GenerateKey(Ed25519)
	keys[RoleTargets] = append(keys[RoleTargets], t2)
	if _, err := Init(ctx, Config{Dir: dir}, InitOptions{Keys: keys, Roles: map[string]RoleOptions{RoleTargets: {Threshold: 2}}}); err != nil {
		f.Fatal(err)
	}
	r, _ := Open(Config{Dir: dir, Keys: []*Key{keys[RoleTargets][0], keys[RoleSnapshot][0], keys[RoleTimestamp][0]}})
	r.AddTarget(ctx, "a", strings.NewReader("a"), rootfs("1.0.0"), AddOptions{})
	if err := r.Publish(ctx); !errors.Is(err, ErrThreshold) {
		f.Fatal(err)
	}
	exported, _ := r.Export(RoleTargets)
	signed, _ := SignExported(exported, t2)
	f.Add(exported)
	f.Add(signed)
	f.Add([]byte(`{"signed":{"_type":"root"},"signatures":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		before := len(statusOf(r, RoleTargets).StagedSignedBy)
		_, n, err := r.MergeSignatures(data)
		if err != nil && n != 0 {
			t.Errorf("error %v with %d signatures added", err, n)
		}
		if n > 0 && !bytes.Contains(data, []byte(t2.ID())) {
			t.Errorf("merged %d signatures without the missing key's", n)
		}
		if err == nil && n > 0 {
			// Roll the staged file back for the next input.
			if got := len(statusOf(r, RoleTargets).StagedSignedBy); got != before+n {
				t.Errorf("signatures %d -> %d, added %d", before, got, n)
			}
			if err := os.WriteFile(r.stagedPath(RoleTargets), exported, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// Two processes open the repository; the second to publish is refused
// rather than publishing the same versions again.
func TestPublishConflict(t *testing.T) {
	keysDir := filepath.Join(t.TempDir(), "keys")
	r, _ := initRepo(t, InitOptions{KeysDir: keysDir})
	keys, _ := LoadKeys(keysDir)
	a, err := Open(Config{Dir: r.Dir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(Config{Dir: r.Dir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddTarget(ctx, "x", strings.NewReader("x"), rootfs("1.0.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx); !errors.Is(err, ErrConflict) {
		t.Fatalf("second publisher: %v, want ErrConflict", err)
	}
	// Reopened, the staged target is still there and publishes.
	c, err := Open(Config{Dir: r.Dir(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := refresh(t, c, root1(t, c), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if len(c.Targets()) != 1 {
		t.Errorf("targets = %v, want x", c.Targets())
	}
}

// A change staged against an older repository is never dropped silently.
func TestStaleStagedChangeRefused(t *testing.T) {
	keysDir := filepath.Join(t.TempDir(), "keys")
	r, _ := initRepo(t, InitOptions{KeysDir: keysDir})
	keys, _ := LoadKeys(keysDir)
	a, _ := Open(Config{Dir: r.Dir(), Keys: keys})
	b, _ := Open(Config{Dir: r.Dir(), Keys: keys})
	if _, err := a.AddTarget(ctx, "a", strings.NewReader("a"), rootfs("1.0.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	// b stages its own targets v2, different from the published v2.
	if _, err := b.AddTarget(ctx, "b", strings.NewReader("b"), rootfs("1.0.0"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: r.Dir(), Keys: keys}); !errors.Is(err, ErrConflict) {
		t.Errorf("Open with a conflicting staged change: %v, want ErrConflict", err)
	}
}

func TestPrune(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	r, err := Init(ctx, Config{Dir: t.TempDir(), Now: clock}, InitOptions{KeysDir: filepath.Join(t.TempDir(), "keys")})
	if err != nil {
		t.Fatal(err)
	}
	old, err := r.AddTarget(ctx, "rootfs/old.img", strings.NewReader("old"), rootfs("1.0.0"), AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveTarget("rootfs/old.img"); err != nil {
		t.Fatal(err)
	}
	cur, err := r.AddTarget(ctx, "rootfs/new.img", strings.NewReader("new"), rootfs("1.1.0"), AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	// The old targets version has not expired: a device may still be
	// fetching old.img.
	removed, err := r.Prune(ctx)
	if err != nil || len(removed) != 0 {
		t.Fatalf("Prune before expiry = %v, %v; want nothing", removed, err)
	}
	now = now.Add(DefaultExpiry[RoleTargets] + time.Hour)
	removed, err = r.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"metadata/1.snapshot.json", "metadata/1.targets.json", "metadata/2.snapshot.json", "metadata/2.targets.json", "targets/" + old.File}
	if strings.Join(removed, " ") != strings.Join(want, " ") {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, f := range []string{"targets/" + cur.File, "metadata/1.root.json", "metadata/3.targets.json", "metadata/3.snapshot.json", "metadata/timestamp.json"} {
		if _, err := os.Stat(filepath.Join(r.Dir(), f)); err != nil {
			t.Errorf("pruned %s: %v", f, err)
		}
	}
	// Still a valid repository (the clock back to now for the device).
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
}
