package download_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/internal/download"
)

// hashSink hashes what it receives; a real sink also writes to a slot.
type hashSink struct {
	h hash.Hash
	n int64
}

func (s *hashSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return s.h.Write(p) }
func (s *hashSink) Restart() error              { s.h.Reset(); s.n = 0; return nil }

func ExampleClient_Fetch() {
	image := bytes.Repeat([]byte("switchback "), 100_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "image.bin", time.Time{}, bytes.NewReader(image))
	}))
	defer srv.Close()

	c, err := download.New(download.Config{})
	if err != nil {
		panic(err)
	}
	sink := &hashSink{h: sha256.New()}
	res, err := c.Fetch(context.Background(), download.Request{
		URLs:   []string{srv.URL + "/image.bin"},
		Length: int64(len(image)), // from the TUF target
	}, sink, nil)
	if err != nil {
		panic(err)
	}
	want := sha256.Sum256(image)
	fmt.Println("bytes:", sink.n, "requests:", res.Requests, "hash ok:", bytes.Equal(sink.h.Sum(nil), want[:]))
	fmt.Println("resume with:", strings.TrimPrefix(res.Validator, srv.URL+"/image.bin "))
	// Output:
	// bytes: 1100000 requests: 1 hash ok: true
	// resume with: "v1"
}

func ExampleClient_GetConditional() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"ts-7"`)
		http.ServeContent(w, r, "timestamp.json", time.Time{}, strings.NewReader(`{"signed":{}}`))
	}))
	defer srv.Close()
	c, err := download.New(download.Config{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	body, _, v, _ := c.GetConditional(ctx, srv.URL+"/timestamp.json", 16384, "")
	fmt.Println(len(body), v)
	_, notModified, _, _ := c.GetConditional(ctx, srv.URL+"/timestamp.json", 16384, v)
	fmt.Println("not modified:", notModified)
	// Output:
	// 13 "ts-7"
	// not modified: true
}

// ExampleClient_Range reads bytes 6-15 of a file, as a delta fetches the
// chunks a device lacks: the same rules (stall and low-speed limits,
// Pause, rate limit, retries, mirrors) as a whole target.
func ExampleClient_Range() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "image.bin", time.Time{}, strings.NewReader("image:0123456789abcdef"))
	}))
	defer srv.Close()
	c, err := download.New(download.Config{})
	if err != nil {
		panic(err)
	}
	rc, err := c.Range(context.Background(), []string{srv.URL + "/image.bin"}, 6, 10)
	if err != nil {
		panic(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	fmt.Printf("%s %v\n", b, err)
	// Output:
	// 0123456789 <nil>
}

// bearerLayer stands for a registry's auth transport: it fetches a token
// with a request of its own, then sends the request with it.
type bearerLayer struct {
	rt       http.RoundTripper
	tokenURL string
}

func (b bearerLayer) RoundTrip(r *http.Request) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, b.tokenURL, nil)
	resp, err := (&http.Client{Transport: b.rt}).Do(req) // Pause, retries, deadline
	if err != nil {
		return nil, err
	}
	token, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(token))
	return b.rt.RoundTrip(r) // the Client's own request: passed through
}

func ExampleClient_RoundTripper() {
	var tokenAsks int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token" && tokenAsks == 0:
			tokenAsks++
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case r.URL.Path == "/token":
			tokenAsks++
			fmt.Fprint(w, "let-me-in")
		case r.Header.Get("Authorization") == "Bearer let-me-in":
			fmt.Fprint(w, `{"layers":[]}`)
		default:
			http.Error(w, "who are you?", http.StatusUnauthorized)
		}
	}))
	defer srv.Close()

	// The Client's http.Client gets its transport once the Client exists:
	// the layer sends its own requests through the Client's RoundTripper.
	hc := &http.Client{}
	c, err := download.New(download.Config{HTTPClient: hc})
	if err != nil {
		panic(err)
	}
	hc.Transport = bearerLayer{rt: c.RoundTripper(http.DefaultTransport.(*http.Transport).Clone(), 64<<10), tokenURL: srv.URL + "/token"}
	manifest, err := c.Get(context.Background(), []string{srv.URL + "/v2/app/manifests/latest"}, 4<<20)
	fmt.Printf("%s %v, token asked %d times\n", manifest, err, tokenAsks)
	// Output:
	// {"layers":[]} <nil>, token asked 2 times
}
