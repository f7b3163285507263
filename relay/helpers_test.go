package relay_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

const hw = "edge-a"

// image is the n-byte image of a release (tuftest.Image).
var image = tuftest.Image

func imagePath(version string) string { return "rootfs/" + version + "/rootfs.img" }

// publish adds and publishes one release of rootfs for hw.
func publish(repo *tuftest.Repo, version string, n int) []byte {
	img := image(version, n)
	repo.AddTarget(imagePath(version), img, verify.Custom{Component: "rootfs", Version: version, Hardware: []string{hw}})
	repo.Publish()
	return img
}

// newRelay makes a relay over repo (nil: mod sets the upstream) in a
// temporary directory.
func newRelay(t testing.TB, repo *tuftest.Repo, mod func(*relay.Config)) (*relay.Relay, string) {
	t.Helper()
	cfg := relay.Config{Dir: t.TempDir(), Hardware: []string{hw}, MissWait: 5 * time.Second, StallTimeout: 5 * time.Second}
	if repo != nil {
		cfg.Root, cfg.MetadataURL, cfg.TargetsURL = repo.Root(), repo.MetadataURL(), repo.TargetsURL()
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, cfg.Dir
}

// sync refreshes and prefetches, failing the test on error.
func syncRelay(t testing.TB, r *relay.Relay) {
	t.Helper()
	ctx := context.Background()
	if err := r.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if err := r.Prefetch(ctx); err != nil {
		t.Fatalf("Prefetch: %v", err)
	}
}

// serveTLS serves r over HTTPS with a certificate of the gateway CA in
// dir, for 127.0.0.1.
func serveTLS(t testing.TB, r http.Handler, ca *relay.CA, clientCerts bool) *httptest.Server {
	t.Helper()
	tc, err := ca.ServerTLS([]string{"127.0.0.1", "localhost"}, clientCerts)
	if err != nil {
		t.Fatalf("ServerTLS: %v", err)
	}
	srv := httptest.NewUnstartedServer(r)
	srv.TLS = tc
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func loadCA(t testing.TB) *relay.CA {
	t.Helper()
	ca, err := relay.LoadCA(filepath.Join(t.TempDir(), "tls"), nil)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	return ca
}

// edge is an edge device: a real updater with two in-memory slots.
type edge struct {
	cfg  updater.Config
	u    *updater.Updater
	a, b *slotstest.MemSlot
	boot *slotstest.FakeBoot
}

// newEdge makes an edge device whose first mirror is base (the relay) and
// whose next mirrors are the others.
func newEdge(t testing.TB, repo *tuftest.Repo, mod func(*updater.Config), base string, mirrors ...string) *edge {
	t.Helper()
	e := &edge{boot: slotstest.NewFakeBoot("a", "b")}
	e.a = slotstest.NewMemSlot("a", 16<<20, slotstest.WithBoot(e.boot))
	e.b = slotstest.NewMemSlot("b", 16<<20, slotstest.WithBoot(e.boot))
	cfg := updater.Config{
		Hardware: hw, StateDir: t.TempDir(), TrustedRoot: repo.Root(),
		MetadataURL: base + relay.MetadataPrefix, TargetsURL: base + relay.TargetsPrefix,
		Components:   []updater.Component{{Name: "rootfs", Slots: []slots.Slot{e.a, e.b}, Boot: e.boot, FactoryVersion: "1.0.0"}},
		StallTimeout: 5 * time.Second,
		// The test reboots the device itself (reboot).
		Restart: func(context.Context, string) error { return nil },
	}
	for _, m := range mirrors {
		cfg.MetadataMirrors = append(cfg.MetadataMirrors, m+"/metadata/")
		cfg.TargetsMirrors = append(cfg.TargetsMirrors, m+"/targets/")
	}
	if mod != nil {
		mod(&cfg)
	}
	u, err := updater.New(cfg)
	if err != nil {
		t.Fatalf("updater.New: %v", err)
	}
	e.u, e.cfg = u, cfg
	t.Cleanup(func() { e.u.Close() })
	return e
}

// reboot runs the bootloader and starts a new updater on the same state,
// which confirms the trial.
func (e *edge) reboot(ctx context.Context) error {
	if err := e.boot.Reboot(); err != nil {
		return err
	}
	e.u.Close() // the process ends with the reboot
	u, err := updater.New(e.cfg)
	if err != nil {
		return err
	}
	e.u = u
	return u.Confirm(ctx)
}

// recordPaths wraps h and records the paths requested, each followed by
// " <Range header>" when there is one.
func recordPaths(h http.Handler) (http.Handler, func() []string) {
	var mu sync.Mutex
	var paths []string
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			mu.Lock()
			p := req.URL.Path
			if rg := req.Header.Get("Range"); rg != "" {
				p += " " + rg
			}
			paths = append(paths, p)
			mu.Unlock()
			h.ServeHTTP(w, req)
		}), func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), paths...)
		}
}

