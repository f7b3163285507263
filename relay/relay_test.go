package relay_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// An edge device whose first mirror is the relay updates while the
// upstream repository is unreachable, and the relay read each target from
// upstream once.
func TestEdgeUpdatesWhileUpstreamDown(t *testing.T) {
	repo := tuftest.New(t)
	img := publish(repo, "1.1.0", 1<<20)
	r, _ := newRelay(t, repo, nil)
	syncRelay(t, r)
	down := upstreamDown(repo)
	down.Store(true)
	ca := loadCA(t)
	srv := serveTLS(t, r, ca, false)
	for i := range 2 {
		e := newEdge(t, repo, func(c *updater.Config) { c.CAFile = ca.CertFile() }, srv.URL, repo.URL())
		got, err := e.update(context.Background())
		if err != nil {
			t.Fatalf("edge %d: update with upstream down: %v", i, err)
		}
		if got != "1.1.0" {
			t.Fatalf("edge %d: armed %q, want 1.1.0", i, got)
		}
		if !bytes.Equal(e.b.Bytes()[:len(img)], img) {
			t.Fatalf("edge %d: slot b does not hold the image", i)
		}
	}
	if st := r.Stats(); st.UplinkTargetBytes != int64(len(img)) {
		t.Errorf("uplink target bytes = %d, want one copy (%d)", st.UplinkTargetBytes, len(img))
	}
}

// The relay prefetches the patch from the release an edge device runs, and
// the edge device installs it from the relay while upstream is down.
func TestEdgePatchFromRelay(t *testing.T) {
	ctx := context.Background()
	repo, r, e, base, paths := edgeBehindRelay(t)
	next := bytes.Clone(base)
	copy(next[1000:], "release 1.2.0 changes a few bytes")
	repo.AddTarget(imagePath("1.2.0"), next, verify.Custom{Component: "rootfs", Version: "1.2.0", Hardware: []string{hw}})
	patch, err := repo.Repository().AddPatch(ctx, imagePath("1.2.0"), bytes.NewReader(base), int64(len(base)), bytes.NewReader(next))
	if err != nil {
		t.Fatal(err)
	}
	repo.Publish()
	reqs := updateFromRelay(t, repo, r, e, paths, "1.2.0")
	var got []string
	for _, p := range reqs {
		if strings.HasPrefix(p, relay.TargetsPrefix) {
			got = append(got, p)
		}
	}
	if want := "/targets/" + repo.Target(patch.Path).File; len(got) != 1 || got[0] != want {
		t.Fatalf("edge fetched %q from the relay, want only the patch %s", got, want)
	}
}

// A file of the cache changed behind the relay's back is refused by the
// edge device's own verification, which takes the bytes from its next
// mirror (the cloud) in the same install; the relay notices the change
// while serving the file whole, withholds its last bytes and evicts it, so
// it never serves those bytes again.
func TestEdgeRefusesTamperedCache(t *testing.T) {
	ctx := context.Background()
	repo := tuftest.New(t)
	img := publish(repo, "1.1.0", 256<<10)
	r, dir := newRelay(t, repo, nil)
	syncRelay(t, r)
	p := cacheFile(dir, img)
	bad := bytes.Clone(img)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	e := newEdge(t, repo, nil, srv.URL, repo.URL())
	if v, err := e.update(ctx); err != nil || v != "1.1.0" {
		t.Fatalf("install: %q, %v; want 1.1.0 from the next mirror", v, err)
	}
	st, err := e.boot.Status(ctx)
	if err != nil || st.Trial == "" {
		t.Fatalf("no trial armed after the install (%+v, %v)", st, err)
	}
	slot := e.a
	if st.Trial == "b" {
		slot = e.b
	}
	if got := slot.Bytes(); len(got) < len(img) || !bytes.Equal(got[:len(img)], img) {
		t.Fatalf("the armed slot does not hold the signed image")
	}
	if b, err := os.ReadFile(p); err == nil && bytes.Equal(b, bad) {
		t.Fatalf("the relay still caches the tampered bytes")
	}
}

// A target whose bytes upstream do not match the signed metadata is never
// cached nor served.
func TestTamperedUpstreamTargetNotServed(t *testing.T) {
	repo := tuftest.New(t)
	img := publish(repo, "1.1.0", 64<<10)
	evil := bytes.Clone(img)
	evil[100] ^= 1
	repo.SetTargetBytes(imagePath("1.1.0"), evil)
	r, dir := newRelay(t, repo, func(c *relay.Config) { c.RetryMax = -1 })
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Prefetch(context.Background()); !errors.Is(err, verify.ErrVerification) {
		t.Fatalf("Prefetch of a tampered target: err = %v, want ErrVerification", err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	res, body := get(t, srv.Client(), srv.URL+"/targets/"+repo.Target(imagePath("1.1.0")).File, nil)
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("tampered target answered %d (%d bytes), want 404", res.StatusCode, len(body))
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "cache"))
	for _, e := range entries {
		t.Errorf("cache holds %s after a tampered download", e.Name())
	}
}

