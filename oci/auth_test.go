package oci

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenRegistry is a registry that wants a bearer token from its token
// service, as Docker Hub, GHCR and Harbor do; it serves one blob.
type tokenRegistry struct {
	blob []byte
	// stallAt > 0: the first blob response stops after this many bytes,
	// a resumed one (Range) after its headers, and nothing more is sent
	// (until the client goes away).
	stallAt int64
	// busy: the first busy blob requests are answered 503 with
	// Retry-After: 0.
	busy int

	mu     sync.Mutex
	scopes []string
	blobs  int // blob requests
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
		tr.serveBlob(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (tr *tokenRegistry) serveBlob(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	tr.blobs++
	busy := tr.blobs <= tr.busy
	tr.mu.Unlock()
	switch {
	case busy:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	case tr.stallAt > 0:
		size := int64(len(tr.blob))
		if from, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
			start, _ := strconv.ParseInt(strings.TrimSuffix(from, "-"), 10, 64)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, size-1, size))
			w.Header().Set("Content-Length", strconv.FormatInt(size-start, 10))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.Write(tr.blob[:tr.stallAt])
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	default:
		http.ServeContent(w, r, "blob", time.Time{}, strings.NewReader(string(tr.blob)))
	}
}

// TestTokenAuth: blobs are fetched through the registry's token auth (the
// pull scope of the repository), with Range resume working behind it.
func TestTokenAuth(t *testing.T) {
	tr := &tokenRegistry{blob: []byte(strings.Repeat("layer bytes ", 1000))}
	// A partial download from an earlier attempt: only the rest moves.
	s, d, n, err := fetchFrom(t, context.Background(), tr, RegistryConfig{Insecure: true}, 5000)
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
