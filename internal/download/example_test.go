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