// Metadata that does not verify is never served: neither a forged
// timestamp from upstream nor a file changed in the relay's directory.
func TestUnverifiedMetadataNotServed(t *testing.T) {
	repo := tuftest.New(t)
	publish(repo, "1.1.0", 1024)
	r, dir := newRelay(t, repo, nil)
	syncRelay(t, r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	ts := srv.URL + "/metadata/timestamp.json"
	_, good := get(t, srv.Client(), ts, nil)

	// Upstream serves a timestamp signed by a key the root does not list.
	rogue, err := repository.GenerateKey(repository.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	repo.Forge(repository.RoleTimestamp, nil, rogue)
	if err := r.Refresh(context.Background()); !errors.Is(err, verify.ErrUntrusted) {
		t.Fatalf("Refresh with a forged timestamp: err = %v, want ErrUntrusted", err)
	}
	if res, b := get(t, srv.Client(), ts, nil); res.StatusCode != http.StatusOK || !bytes.Equal(b, good) {
		t.Fatalf("after a forged timestamp the relay serves %d %q, want the verified one", res.StatusCode, b)
	}

	// The stored timestamp is replaced behind the relay's back: a relay
	// started on that directory serves no timestamp.
	forged := repo.MetadataFile("timestamp.json")
	if err := os.WriteFile(filepath.Join(dir, "tuf", "timestamp.json"), forged, 0o600); err != nil {
		t.Fatal(err)
	}
	r.Close() // the relay restarts on that directory
	r2, err := relay.New(relay.Config{Dir: dir, Root: repo.Root(), MetadataURL: repo.MetadataURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	srv2 := httptest.NewServer(r2)
	t.Cleanup(srv2.Close)
	if res, b := get(t, srv2.Client(), srv2.URL+"/metadata/timestamp.json", nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("forged stored timestamp answered %d %q, want 404", res.StatusCode, b)
	}
	if res, _ := get(t, srv2.Client(), srv2.URL+"/metadata/1.root.json", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("root answered %d, want 200", res.StatusCode)
	}
}

// The relay re-serves the verified metadata until it expires, then
// nothing newer than the roots.
func TestFreezeBoundedByExpiry(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	repo := tuftest.New(t, tuftest.WithExpiry(repository.RoleTimestamp, time.Hour))
	publish(repo, "1.1.0", 1024)
	r, _ := newRelay(t, repo, func(c *relay.Config) { c.Now = func() time.Time { return clock() } })
	syncRelay(t, r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	paths := []string{"/metadata/timestamp.json", "/targets/" + repo.Target(imagePath("1.1.0")).File}
	for _, tc := range []struct {
		after time.Duration
		want  int
	}{{59 * time.Minute, http.StatusOK}, {61 * time.Minute, http.StatusNotFound}} {
		clock = func() time.Time { return now.Add(tc.after) }
		for _, p := range paths {
			if res, _ := get(t, srv.Client(), srv.URL+p, nil); res.StatusCode != tc.want {
				t.Errorf("%s after %v: %d, want %d", p, tc.after, res.StatusCode, tc.want)
			}
		}
	}
	if res, _ := get(t, srv.Client(), srv.URL+"/metadata/1.root.json", nil); res.StatusCode != http.StatusOK {
		t.Errorf("root after expiry: %d, want 200", res.StatusCode)
	}
}

// Range, If-Range and If-None-Match are answered like nginx, for targets
// and metadata.
func TestRangeAndConditional(t *testing.T) {
	repo := tuftest.New(t)
	img := publish(repo, "1.1.0", 100<<10)
	r, _ := newRelay(t, repo, nil)
	syncRelay(t, r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	target := srv.URL + "/targets/" + repo.Target(imagePath("1.1.0")).File
	res, _ := get(t, srv.Client(), target, nil)
	etag := res.Header.Get("ETag")
	if etag != `"`+tuftest.SHA256(img)+`"` {
		t.Fatalf("ETag %q, want the quoted sha256", etag)
	}
	meta := srv.URL + "/metadata/timestamp.json"
	mres, _ := get(t, srv.Client(), meta, nil)
	for _, tc := range []struct {
		name   string
		url    string
		hdr    map[string]string
		status int
		body   []byte
	}{
		{"range", target, map[string]string{"Range": "bytes=10-19"}, http.StatusPartialContent, img[10:20]},
		{"open range", target, map[string]string{"Range": "bytes=102000-"}, http.StatusPartialContent, img[102000:]},
		{"if-range match", target, map[string]string{"Range": "bytes=5-9", "If-Range": etag}, http.StatusPartialContent, img[5:10]},
		{"if-range stale", target, map[string]string{"Range": "bytes=5-9", "If-Range": `"other"`}, http.StatusOK, img},
		{"if-none-match", target, map[string]string{"If-None-Match": etag}, http.StatusNotModified, nil},
		{"if-none-match other", target, map[string]string{"If-None-Match": `"other"`}, http.StatusOK, img},
		{"unsatisfiable", target, map[string]string{"Range": "bytes=999999-"}, http.StatusRequestedRangeNotSatisfiable, nil},
		{"metadata if-none-match", meta, map[string]string{"If-None-Match": mres.Header.Get("ETag")}, http.StatusNotModified, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, b := get(t, srv.Client(), tc.url, tc.hdr)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.status)
			}
			if tc.body != nil && !bytes.Equal(b, tc.body) {
				t.Fatalf("body of %d bytes differs from the %d expected", len(b), len(tc.body))
			}
		})
	}
}

// Only the names a TUF client asks for are served, GET and HEAD only.
func TestNamesAndMethods(t *testing.T) {
	repo := tuftest.New(t)
	img := publish(repo, "1.1.0", 1024)
	r, _ := newRelay(t, repo, nil)
	syncRelay(t, r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	file := repo.Target(imagePath("1.1.0")).File
	snap := repo.Version(repository.RoleSnapshot)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/metadata/1.root.json", 200},
		{"/metadata/timestamp.json", 200},
		{"/metadata/" + itoa(snap) + ".snapshot.json", 200},
		{"/metadata/" + itoa(repo.Version(repository.RoleTargets)) + ".targets.json", 200},
		{"/metadata/snapshot.json", 404}, // consistent snapshots: versioned names only
		{"/metadata/2.root.json", 404},
		{"/targets/" + file, 200},
		{"/targets/" + imagePath("1.1.0"), 404},                                   // not hash-prefixed
		{"/targets/rootfs/1.1.0/" + strings.Repeat("0", 64) + ".rootfs.img", 404}, // wrong hash
		{"/targets/../metadata/timestamp.json", 404},
		{"/other", 404},
	} {
		res, b := get(t, srv.Client(), srv.URL+tc.path, nil)
		if res.StatusCode != tc.status {
			t.Errorf("GET %s: %d, want %d", tc.path, res.StatusCode, tc.status)
		}
		if tc.path == "/targets/"+file && !bytes.Equal(b, img) {
			t.Errorf("GET %s: wrong bytes", tc.path)
		}
	}
	res, err := srv.Client().Post(srv.URL+"/metadata/timestamp.json", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", res.StatusCode)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// After a root rotation upstream, an edge device that embeds the first
// root walks the chain through the relay with upstream down.
func TestRootRotationServed(t *testing.T) {
	repo := tuftest.New(t)
	publish(repo, "1.1.0", 4096)
	r, _ := newRelay(t, repo, nil)
	syncRelay(t, r)
	repo.RotateKeys(repository.RoleRoot)
	repo.RotateKeys(repository.RoleTimestamp)
	repo.Publish()
	syncRelay(t, r)
	upstreamDown(repo).Store(true)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	if res, _ := get(t, srv.Client(), srv.URL+"/metadata/2.root.json", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("2.root.json: %d, want 200", res.StatusCode)
	}
	e := newEdge(t, repo, nil, srv.URL, repo.URL())
	if v, err := e.update(context.Background()); err != nil || v != "1.1.0" {
		t.Fatalf("update across a root rotation: %q, %v", v, err)
	}
}

// With a chunk pack published upstream, an edge device behind the relay
// (which serves no pack) builds the new image from the chunks it has and
// byte ranges of the image the relay cached, with upstream down.
func TestEdgeAdaptiveDeltaFromRelay(t *testing.T) {
	ctx := context.Background()
	repo, r, e, base, paths := edgeBehindRelay(t)
	next := bytes.Clone(base)
	copy(next[100<<10:], image("1.2.0", 8<<10))
	repo.AddTarget(imagePath("1.2.0"), next, verify.Custom{Component: "rootfs", Version: "1.2.0", Hardware: []string{hw}})
	ix, err := repo.Repository().AddChunkIndex(ctx, imagePath("1.2.0"), bytes.NewReader(next), delta.IndexOptions{}, true)
	if err != nil {
		t.Fatal(err)
	}
	repo.Publish()
	reqs := updateFromRelay(t, repo, r, e, paths, "1.2.0")
	img := "/targets/" + repo.Target(imagePath("1.2.0")).File
	var index, ranges, other int
	for _, p := range reqs {
		switch {
		case p == "/targets/"+repo.Target(ix.Path).File:
			index++
		case strings.HasPrefix(p, img+" bytes="):
			ranges++
		case strings.HasPrefix(p, relay.TargetsPrefix+"chunks/"):
			// the pack, which the relay does not serve
		case strings.HasPrefix(p, relay.TargetsPrefix):
			other++
		}
	}
	if index != 1 || ranges == 0 || other != 0 {
		t.Fatalf("edge requests %q: want the index once and byte ranges of %s only", reqs, img)
	}
	if !bytes.Equal(e.a.Bytes()[:len(next)], next) {
		t.Fatal("slot a does not hold 1.2.0")
	}
}
