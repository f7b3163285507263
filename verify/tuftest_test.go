package verify_test

// Tests against internal/testkit/tuftest: repositories made by package repository,
// the code release pipelines use, so these also check that what the
// publisher writes is what the device expects (URLs, custom metadata,
// compression fields).

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

func newTUF(t *testing.T, opts ...tuftest.Option) *tuftest.Repo {
	t.Helper()
	return tuftest.New(t, append([]tuftest.Option{tuftest.WithClock(testNow)}, opts...)...)
}

// Every refresh of its client is a full one (root walk included), as the
// attacks on the root chain these tests play need; TestIdleCheck covers
// idle checks.
func clientFor(t *testing.T, r *tuftest.Repo, dir string) *verify.Client {
	t.Helper()
	c, err := verify.New(verify.Config{
		Root:                r.Root(),
		MetadataURL:         r.MetadataURL(),
		TargetsURL:          r.TargetsURL(),
		Dir:                 dir,
		Now:                 testNow,
		MinTime:             testEpoch.AddDate(-1, 0, 0),
		FullRefreshInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fetchVerify(t *testing.T, tg verify.Target) ([]byte, error) {
	t.Helper()
	res, err := http.Get(tg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", tg.URL, res.Status)
	}
	v, err := tg.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(v, &buf), res.Body); err != nil {
		return nil, err
	}
	return buf.Bytes(), v.Verify()
}

func TestTUFTestRelease(t *testing.T) {
	r := newTUF(t)
	image := bytes.Repeat([]byte("rootfs 2.0.0 "), 1000)
	r.AddTarget("rootfs/rootfs-1.0.0.img", []byte("old"), verify.Custom{Component: "rootfs", Version: "1.0.0", Hardware: []string{"board-a"}})
	r.AddTarget("rootfs/rootfs-2.0.0.img", image, verify.Custom{Component: "rootfs", Version: "2.0.0", Hardware: []string{"board-a"}})
	big := bytes.Repeat([]byte("app 3.1.0 payload "), 4000)
	r.AddCompressedTarget("app/app-3.1.0.zst", big, verify.Custom{Component: "app", Version: "3.1.0", Hardware: []string{"*"}}, 16<<10)
	r.AddTarget("app/notes.txt", []byte("no custom"), nil)
	r.Publish()

	ts := refresh(t, clientFor(t, r, t.TempDir()))
	if !ts.ConsistentSnapshot {
		t.Error("ConsistentSnapshot = false, want true")
	}
	if got, want := paths(ts.Targets), []string{"app/app-3.1.0.zst", "rootfs/rootfs-1.0.0.img", "rootfs/rootfs-2.0.0.img"}; !slices.Equal(got, want) {
		t.Fatalf("Targets = %q, want %q", got, want)
	}
	if len(ts.Rejected) != 1 || ts.Rejected[0].Path != "app/notes.txt" {
		t.Errorf("Rejected = %+v, want app/notes.txt", ts.Rejected)
	}
	for _, tg := range ts.Targets {
		if got, want := tg.URL, r.TargetURL(tg.Path); got != want {
			t.Errorf("%s: URL = %s, want the publisher's %s", tg.Path, got, want)
		}
		if got, want := tg.SHA256(), r.Target(tg.Path).SHA256; got != want {
			t.Errorf("%s: SHA256 = %s, want %s", tg.Path, got, want)
		}
	}

	tg, err := verify.Select(ts.Targets, verify.Policy{Component: "rootfs", Hardware: "board-a", Installed: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fetchVerify(t, tg); err != nil || !bytes.Equal(got, image) {
		t.Errorf("rootfs 2.0.0: verify %v, bytes equal %v", err, bytes.Equal(got, image))
	}

	// A zstd target: the compressed bytes verify against the target, the
	// decompressed ones against Custom.Uncompressed.
	tg, err = verify.Select(ts.Targets, verify.Policy{Component: "app", Hardware: "board-a"})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Custom.Compression != verify.CompressionZstd || tg.Custom.Uncompressed == nil {
		t.Fatalf("app custom = %+v, want zstd with an uncompressed digest", tg.Custom)
	}
	compressed, err := fetchVerify(t, tg)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	uv, err := verify.NewDigestVerifier(*tg.Custom.Uncompressed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(uv, dec); err != nil {
		t.Fatal(err)
	}
	if err := uv.Verify(); err != nil {
		t.Errorf("uncompressed verify: %v", err)
	}
}

func TestTUFTestReplacedTargetBytes(t *testing.T) {
	r := newTUF(t)
	r.AddTarget("app/app-1.0.0", []byte("genuine"), verify.Custom{Component: "app", Version: "1.0.0", Hardware: []string{"*"}})
	r.Publish()
	r.SetTargetBytes("app/app-1.0.0", []byte("malware"))
	ts := refresh(t, clientFor(t, r, t.TempDir()))
	if _, err := fetchVerify(t, ts.Targets[0]); !errors.Is(err, verify.ErrVerification) {
		t.Errorf("verify of replaced bytes = %v, want ErrVerification", err)
	}
	r.SetTargetBytes("app/app-1.0.0", []byte("genuine plus a tail"))
	if _, err := fetchVerify(t, ts.Targets[0]); !errors.Is(err, verify.ErrVerification) {
		t.Errorf("verify of extended bytes = %v, want ErrVerification", err)
	}
}

func TestTUFTestKeyRotation(t *testing.T) {
	r := newTUF(t)
	r.AddTarget("app/a", []byte("a"), verify.Custom{Component: "app", Version: "1.0.0", Hardware: []string{"*"}})
	r.Publish()
	dir := t.TempDir()
	c := clientFor(t, r, dir)
	refresh(t, c)
	r.RotateKeys(repository.RoleRoot)
	r.Publish()
	r.RotateKeys(repository.RoleTimestamp)
	r.Publish()
	ts := refresh(t, c)
	if got, want := ts.RootVersion, r.Version(repository.RoleRoot); got != want || got < 3 {
		t.Errorf("RootVersion = %d, want %d (>= 3)", got, want)
	}
	// A stolen, revoked timestamp key cannot sign what the device accepts.
	r.SignWith(repository.RoleTimestamp, r.RevokedKeys(repository.RoleTimestamp)...)
	for _, c := range []*verify.Client{c, clientFor(t, r, dir)} {
		if _, err := c.Refresh(context.Background()); !errors.Is(err, verify.ErrUntrusted) || !errors.Is(err, &metadata.ErrUnsignedMetadata{}) {
			t.Errorf("Refresh with revoked-key timestamp = %v, want ErrUntrusted with ErrUnsignedMetadata", err)
		}
	}
	// The next honest publication is accepted again.
	r.Publish()
	refresh(t, c)
}

func TestTUFTestAttacks(t *testing.T) {
	tests := []struct {
		name   string
		opts   []tuftest.Option
		attack func(r *tuftest.Repo)
		want   error
	}{
		{"expired timestamp", nil, func(r *tuftest.Repo) {
			r.SetExpires(repository.RoleTimestamp, testEpoch.Add(-time.Minute))
			r.Publish()
		}, &metadata.ErrExpiredMetadata{}},
		{"expired snapshot", nil, func(r *tuftest.Repo) {
			r.SetExpires(repository.RoleSnapshot, testEpoch.Add(-time.Minute))
			r.Publish()
		}, &metadata.ErrExpiredMetadata{}},
		{"expired targets", nil, func(r *tuftest.Repo) {
			r.SetExpires(repository.RoleTargets, testEpoch.Add(-time.Minute))
			r.AddTarget("app/b", []byte("b"), verify.Custom{Component: "app", Version: "1.1.0", Hardware: []string{"*"}})
			r.Publish()
		}, &metadata.ErrExpiredMetadata{}},
		{"timestamp rollback", nil, func(r *tuftest.Repo) { r.ServeTimestampVersion(1) }, &metadata.ErrBadVersionNumber{}},
		{"snapshot rollback", nil, func(r *tuftest.Repo) { r.RollbackSnapshot(1) }, &metadata.ErrBadVersionNumber{}},
		{"targets rollback", nil, func(r *tuftest.Repo) { r.RollbackTargets(1) }, &metadata.ErrBadVersionNumber{}},
		{"targets under threshold", []tuftest.Option{tuftest.WithThreshold(repository.RoleTargets, 2)}, func(r *tuftest.Repo) {
			r.SignWith(repository.RoleTargets, r.Keys(repository.RoleTargets)[0])
		}, &metadata.ErrUnsignedMetadata{}},
		{"unsigned snapshot", nil, func(r *tuftest.Repo) { r.SignWith(repository.RoleSnapshot) }, &metadata.ErrUnsignedMetadata{}},
		{"targets signed by the snapshot key", nil, func(r *tuftest.Repo) {
			r.SignWith(repository.RoleTargets, r.Keys(repository.RoleSnapshot)...)
		}, &metadata.ErrUnsignedMetadata{}},
		{"forged target hash", nil, func(r *tuftest.Repo) {
			r.Forge(repository.RoleTargets, func(s any) {
				for _, tf := range s.(*metadata.TargetsType).Targets {
					tf.Hashes["sha256"][0] ^= 1
				}
			}, r.Keys(repository.RoleSnapshot)...)
		}, &metadata.ErrUnsignedMetadata{}},
		{"forged root signed by the old root only", nil, func(r *tuftest.Repo) {
			r.Forge(repository.RoleRoot, nil, r.Keys(repository.RoleTimestamp)...)
		}, &metadata.ErrUnsignedMetadata{}},
		{"endless timestamp", nil, func(r *tuftest.Repo) {
			r.Wrap(func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					if !strings.HasSuffix(req.URL.Path, "/timestamp.json") {
						h.ServeHTTP(w, req)
						return
					}
					chunk := bytes.Repeat([]byte(" "), 4096)
					for range 1024 { // 4 MiB unless cut off
						if _, err := w.Write(chunk); err != nil {
							return
						}
					}
				})
			})
		}, &metadata.ErrDownloadLengthMismatch{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newTUF(t, tt.opts...)
			r.AddTarget("app/a", []byte("a"), verify.Custom{Component: "app", Version: "1.0.0", Hardware: []string{"*"}})
			r.Publish()
			r.Publish()
			dir := t.TempDir()
			c := clientFor(t, r, dir)
			refresh(t, c)
			tt.attack(r)
			_, err := c.Refresh(context.Background())
			if !errors.Is(err, verify.ErrUntrusted) || !errors.Is(err, tt.want) {
				t.Errorf("Refresh = %v, want ErrUntrusted with %T", err, tt.want)
			}
			// A device that lost its metadata is not fooled either.
			_, err = clientFor(t, r, t.TempDir()).Refresh(context.Background())
			if tt.name != "timestamp rollback" && tt.name != "snapshot rollback" && tt.name != "targets rollback" && !errors.Is(err, verify.ErrUntrusted) {
				t.Errorf("fresh device: Refresh = %v, want ErrUntrusted", err)
			}
		})
	}
}

func TestTUFTestStaleMirror(t *testing.T) {
	r := newTUF(t)
	r.AddTarget("app/a", []byte("a"), verify.Custom{Component: "app", Version: "1.0.0", Hardware: []string{"*"}})
	r.Publish()
	mirror := r.Mirror()
	r.AddTarget("app/b", []byte("b"), verify.Custom{Component: "app", Version: "2.0.0", Hardware: []string{"*"}})
	r.Publish()
	dir := t.TempDir()
	refresh(t, clientFor(t, r, dir))
	c, err := verify.New(verify.Config{
		Root: r.Root(), MetadataURL: mirror.URL + "/metadata/", TargetsURL: mirror.URL + "/targets/",
		Dir: dir, Now: testNow,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(context.Background()); !errors.Is(err, verify.ErrUntrusted) || !errors.Is(err, &metadata.ErrBadVersionNumber{}) {
		t.Errorf("Refresh from stale mirror = %v, want ErrUntrusted with ErrBadVersionNumber", err)
	}
}

func TestTUFTestMetadataBodyClosed(t *testing.T) {
	r := newTUF(t)
	r.AddTarget("app/a", []byte("a"), verify.Custom{Component: "app", Version: "1.0.0", Hardware: []string{"*"}})
	r.Publish()
	var open atomic.Int64
	c, err := verify.New(verify.Config{
		Root: r.Root(), MetadataURL: r.MetadataURL(), Dir: t.TempDir(), Now: testNow,
		Fetcher: func(ctx context.Context) verify.Fetcher {
			return verify.NewHTTPFetcher(ctx, &http.Client{Transport: countingTransport{http.DefaultTransport, &open}})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, c)
	if n := open.Load(); n != 0 {
		t.Errorf("%d response bodies left open", n)
	}
}

type countingTransport struct {
	rt   http.RoundTripper
	open *atomic.Int64
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := c.rt.RoundTrip(req)
	if err == nil {
		c.open.Add(1)
		res.Body = &countingBody{ReadCloser: res.Body, open: c.open}
	}
	return res, err
}

type countingBody struct {
	io.ReadCloser
	open   *atomic.Int64
	closed atomic.Bool
}

func (b *countingBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.open.Add(-1)
	}
	return b.ReadCloser.Close()
}
