package oci

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/download"
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
	// tokenAnswers are the statuses of the first token requests in turn
	// (200: the token; 429 comes with Retry-After: 0); later ones get the
	// token.
	tokenAnswers []int
	// expired: the first expired blob requests are answered 401 with a
	// challenge, as when a token expired, whatever their token.
	expired int
	// stallPing, stallToken: the ping, or the token service, answers
	// nothing (until the client goes away).
	stallPing, stallToken bool
	// seen, when set, is called first thing for every request.
	seen func(*http.Request)

	mu     sync.Mutex
	scopes []string // of each token request
	blobs  int      // blob requests
}

func (tr *tokenRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tr.seen != nil {
		tr.seen(r)
	}
	blobPath := "/v2/apps/gw/blobs/" + digestOf(tr.blob)
	if r.URL.Path == blobPath {
		tr.mu.Lock()
		tr.blobs++
		tr.mu.Unlock()
	}
	switch {
	case r.URL.Path == "/token":
		tr.serveToken(w, r)
	case r.URL.Path == "/v2/" && tr.stallPing:
		<-r.Context().Done()
	case r.Header.Get("Authorization") != "Bearer let-me-in" || (r.URL.Path == blobPath && tr.expire()):
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token",service="test-registry"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
	case r.URL.Path == "/v2/":
		w.WriteHeader(http.StatusOK)
	case r.URL.Path == blobPath:
		tr.serveBlob(w, r)
	default:
		http.NotFound(w, r)
	}
}

// expire reports whether this blob request is answered as if its token
// expired.
func (tr *tokenRegistry) expire() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.expired > 0 {
		tr.expired--
		return true
	}
	return false
}

