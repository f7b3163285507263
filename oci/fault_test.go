package oci

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// cuttingProxy forwards to the registry and drops the connection after cut
// bytes of the first response to each blob; it records the Range headers.
type cuttingProxy struct {
	target string
	cut    int64
	stall  bool // stall (until the client gives up) instead of cutting
	mu     sync.Mutex
	seen   map[string]bool
	ranges []string
}

func (p *cuttingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.target+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	blob := strings.Contains(r.URL.Path, "/blobs/")
	p.mu.Lock()
	first := blob && !p.seen[r.URL.Path]
	if blob {
		p.seen[r.URL.Path] = true
		p.ranges = append(p.ranges, r.Header.Get("Range"))
	}
	p.mu.Unlock()
	if first {
		io.CopyN(w, res.Body, p.cut)
		w.(http.Flusher).Flush()
		if p.stall {
			<-r.Context().Done()
			return
		}
		panic(http.ErrAbortHandler) // drops the connection mid-blob
	}
	io.Copy(w, res.Body)
}

// TestResumeAfterCut: a registry that drops the connection mid-blob; the
// pull resumes with Range and moves each byte once.
func TestResumeAfterCut(t *testing.T) {
	host := testRegistry(t)
	repo := randomName("test/cut-")
	big := make([]byte, 1<<20)
	rand.Read(big)
	img := pushImage(t, host, repo, "v1", []string{"/bin/true"}, makeLayer(t, file("big", string(big))))
	p := &cuttingProxy{target: host, cut: 100 << 10, seen: map[string]bool{}}
	srv := httptest.NewServer(p)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c := newTestComponent(t, u.Host, verify.OCI{Repository: repo})
	if _, err := armTrial(t, c, img.manifest); err != nil {
		t.Fatal(err)
	}
	if got, want := c.LastPull().Fetched, img.config.Size+img.layers[0].Size; got != want {
		t.Errorf("fetched %d bytes, want each byte once: %d", got, want)
	}
	var resumed bool
	for _, r := range p.ranges {
		resumed = resumed || r == "bytes=102400-"
	}
	if !resumed {
		t.Errorf("no request resumed at the cut; Range headers: %q", p.ranges)
	}
}

// TestResumePartial: a partial blob left by an earlier process (killed
// mid-download) is resumed with Range: only the rest crosses the network.
func TestResumePartial(t *testing.T) {
	host := testRegistry(t)
	repo := randomName("test/partial-")
	big := make([]byte, 256<<10)
	rand.Read(big)
	layer := makeLayer(t, file("big", string(big)))
	img := pushImage(t, host, repo, "v1", []string{"/bin/true"}, layer)
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(context.Background(), RegistryConfig{Host: host, Repository: repo})
	if err != nil {
		t.Fatal(err)
	}
	const have = 100 << 10
	if err := os.WriteFile(s.Path(img.layers[0].Digest)+".part", layer[:have], 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := s.Fetch(context.Background(), reg, img.layers[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(layer) - have); n != want {
		t.Errorf("fetched %d bytes, want the rest only: %d", n, want)
	}
	if !s.Has(img.layers[0]) {
		t.Error("the blob is not in the store")
	}
	// A partial file whose prefix is wrong fails the digest and is removed.
	bad := append([]byte{}, layer[:have]...)
	bad[0] ^= 1
	os.Remove(s.Path(img.layers[0].Digest))
	os.WriteFile(s.Path(img.layers[0].Digest)+".part", bad, 0o644)
	if _, err := s.Fetch(context.Background(), reg, img.layers[0]); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("corrupt partial: %v, want ErrDigestMismatch", err)
	}
	if _, err := os.Stat(s.Path(img.layers[0].Digest) + ".part"); !os.IsNotExist(err) {
		t.Errorf("the corrupt partial file stays: %v", err)
	}
}

// TestStallResumes: a registry that stops sending mid-blob is dropped
// after StallTimeout, and the fetch resumes where it stopped.
func TestStallResumes(t *testing.T) {
	host := testRegistry(t)
	repo := randomName("test/stall-")
	big := make([]byte, 512<<10)
	rand.Read(big)
	layer := makeLayer(t, file("big", string(big)))
	img := pushImage(t, host, repo, "v1", []string{"/bin/true"}, layer)
	p := &cuttingProxy{target: host, cut: 64 << 10, stall: true, seen: map[string]bool{}}
	srv := httptest.NewServer(p)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	reg, err := NewRegistry(context.Background(), RegistryConfig{Host: u.Host, Repository: repo, StallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Fetch(context.Background(), reg, img.layers[0])
	if err != nil {
		t.Fatal(err)
	}
	if n != img.layers[0].Size || !s.Has(img.layers[0]) {
		t.Errorf("fetched %d bytes (present %v), want each byte once: %d", n, s.Has(img.layers[0]), img.layers[0].Size)
	}
	if len(p.ranges) != 2 || p.ranges[1] != "bytes=65536-" {
		t.Errorf("requests' Range headers %q, want a resume at 65536", p.ranges)
	}
}
