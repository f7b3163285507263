package oci

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenRegistry is a registry that wants a bearer token from its token
// service, as Docker Hub, GHCR and Harbor do; it serves one blob.
type tokenRegistry struct {
	blob   []byte
	mu     sync.Mutex
	scopes []string
}

func (tr *tokenRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/token":
		tr.mu.Lock()
		tr.scopes = append(tr.scopes, r.URL.Query().Get("scope"))
		tr.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"token":"let-me-in"}`))
	case r.Header.Get("Authorization") != "Bearer let-me-in":
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token",service="test-registry"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
	case r.URL.Path == "/v2/":
		w.WriteHeader(http.StatusOK)
	case r.URL.Path == "/v2/apps/gw/blobs/"+digestOf(tr.blob):
		http.ServeContent(w, r, "blob", time.Time{}, strings.NewReader(string(tr.blob)))
	default:
		http.NotFound(w, r)
	}
}

// TestTokenAuth: blobs are fetched through the registry's token auth (the
// pull scope of the repository), with Range resume working behind it.
func TestTokenAuth(t *testing.T) {
	tr := &tokenRegistry{blob: []byte(strings.Repeat("layer bytes ", 1000))}
	srv := httptest.NewServer(tr)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	reg, err := NewRegistry(context.Background(), RegistryConfig{Host: u.Host, Repository: "apps/gw", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := Descriptor{Digest: digestOf(tr.blob), Size: int64(len(tr.blob))}
	// A partial download from an earlier attempt: only the rest moves.
	if err := os.WriteFile(s.Path(d.Digest)+".part", tr.blob[:5000], 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := s.Fetch(context.Background(), reg, d)
	if err != nil {
		t.Fatal(err)
	}
	if n != d.Size-5000 || !s.Has(d) {
		t.Errorf("fetched %d bytes (present %v), want the rest: %d", n, s.Has(d), d.Size-5000)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.scopes) == 0 || tr.scopes[0] != "repository:apps/gw:pull" {
		t.Errorf("token scopes asked: %q, want repository:apps/gw:pull", tr.scopes)
	}
}
