package s3publish

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/repository/s3publish/s3test"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// get does one GET of url with the given request headers.
func get(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// TestServedFromBucket checks what devices rely on from the bucket as
// SeaweedFS serves it to anonymous GETs: Range on target files, 304 for
// an unchanged timestamp.json, 404 for the next root version, and the
// Cache-Control set at upload.
func TestServedFromBucket(t *testing.T) {
	b := s3test.New(t)
	tr := newTestRepo(t)
	img := image("served", 64<<10)
	target := tr.release(t, "1.1.0", img)
	if _, err := publisher(t, b, "s", nil, 0, tr.clock).Publish(context.Background(), tr.Repo, Options{}); err != nil {
		t.Fatal(err)
	}
	base := b.URL("s")
	resp, body := get(t, base+"/targets/"+target.File, map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, img[1000:2000]) {
		t.Errorf("Range GET: %s, %d bytes; want 206 and bytes 1000-1999", resp.Status, len(body))
	}
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
		t.Errorf("target Cache-Control %q", got)
	}
	resp, _ = get(t, base+"/metadata/timestamp.json", nil)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || etag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("timestamp.json: %s, ETag %q, Cache-Control %q", resp.Status, etag, resp.Header.Get("Cache-Control"))
	}
	resp, body = get(t, base+"/metadata/timestamp.json", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("conditional timestamp.json: %s, %d bytes; want 304, none", resp.Status, len(body))
	}
	if resp, _ = get(t, base+"/metadata/2.root.json", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("next root version: %s, want 404", resp.Status)
	}
}

// countingTransport counts requests and 304 answers.
type countingTransport struct {
	mu            sync.Mutex
	requests, nms int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	if err == nil && resp.StatusCode == http.StatusNotModified {
		c.nms++
	}
	return resp, err
}

// TestDeviceUpdatesFromBucket: a device built from the library, trusting
// only 1.root.json, installs a release published to the bucket and
// commits it; then its idle check costs two requests, one a 304.
func TestDeviceUpdatesFromBucket(t *testing.T) {
	b := s3test.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tr := newTestRepo(t)
	want := image("device", 200<<10)
	tr.release(t, "1.1.0", want)
	if _, err := publisher(t, b, "fleet", nil, 0, tr.clock).Publish(ctx, tr.Repo, Options{}); err != nil {
		t.Fatal(err)
	}
	base := b.URL("fleet")
	dev := t.TempDir()
	img := filepath.Join(dev, "rootfs.img")
	if err := os.WriteFile(img, []byte("factory image 1.0.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func() *updater.Updater {
		t.Helper()
		file, err := slots.NewFile(img)
		if err != nil {
			t.Fatal(err)
		}
		u, err := updater.New(updater.Config{
			Hardware: "board-a", StateDir: filepath.Join(dev, "state"), TrustedRoot: tr.root,
			MetadataURL: base + "/metadata/", TargetsURL: base + "/targets/",
			Components: []updater.Component{{Name: "rootfs", Slots: file.Slots(), Boot: file, FactoryVersion: "1.0.0"}},
			Restart:    func(context.Context, string) error { return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	u := start()
	ups, err := u.Check(ctx)
	if err != nil || len(ups) != 1 || ups[0].To != "1.1.0" {
		t.Fatalf("device check = %+v, %v; want one update to 1.1.0", ups, err)
	}
	if err := u.Install(ctx, ups[0]); err != nil {
		t.Fatalf("device install: %v", err)
	}
	u.Close()
	u = start()
	defer u.Close()
	if err := u.Confirm(ctx); err != nil {
		t.Fatalf("device confirm: %v", err)
	}
	if got, err := os.ReadFile(img); err != nil || !bytes.Equal(got, want) {
		t.Errorf("running image: %d bytes, %v; want the published 1.1.0", len(got), err)
	}

	// The idle check of a verify client: the next root's 404 and a 304.
	ct := &countingTransport{}
	c, err := verify.New(verify.Config{
		Root: tr.root, MetadataURL: base + "/metadata/", TargetsURL: base + "/targets/", Dir: t.TempDir(),
		Fetcher: func(ctx context.Context) verify.Fetcher {
			return verify.NewHTTPFetcher(ctx, &http.Client{Transport: ct})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ct.requests, ct.nms = 0, 0
	if _, err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ct.requests != 2 || ct.nms != 1 {
		t.Errorf("idle check: %d requests, %d of them 304; want 2 and 1", ct.requests, ct.nms)
	}
}

// TestNoHalfRelease publishes releases while a device refreshes after
// every single object written: each refresh verifies, sees the previous
// or the new release whole (its newest target's file is there), and the
// versions it sees never go back.
func TestNoHalfRelease(t *testing.T) {
	b := s3test.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tr := newTestRepo(t)
	tr.release(t, "1.0.0", image("v100", 5000))
	if _, err := publisher(t, b, "live", nil, 0, tr.clock).Publish(ctx, tr.Repo, Options{}); err != nil {
		t.Fatal(err)
	}
	base := b.URL("live")
	c, err := verify.New(verify.Config{
		Root: tr.root, MetadataURL: base + "/metadata/", TargetsURL: base + "/targets/", Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var seen []int64
	poll := func() error {
		ts, err := c.Refresh(ctx)
		if err != nil {
			return err
		}
		seen = append(seen, ts.TargetsVersion)
		newest := ts.Targets[len(ts.Targets)-1] // paths sort by version here
		resp, body := get(t, newest.URL, nil)
		if resp.StatusCode != http.StatusOK || int64(len(body)) != newest.Length {
			return fmt.Errorf("targets v%d names %s: %s, %d bytes", ts.TargetsVersion, newest.Path, resp.Status, len(body))
		}
		return nil
	}
	for _, v := range []string{"1.1.0", "1.2.0", "1.3.0"} {
		tr.release(t, v, image(v, 5000))
		rec := newRecorder(b.Name)
		var errs []error
		rec.after = func() {
			if err := poll(); err != nil {
				errs = append(errs, err)
			}
		}
		if _, err := publisher(t, b, "live", rec, 1, tr.clock).Publish(ctx, tr.Repo, Options{}); err != nil {
			t.Fatal(err)
		}
		for _, err := range errs {
			t.Errorf("publishing %s: a device's refresh failed: %v", v, err)
		}
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Errorf("targets versions seen went back: %v", seen)
			break
		}
	}
	if n := len(seen); n == 0 || seen[n-1] != seen[0]+3 {
		t.Errorf("targets versions seen %v, want the last three releases too", seen)
	}
}
