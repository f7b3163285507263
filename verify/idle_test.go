package verify_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/verify"
)

// TestIdleCheck walks a device through refreshes in the default
// configuration, which is the TUF workflow (5.3 to 5.6): every refresh
// asks for the next root version first, then for timestamp.json; when
// nothing changed that is two requests, a 404 and a 304, and no metadata
// body read.
// A root published without a new timestamp is seen at once, and an
// expired timestamp is refused even when the server says "not modified".
func TestIdleCheck(t *testing.T) {
	r := newTestRepo(t, true)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.publish()
	dir := t.TempDir()
	now := testEpoch
	clock := func() time.Time { return now }
	var bodyBytes atomic.Int64
	withCount := func(cfg *verify.Config) {
		cfg.Now = clock
		cfg.Fetcher = func(ctx context.Context) verify.Fetcher {
			return verify.NewHTTPFetcher(ctx, &http.Client{Transport: bodyCounter{http.DefaultTransport, &bodyBytes}})
		}
	}
	c := newClientWith(t, r, dir, withCount)
	step := func(name string, want []string, wantNotModified int) *verify.Targets {
		t.Helper()
		before, nm := len(r.requested()), r.notModified
		bodyBytes.Store(0)
		got, err := c.Refresh(context.Background())
		if err != nil {
			t.Fatalf("%s: Refresh: %v", name, err)
		}
		if req := r.requested()[before:]; !slices.Equal(req, want) {
			t.Errorf("%s: requests %q, want %q", name, req, want)
		}
		if n := r.notModified - nm; n != wantNotModified {
			t.Errorf("%s: %d answers 304, want %d", name, n, wantNotModified)
		}
		return got
	}
	const ts = "metadata/timestamp.json"
	step("first refresh", []string{"metadata/2.root.json", ts, "metadata/3.snapshot.json", "metadata/3.targets.json"}, 0)
	got := step("idle", []string{"metadata/2.root.json", ts}, 1)
	if n := bodyBytes.Load(); n != 0 {
		t.Errorf("idle check read %d metadata body bytes, want 0", n)
	}
	if !slices.Equal(paths(got.Targets), []string{"app/1.0.0"}) {
		t.Errorf("idle check targets %q, want app/1.0.0", paths(got.Targets))
	}
	c = newClientWith(t, r, dir, withCount) // a restarted process reads the ETag from Dir
	step("idle after a restart", []string{"metadata/2.root.json", ts}, 1)

	r.addTarget("", "app/1.1.0", []byte("two"), customFor("app", "1.1.0", "*"))
	r.publish()
	step("new release", []string{"metadata/2.root.json", ts, "metadata/4.snapshot.json", "metadata/4.targets.json"}, 0)

	// A root published alone (the timestamp unchanged) is seen at once;
	// after a new root the timestamp is fetched whole, not "not modified".
	r.mu.Lock()
	r.root.Signed.Version++
	r.storeRoot()
	r.mu.Unlock()
	got = step("root-only change", []string{"metadata/2.root.json", "metadata/3.root.json", ts}, 0)
	if got.RootVersion != 2 {
		t.Errorf("root version: got %d, want 2", got.RootVersion)
	}
	step("idle again", []string{"metadata/3.root.json", ts}, 1)

	// "Not modified" forever does not freeze the device past expiry.
	now = now.AddDate(2, 0, 0)
	wantExpiredNotModified(t, r, c)
}

// wantExpiredNotModified checks that a check of c, on a clock past the
// timestamp's expiry, fails as expired although r answers it "not
// modified".
func wantExpiredNotModified(t *testing.T, r *testRepo, c *verify.Client) {
	t.Helper()
	before := r.notModified
	_, err := c.Refresh(context.Background())
	if !errors.Is(err, verify.ErrUntrusted) || !errors.Is(err, &metadata.ErrExpiredMetadata{}) {
		t.Errorf("idle check with an expired timestamp: got %v, want ErrUntrusted with ErrExpiredMetadata", err)
	}
	if r.notModified == before {
		t.Error("the expired check did not go through the 304 path")
	}
}

