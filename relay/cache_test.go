package relay_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/relay"
)

// An upstream that drops the connection mid-prefetch costs a resume with
// Range, not a new download: within one prefetch (download client
// retries), and across prefetches (the .part file).
func TestPrefetchResumesAfterDrops(t *testing.T) {
	for _, tc := range []struct {
		name     string
		retryMax int
		drops    int
		attempts int // prefetches until the target is cached
	}{
		{"retries within one prefetch", 3, 2, 1},
		{"next prefetch resumes the part file", -1, 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := tuftest.New(t)
			img := publish(repo, "1.1.0", 512<<10)
			urlPath := "/targets/" + repo.Target(imagePath("1.1.0")).File
			mw, ranges := cutAfter(urlPath, tc.drops, 100<<10)
			repo.Wrap(mw)
			r, dir := newRelay(t, repo, func(c *relay.Config) { c.RetryMax = tc.retryMax })
			if err := r.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			var err error
			for range tc.attempts {
				err = r.Prefetch(context.Background())
			}
			if err != nil {
				t.Fatalf("prefetch after %d attempts: %v", tc.attempts, err)
			}
			want := []string{"", "bytes=102400-", "bytes=204800-"}
			if got := ranges(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("upstream Range headers %q, want %q", got, want)
			}
			if st := r.Stats(); st.UplinkTargetBytes != int64(len(img)) {
				t.Errorf("uplink bytes %d, want %d (one copy)", st.UplinkTargetBytes, len(img))
			}
			if b, err := os.ReadFile(cacheFile(dir, img)); err != nil || string(b) != string(img) {
				t.Fatalf("cached file: %v, equal %v", err, string(b) == string(img))
			}
		})
	}
}

// A target no signed metadata names any more is evicted at the next
// refresh; the new release is prefetched.
func TestEvictUnsigned(t *testing.T) {
	repo := tuftest.New(t)
	old := publish(repo, "1.1.0", 64<<10)
	r, dir := newRelay(t, repo, nil)
	syncRelay(t, r)
	if !exists(cacheFile(dir, old)) {
		t.Fatal("1.1.0 not cached")
	}
	repo.RemoveTarget(imagePath("1.1.0"))
	img := publish(repo, "1.2.0", 64<<10)
	syncRelay(t, r)
	if exists(cacheFile(dir, old)) {
		t.Error("1.1.0 still cached after the metadata dropped it")
	}
	if !exists(cacheFile(dir, img)) {
		t.Error("1.2.0 not cached")
	}
}

// Beyond MaxCacheBytes the least recently used target goes.
func TestEvictLRU(t *testing.T) {
	repo := tuftest.New(t)
	const n = 100 << 10
	files := map[string][]byte{"a": image("a", n), "b": image("b", n), "c": image("c", n)}
	for name, data := range files {
		repo.AddTarget("files/"+name, data, nil) // no switchback custom: fetched on demand
	}
	repo.Publish()
	r, dir := newRelay(t, repo, func(c *relay.Config) { c.MaxCacheBytes = 2*n + n/2 })
	syncRelay(t, r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	for _, name := range []string{"a", "b", "a", "c"} { // b is the least recently used when c comes
		res, body := get(t, srv.Client(), srv.URL+"/targets/"+repo.Target("files/"+name).File, nil)
		if res.StatusCode != http.StatusOK || string(body) != string(files[name]) {
			t.Fatalf("GET %s: %d, want 200 and its bytes", name, res.StatusCode)
		}
	}
	for name, want := range map[string]bool{"a": true, "b": false, "c": true} {
		if got := exists(cacheFile(dir, files[name])); got != want {
			t.Errorf("%s cached = %v, want %v", name, got, want)
		}
	}
	if st := r.Stats(); st.CacheBytes > 2*n+n/2 {
		t.Errorf("cache holds %d bytes, limit %d", st.CacheBytes, 2*n+n/2)
	}
}

// A prefetch that cannot fit reports ErrCacheFull.
func TestPrefetchCacheFull(t *testing.T) {
	repo := tuftest.New(t)
	publish(repo, "1.1.0", 64<<10)
	r, _ := newRelay(t, repo, func(c *relay.Config) { c.MaxCacheBytes = 1 << 10 })
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Prefetch(context.Background()); !errors.Is(err, relay.ErrCacheFull) {
		t.Fatalf("err = %v, want ErrCacheFull", err)
	}
}
