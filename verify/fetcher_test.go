package verify

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestHTTPFetcher(t *testing.T) {
	var closed atomic.Int32
	var sent atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "12345") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		io.WriteString(w, "x")
	})
	mux.HandleFunc("/lying", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: an endless body must be cut off.
		defer closed.Add(1)
		chunk := []byte(strings.Repeat("y", 1024))
		for i := 0; i < 64*1024; i++ { // 64 MiB: more than socket buffers hold
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/teapot", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	f := NewHTTPFetcher(context.Background(), nil)
	if got, err := f.DownloadFile(srv.URL+"/ok", 5, 0); err != nil || string(got) != "12345" {
		t.Errorf("ok = %q, %v; want 12345", got, err)
	}
	if _, err := f.DownloadFile(srv.URL+"/ok", 4, 0); !errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
		t.Errorf("ok over limit = %v, want ErrDownloadLengthMismatch", err)
	}
	if _, err := f.DownloadFile(srv.URL+"/big", 100, 0); !errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
		t.Errorf("big = %v, want ErrDownloadLengthMismatch", err)
	}
	if _, err := f.DownloadFile(srv.URL+"/lying", 2000, 0); !errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
		t.Errorf("lying = %v, want ErrDownloadLengthMismatch", err)
	}
	var he *metadata.ErrDownloadHTTP
	if _, err := f.DownloadFile(srv.URL+"/missing", 10, 0); !errors.As(err, &he) || he.StatusCode != 404 {
		t.Errorf("missing = %v, want ErrDownloadHTTP 404", err)
	}
	if _, err := f.DownloadFile(srv.URL+"/teapot", 10, 0); !errors.As(err, &he) || he.StatusCode != 418 {
		t.Errorf("teapot = %v, want ErrDownloadHTTP 418", err)
	}
	srv.Close() // waits for the handlers
	if got, max := sent.Load(), int64(64<<20); got >= max {
		t.Errorf("server sent all %d bytes of the endless body, want the fetcher to stop early", got)
	}
	if closed.Load() != 1 {
		t.Errorf("endless handler did not finish")
	}
}

func TestHTTPFetcherContext(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-block:
		}
	}))
	defer srv.Close()
	defer close(block)
	ctx, cancel := context.WithCancel(context.Background())
	f := NewHTTPFetcher(ctx, nil)
	done := make(chan error, 1)
	go func() { _, err := f.DownloadFile(srv.URL, 10, 0); done <- err }()
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || !isFetchFailure(err) {
		t.Errorf("DownloadFile after cancel = %v, want context.Canceled, a fetch failure", err)
	}
}

type fixedFetcher []byte

func (f fixedFetcher) DownloadFile(_ string, _ int64, _ time.Duration) ([]byte, error) { return f, nil }

func TestLimitFetcher(t *testing.T) {
	f := limitFetcher{fixedFetcher("123456")}
	if _, err := f.DownloadFile("u", 5, 0); !errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
		t.Errorf("limit 5 = %v, want ErrDownloadLengthMismatch", err)
	}
	if got, err := f.DownloadFile("u", 6, 0); err != nil || len(got) != 6 {
		t.Errorf("limit 6 = %q, %v; want 6 bytes", got, err)
	}
}

type errFetcher struct{ err error }

func (f errFetcher) DownloadFile(_ string, _ int64, _ time.Duration) ([]byte, error) {
	return nil, f.err
}

func TestLimitFetcherMarksFailures(t *testing.T) {
	stalled := errors.New("download: transfer stalled")
	_, err := limitFetcher{errFetcher{stalled}}.DownloadFile("u", 1, 0)
	if !isFetchFailure(err) || !errors.Is(err, stalled) {
		t.Errorf("custom failure = %v, want a fetch failure wrapping it", err)
	}
	_, err = limitFetcher{errFetcher{&metadata.ErrDownloadHTTP{StatusCode: 404}}}.DownloadFile("u", 1, 0)
	var he *metadata.ErrDownloadHTTP
	if !errors.As(err, &he) || he.StatusCode != 404 {
		t.Errorf("404 = %v, want *metadata.ErrDownloadHTTP reachable (go-tuf ends the root walk on it)", err)
	}
	_, err = limitFetcher{errFetcher{&metadata.ErrDownloadLengthMismatch{}}}.DownloadFile("u", 1, 0)
	if isFetchFailure(err) {
		t.Errorf("oversized = %v, want a refusal, not a fetch failure", err)
	}
}

func TestIsFetchFailure(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&metadata.ErrDownloadHTTP{StatusCode: 500}, true},
		{&fetchError{io.ErrUnexpectedEOF}, true},
		{context.DeadlineExceeded, true},
		{&metadata.ErrDownloadLengthMismatch{}, false},
		{&metadata.ErrExpiredMetadata{}, false},
		{&metadata.ErrUnsignedMetadata{}, false},
		{errors.New(strconv.Quote("json")), false},
	}
	for _, tt := range tests {
		if got := isFetchFailure(tt.err); got != tt.want {
			t.Errorf("isFetchFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestTargetURL(t *testing.T) {
	h := map[string][]byte{SHA256: {0xab, 0xcd}, SHA512: {0x01}}
	tests := []struct {
		base, path string
		consistent bool
		want       string
	}{
		{"http://h/t", "app/app-1.0.bin", false, "http://h/t/app/app-1.0.bin"},
		{"http://h/t/", "app/app-1.0.bin", true, "http://h/t/app/abcd.app-1.0.bin"},
		{"http://h/t", "top.bin", true, "http://h/t/abcd.top.bin"},
		{"http://h/t", "a dir/f#1.bin", false, "http://h/t/a%20dir/f%231.bin"},
	}
	for _, tt := range tests {
		if got := TargetURL(tt.base, tt.path, h, tt.consistent); got != tt.want {
			t.Errorf("TargetURL(%q, %q, %v) = %q, want %q", tt.base, tt.path, tt.consistent, got, tt.want)
		}
	}
	if got, want := TargetURL("http://h", "f", map[string][]byte{SHA512: {0x01}}, true), "http://h/01.f"; got != want {
		t.Errorf("targetURL with sha512 only = %q, want %q", got, want)
	}
}

// TestHTTPFetcherReusesConnection: an idle check (the next root answered
// 404 with an error page, then the timestamp) runs over one connection.
func TestHTTPFetcherReusesConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".root.json") {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("{}"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	f := NewHTTPFetcher(context.Background(), srv.Client())
	if _, err := f.DownloadFile(srv.URL+"/2.root.json", 1024, 0); err == nil {
		t.Fatal("404 not reported")
	}
	if _, err := f.DownloadFile(srv.URL+"/timestamp.json", 1024, 0); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}
