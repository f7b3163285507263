package download

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// repoServer serves a map of paths; anything else is 404.
func repoServer(t *testing.T, files map[string]string, hdr http.Header) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		for k, v := range hdr {
			w.Header()[k] = v
		}
		if body == "CHUNKED-BIG" {
			w.Write(bytes.Repeat([]byte("x"), 5000))
			w.(http.Flusher).Flush()
			w.Write(bytes.Repeat([]byte("x"), 5000))
			return
		}
		w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func TestFetcher(t *testing.T) {
	files := map[string]string{"/1.root.json": `{"root":1}`, "/timestamp.json": `{"ts":1}`, "/big.json": strings.Repeat("y", 5000), "/chunked.json": "CHUNKED-BIG"}
	srv, _ := repoServer(t, files, nil)
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(403) }))
	t.Cleanup(forbidden.Close)
	tests := []struct {
		name       string
		mirrors    []string
		url        string
		max        int64
		want       string
		wantStatus int  // ErrDownloadHTTP
		wantLength bool // ErrDownloadLengthMismatch
	}{
		{name: "ok", url: srv.URL + "/timestamp.json", max: 100, want: `{"ts":1}`},
		{name: "exactly max", url: srv.URL + "/timestamp.json", max: 8, want: `{"ts":1}`},
		{name: "404", url: srv.URL + "/2.root.json", max: 100, wantStatus: 404},
		{name: "403", url: forbidden.URL + "/timestamp.json", max: 100, wantStatus: 403},
		{name: "over max by Content-Length", url: srv.URL + "/big.json", max: 4999, wantLength: true},
		{name: "over max on the wire", url: srv.URL + "/chunked.json", max: 9999, wantLength: true},
		{name: "second mirror has it", mirrors: []string{forbidden.URL, srv.URL}, url: forbidden.URL + "/timestamp.json", max: 100, want: `{"ts":1}`},
		{name: "404 on every mirror is 404", mirrors: []string{srv.URL, srv.URL}, url: srv.URL + "/3.root.json", max: 100, wantStatus: 404},
		{name: "404 and 403 is not 404", mirrors: []string{srv.URL, forbidden.URL}, url: srv.URL + "/7.snapshot.json", max: 100, wantStatus: 403},
		{name: "root 404 from the first answering mirror is final", mirrors: []string{srv.URL, forbidden.URL}, url: srv.URL + "/3.root.json", max: 100, wantStatus: 404},
		{name: "root from the next mirror after a failure", mirrors: []string{forbidden.URL, srv.URL}, url: forbidden.URL + "/3.root.json", max: 100, wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestClient(t, Config{RetryMax: 1})
			got, err := c.Fetcher(context.Background(), tt.mirrors...).DownloadFile(tt.url, tt.max, time.Second)
			switch {
			case tt.wantStatus != 0:
				var he *metadata.ErrDownloadHTTP
				if !errors.As(err, &he) {
					t.Fatalf("got %v, want *metadata.ErrDownloadHTTP", err)
				}
				if he.StatusCode != tt.wantStatus {
					t.Errorf("status: got %d, want %d (%v)", he.StatusCode, tt.wantStatus, err)
				}
				if !errors.Is(err, &metadata.ErrDownload{}) {
					t.Errorf("errors.Is(err, ErrDownload): got false, want true")
				}
			case tt.wantLength:
				if !errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
					t.Fatalf("got %v, want ErrDownloadLengthMismatch", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != tt.want {
					t.Errorf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestFetcherRetriesAndContext(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			w.WriteHeader(503)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	c, _ := newTestClient(t, Config{RetryMax: 3})
	got, err := c.Fetcher(context.Background()).DownloadFile(srv.URL+"/t.json", 10, 0)
	if err != nil || string(got) != "ok" {
		t.Fatalf("got %q, %v; want ok", got, err)
	}
	if n.Load() != 3 {
		t.Errorf("requests: got %d, want 3", n.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Fetcher(ctx).DownloadFile(srv.URL+"/t.json", 10, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
}

func TestGetConditional(t *testing.T) {
	tests := []struct {
		name string
		hdr  http.Header
	}{
		{"ETag", nil},
		{"Last-Modified only", http.Header{"Last-Modified": {"Sat, 28 Nov 2026 00:00:00 GMT"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"timestamp":1}`
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				mod := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
				if tt.hdr == nil {
					w.Header().Set("ETag", `"ts-`+body[13:14]+`"`)
				}
				// ServeContent implements If-None-Match and If-Modified-Since.
				http.ServeContent(w, r, "timestamp.json", mod, strings.NewReader(body))
			}))
			t.Cleanup(srv.Close)
			c, _ := newTestClient(t, Config{})
			ctx := context.Background()
			got, nm, v, err := c.GetConditional(ctx, srv.URL+"/timestamp.json", 1000, "")
			if err != nil || nm || string(got) != body || v == "" {
				t.Fatalf("first: got %q, %v, %q, %v; want the body and a validator", got, nm, v, err)
			}
			got, nm, v2, err := c.GetConditional(ctx, srv.URL+"/timestamp.json", 1000, v)
			if err != nil || !nm || got != nil || v2 != v {
				t.Fatalf("unchanged: got %q, %v, %q, %v; want not modified, no body, %q", got, nm, v2, err, v)
			}
			if n.Load() != 2 {
				t.Errorf("requests: got %d, want 2", n.Load())
			}
			if tt.hdr == nil {
				body = `{"timestamp":2}`
				got, nm, v3, err := c.GetConditional(ctx, srv.URL+"/timestamp.json", 1000, v)
				if err != nil || nm || string(got) != body || v3 == v {
					t.Fatalf("changed: got %q, %v, %q, %v; want the new body and a new validator", got, nm, v3, err)
				}
			}
			if _, _, _, err := c.GetConditional(ctx, srv.URL+"/timestamp.json", 5, ""); !errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
				t.Errorf("over maxLength: got %v, want ErrDownloadLengthMismatch", err)
			}
		})
	}
	t.Run("404", func(t *testing.T) {
		srv, _ := repoServer(t, nil, nil)
		c, _ := newTestClient(t, Config{})
		_, _, _, err := c.GetConditional(context.Background(), srv.URL+"/timestamp.json", 10, `"x"`)
		var he *metadata.ErrDownloadHTTP
		if !errors.As(err, &he) || he.StatusCode != 404 {
			t.Errorf("got %v, want ErrDownloadHTTP 404", err)
		}
	})
}