func (tr *tokenRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	tr.scopes = append(tr.scopes, r.URL.Query().Get("scope"))
	status := http.StatusOK
	if n := len(tr.scopes); n <= len(tr.tokenAnswers) {
		status = tr.tokenAnswers[n-1]
	}
	tr.mu.Unlock()
	switch {
	case tr.stallToken:
		<-r.Context().Done()
	case status == http.StatusOK:
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"token":"let-me-in"}`))
	case status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "0")
		fallthrough
	default:
		http.Error(w, "busy", status)
	}
}

// counts returns how many token and blob requests reached the registry.
func (tr *tokenRegistry) counts() (tokens, blobs int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.scopes), tr.blobs
}

// blobRequests is how many blob requests reached the registry.
func (tr *tokenRegistry) blobRequests() int {
	_, n := tr.counts()
	return n
}

func (tr *tokenRegistry) serveBlob(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
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

// TestAuthRetries: the registry's auth requests are retried like every
// other request of the device: a token service that answers 503, then
// 429 with Retry-After, before the token, and one that answers 503 when
// a token expired mid-pull, cost retries of the token request alone
// (the blob is asked for again only once its new token is there). Before
// the auth requests went through the download client, the first case
// failed in NewRegistry, and in the second the refresh that failed was
// not asked again (two token requests): the blob request was retried
// instead, with its old token.
func TestAuthRetries(t *testing.T) {
	blob := []byte(strings.Repeat("layer bytes ", 1000))
	tests := []struct {
		name                  string
		tr                    *tokenRegistry
		wantTokens, wantBlobs int
	}{
		{name: "first token 503 then 429", tr: &tokenRegistry{blob: blob, tokenAnswers: []int{503, 429}},
			wantTokens: 3, wantBlobs: 1},
		{name: "refresh 503", tr: &tokenRegistry{blob: blob, expired: 1, tokenAnswers: []int{200, 503}},
			wantTokens: 3, wantBlobs: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, d, _, err := fetchFrom(t, context.Background(), tt.tr, RegistryConfig{}, 0)
			if err != nil || !s.Has(d) {
				t.Fatalf("fetch: %v (present %v), want the blob", err, s.Has(d))
			}
			if tokens, blobs := tt.tr.counts(); tokens != tt.wantTokens || blobs != tt.wantBlobs {
				t.Errorf("token requests %d, blob requests %d; want %d and %d", tokens, blobs, tt.wantTokens, tt.wantBlobs)
			}
		})
	}
}

// TestAuthDeadline: a ping or a token service that never answers ends
// NewRegistry with download.ErrDeadline after MetadataTimeout, or with
// download.ErrStalled after StallTimeout once the retries are spent,
// rather than holding it. Before the auth requests went through the
// download client, NewRegistry waited until the test's own context ended.
func TestAuthDeadline(t *testing.T) {
	tests := []struct {
		name    string
		tr      *tokenRegistry
		cfg     RegistryConfig
		wantErr error
	}{
		{name: "ping, deadline", tr: &tokenRegistry{stallPing: true},
			cfg: RegistryConfig{MetadataTimeout: 300 * time.Millisecond}, wantErr: download.ErrDeadline},
		{name: "token, deadline", tr: &tokenRegistry{stallToken: true},
			cfg: RegistryConfig{MetadataTimeout: 300 * time.Millisecond}, wantErr: download.ErrDeadline},
		{name: "ping, stall", tr: &tokenRegistry{stallPing: true},
			cfg: RegistryConfig{StallTimeout: 100 * time.Millisecond, RetryMax: 1}, wantErr: download.ErrStalled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := registryFor(t, ctx, tt.tr, tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("NewRegistry: %v, want %v", err, tt.wantErr)
			}
			t.Log(err)
		})
	}
}

// TestAuthPause: Pause is asked before the ping and the token request as
// before every other request, and a Pause that refuses stops NewRegistry
// with its error before any request. Before the auth requests went
// through the download client, the ping and the token request were sent
// without Pause.
func TestAuthPause(t *testing.T) {
	errMetered := errors.New("link metered")
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			var pauses, requests atomic.Int32
			var unpaused []string // requests that came with no Pause of their own
			var mu sync.Mutex
			tr := &tokenRegistry{blob: []byte("layer"), seen: func(r *http.Request) {
				if requests.Add(1) > pauses.Load() {
					mu.Lock()
					unpaused = append(unpaused, r.URL.Path)
					mu.Unlock()
				}
			}}
			pause := func(context.Context) error {
				pauses.Add(1)
				if refuse {
					return errMetered
				}
				return nil
			}
			s, d, _, err := fetchFromErr(t, tr, RegistryConfig{Pause: pause})
			if refuse {
				if !errors.Is(err, errMetered) || requests.Load() != 0 {
					t.Fatalf("NewRegistry: %v after %d requests, want %v before any", err, requests.Load(), errMetered)
				}
				return
			}
			if err != nil || !s.Has(d) {
				t.Fatalf("fetch: %v (present %v)", err, s.Has(d))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(unpaused) != 0 || requests.Load() < 3 {
				t.Errorf("of %d requests (ping, token, blob), these came without a Pause: %q", requests.Load(), unpaused)
			}
		})
	}
}

// fetchFromErr is fetchFrom with the error of NewRegistry returned rather
// than fatal.
func fetchFromErr(t *testing.T, tr *tokenRegistry, cfg RegistryConfig) (*Store, Descriptor, int64, error) {
	t.Helper()
	reg, err := registryFor(t, context.Background(), tr, cfg)
	if err != nil {
		return nil, Descriptor{}, 0, err
	}
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := Descriptor{Digest: digestOf(tr.blob), Size: int64(len(tr.blob))}
	n, err := s.Fetch(context.Background(), reg, d)
	return s, d, n, err
}

// TestBlobNotRetriedTwice: a blob request that fails with 503 is retried
// by the download client alone, not once more by the auth requests' rules
// under it: one 503 costs one more request, and a blob that keeps failing
// is asked for RetryMax+1 times, not (RetryMax+1)². This guards the fix
// that sent the auth requests through the download client's rules (a
// RoundTripper that retried every request failed it with 9 requests); it
// passed before that fix too.
func TestBlobNotRetriedTwice(t *testing.T) {
	blob := []byte(strings.Repeat("layer bytes ", 1000))
	tests := []struct {
		name      string
		busy      int
		retryMax  int
		wantOK    bool
		wantBlobs int
	}{
		{name: "503 once", busy: 1, wantOK: true, wantBlobs: 2},
		{name: "503 always", busy: 100, retryMax: 2, wantBlobs: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &tokenRegistry{blob: blob, busy: tt.busy}
			_, _, _, err := fetchFrom(t, context.Background(), tr, RegistryConfig{RetryMax: tt.retryMax}, 0)
			if (err == nil) != tt.wantOK {
				t.Fatalf("fetch: %v, want success %v", err, tt.wantOK)
			}
			if got := tr.blobRequests(); got != tt.wantBlobs {
				t.Errorf("blob requests %d, want %d", got, tt.wantBlobs)
			}
		})
	}
}

// TestUserAgent: every request to the registry, the ping and the token
// exchange among them, carries the configured User-Agent, followed by
// go-containerregistry's version as that library sends it. Before,
// go-containerregistry's auth transport replaced the client's on every
// request with its own alone.
func TestUserAgent(t *testing.T) {
	for _, c := range []struct{ configured, want string }{
		{"", download.DefaultUserAgent + " "},
		{"gateway/2.1 (acme)", "gateway/2.1 (acme) "},
	} {
		t.Run(c.want, func(t *testing.T) {
			var mu sync.Mutex
			agents := map[string]string{}
			tr := &tokenRegistry{blob: []byte(strings.Repeat("layer bytes ", 1000)), seen: func(r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				agents[r.URL.Path] = r.UserAgent()
			}}
			if _, _, _, err := fetchFromErr(t, tr, RegistryConfig{Insecure: true, UserAgent: c.configured}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, path := range []string{"/v2/", "/token", "/v2/apps/gw/blobs/" + digestOf(tr.blob)} {
				if got, ok := agents[path]; !ok || !strings.HasPrefix(got, c.want) {
					t.Errorf("User-Agent of %s: %q (asked: %v), want %q and the library's version", path, got, ok, c.want)
				}
			}
		})
	}
}
