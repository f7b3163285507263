package verify_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/verify"
)

// TestIdleCheck walks a device through idle checks: an unchanged
// timestamp costs one request answered 304, a new release is seen at
// once, a root published alone is found at the next full refresh, and an
// expired timestamp is refused even when the server says "not modified".
func TestIdleCheck(t *testing.T) {
	r := newTestRepo(t, true)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.publish()
	dir := t.TempDir()
	now := testEpoch
	clock := func() time.Time { return now }
	c := newClientWith(t, r, dir, func(cfg *verify.Config) { cfg.Now = clock })

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
	c = newClientWith(t, r, dir, func(cfg *verify.Config) { cfg.Now = clock })
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
	before := r.notModified
	_, err := c.Refresh(context.Background())
	if !errors.Is(err, verify.ErrUntrusted) || !errors.Is(err, &metadata.ErrExpiredMetadata{}) {
		t.Errorf("idle check with an expired timestamp: got %v, want ErrUntrusted with ErrExpiredMetadata", err)
	}
	if r.notModified == before {
		t.Error("the expired check did not go through the 304 path")
	}
}