// bodyCounter counts the metadata body bytes a client reads: those of
// 200 responses (a 404 page is read to its end only to reuse the
// connection; a 304 has no body).
type bodyCounter struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (b bodyCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := b.rt.RoundTrip(req)
	if err == nil && res.StatusCode == http.StatusOK {
		res.Body = countedBody{res.Body, b.n}
	}
	return res, err
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestIdleCheckOptIn walks a device through idle checks in the opt-in,
// non-conformant mode (positive FullRefreshInterval): an unchanged
// timestamp costs one request answered 304, a new release is seen at
// once, a root published alone is found at the next full refresh, and an
// expired timestamp is refused even when the server says "not modified".
func TestIdleCheckOptIn(t *testing.T) {
	r := newTestRepo(t, true)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.publish()
	dir := t.TempDir()
	now := testEpoch
	clock := func() time.Time { return now }
	optIn := func(cfg *verify.Config) { cfg.Now, cfg.FullRefreshInterval = clock, verify.DefaultFullRefreshInterval }
	c := newClientWith(t, r, dir, optIn)

	const ts = "metadata/timestamp.json"
	// step refreshes; an idle check must be the timestamp alone, answered
	// 304; a full refresh asks for the timestamp first (answered 304 when
	// unchanged), then walks the root chain.
	step := func(name string, idle bool, wantNotModified int) *verify.Targets {
		t.Helper()
		before, nm := len(r.requested()), r.notModified
		got, err := c.Refresh(context.Background())
		if err != nil {
			t.Fatalf("%s: Refresh: %v", name, err)
		}
		req := r.requested()[before:]
		walked := slices.ContainsFunc(req, func(p string) bool { return strings.HasSuffix(p, ".root.json") })
		switch {
		case idle && !slices.Equal(req, []string{ts}):
			t.Errorf("%s: requests %q, want only %s", name, req, ts)
		case !idle && (len(req) == 0 || req[0] != ts || !walked):
			t.Errorf("%s: requests %q, want the timestamp, then the root walk", name, req)
		}
		if n := r.notModified - nm; n != wantNotModified {
			t.Errorf("%s: %d answers 304, want %d", name, n, wantNotModified)
		}
		return got
	}
	step("first refresh", false, 0)
	got := step("idle", true, 1)
	if !slices.Equal(paths(got.Targets), []string{"app/1.0.0"}) {
		t.Errorf("idle check targets %q, want app/1.0.0", paths(got.Targets))
	}
	// A restarted process reads the validator from Dir.
	c = newClientWith(t, r, dir, optIn)
	step("idle after a restart", true, 1)

	r.addTarget("", "app/1.1.0", []byte("two"), customFor("app", "1.1.0", "*"))
	r.publish()
	got = step("new release", false, 0)
	if !slices.Equal(paths(got.Targets), []string{"app/1.0.0", "app/1.1.0"}) {
		t.Errorf("after the release targets %q", paths(got.Targets))
	}

	// A root published alone (the timestamp unchanged) waits for the next
	// full refresh: idle checks within the interval do not ask for it.
	r.mu.Lock()
	r.root.Signed.Version++
	r.storeRoot()
	r.mu.Unlock()
	step("idle after a root-only change", true, 1)
	now = now.Add(verify.DefaultFullRefreshInterval + time.Minute)
	got = step("full refresh after the interval", false, 1)
	if got.RootVersion != 2 {
		t.Errorf("root version after the full refresh: got %d, want 2", got.RootVersion)
	}
	step("idle again", true, 1)

	// "Not modified" forever does not freeze the device past expiry.
	now = now.AddDate(2, 0, 0)
	wantExpiredNotModified(t, r, c)
}