// edgeBehindRelay is an edge device whose only mirror is a relay over a
// new repository, and which has installed and confirmed release 1.1.0
// (base, 512 KiB) through it; paths lists the requests the relay has
// received.
func edgeBehindRelay(t *testing.T) (repo *tuftest.Repo, r *relay.Relay, e *edge, base []byte, paths func() []string) {
	t.Helper()
	ctx := context.Background()
	repo = tuftest.New(t)
	base = publish(repo, "1.1.0", 512<<10)
	r, _ = newRelay(t, repo, nil)
	syncRelay(t, r)
	h, paths := recordPaths(r)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e = newEdge(t, repo, nil, srv.URL)
	if _, err := e.update(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.reboot(ctx); err != nil {
		t.Fatalf("confirm 1.1.0: %v", err)
	}
	return repo, r, e, base, paths
}

// updateFromRelay syncs r with repo, cuts the link to repo and updates e
// to version from r; it returns the requests r received for the update.
func updateFromRelay(t *testing.T, repo *tuftest.Repo, r *relay.Relay, e *edge, paths func() []string, version string) []string {
	t.Helper()
	syncRelay(t, r)
	upstreamDown(repo).Store(true)
	before := len(paths())
	if v, err := e.update(context.Background()); err != nil || v != version {
		t.Fatalf("update to %s with upstream down: %q, %v", version, v, err)
	}
	return paths()[before:]
}

// update checks and installs the one update; it returns the version armed.
func (e *edge) update(ctx context.Context) (string, error) {
	ups, err := e.u.Check(ctx)
	if err != nil {
		return "", err
	}
	if len(ups) != 1 {
		return "", errors.New("want exactly one update")
	}
	if err := e.u.Install(ctx, ups[0]); err != nil {
		return "", err
	}
	return ups[0].To, nil
}

// get fetches url with the given headers and returns status and body.
func get(t testing.TB, c *http.Client, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return res, b
}

// cutAfter makes the first n requests whose path is p end their body
// after cut bytes, by closing the connection.
func cutAfter(p string, n int, cut int64) (func(http.Handler) http.Handler, func() []string) {
	var mu sync.Mutex
	var ranges []string
	left := n
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path != p {
				next.ServeHTTP(w, req)
				return
			}
			mu.Lock()
			ranges = append(ranges, req.Header.Get("Range"))
			doCut := left > 0
			left--
			mu.Unlock()
			if !doCut {
				next.ServeHTTP(w, req)
				return
			}
			next.ServeHTTP(&cutWriter{ResponseWriter: w, left: cut}, req)
		})
	}
	return mw, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), ranges...)
	}
}

// cutWriter passes through left body bytes, then kills the connection.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, _ := c.ResponseWriter.Write(p)
	c.left -= int64(n)
	if c.left == 0 {
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		if hj, ok := c.ResponseWriter.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
		panic(http.ErrAbortHandler)
	}
	return n, nil
}

// upstreamDown makes every request to repo fail as if the link were cut.
func upstreamDown(repo *tuftest.Repo) *atomic.Bool {
	down := new(atomic.Bool)
	repo.Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if down.Load() {
				hj, ok := w.(http.Hijacker)
				if ok {
					if conn, _, err := hj.Hijack(); err == nil {
						conn.(*net.TCPConn).SetLinger(0)
						conn.Close()
						return
					}
				}
				panic(http.ErrAbortHandler)
			}
			next.ServeHTTP(w, req)
		})
	})
	return down
}

// cacheFile returns the path of a target in the relay's cache.
func cacheFile(dir string, data []byte) string {
	return filepath.Join(dir, "cache", tuftest.SHA256(data))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
