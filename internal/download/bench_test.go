package download

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) Restart() error              { return nil }

// BenchmarkFetch measures Fetch over loopback against a plain net/http GET
// of the same bytes (b.SetBytes: compare the MB/s).
func BenchmarkFetch(b *testing.B) {
	const size = 32 << 20
	content := randomBytes(16, size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"b"`)
		http.ServeContent(w, r, "b.bin", time.Time{}, bytes.NewReader(content))
	}))
	b.Cleanup(srv.Close)
	b.Run("Fetch", func(b *testing.B) {
		c, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Fetch(context.Background(), Request{URLs: []string{srv.URL}, Length: size}, discardSink{}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Fetch-cut-every-8MiB", func(b *testing.B) {
		cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"b"`)
			w = &cutWriter{ResponseWriter: w, left: 8 << 20}
			http.ServeContent(w, r, "b.bin", time.Time{}, bytes.NewReader(content))
		}))
		b.Cleanup(cut.Close)
		c, err := New(Config{RetryWaitMin: time.Microsecond, RetryWaitMax: time.Microsecond})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		for b.Loop() {
			if _, err := c.Fetch(context.Background(), Request{URLs: []string{cut.URL}, Length: size}, discardSink{}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net/http baseline", func(b *testing.B) {
		hc := &http.Client{Transport: &http.Transport{}}
		b.SetBytes(size)
		buf := make([]byte, copyBufferSize)
		for b.Loop() {
			resp, err := hc.Get(srv.URL)
			if err != nil {
				b.Fatal(err)
			}
			io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
		}
	})
}

// cutWriter aborts the response after left bytes.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		c.ResponseWriter.Write(p[:c.left])
		panic(http.ErrAbortHandler)
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

// BenchmarkRange measures reading a file as 64 KiB byte ranges (as a delta
// fetches chunks) through Client.Range against plain net/http range GETs
// of the same bytes (b.SetBytes: compare the MB/s).
func BenchmarkRange(b *testing.B) {
	const size, step = 8 << 20, 64 << 10
	content := randomBytes(17, size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "b.bin", time.Time{}, bytes.NewReader(content))
	}))
	b.Cleanup(srv.Close)
	b.Run("Client.Range", func(b *testing.B) {
		c, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			for off := int64(0); off < size; off += step {
				rc, err := c.Range(context.Background(), []string{srv.URL}, off, step)
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, rc); err != nil || n != step {
					b.Fatal(n, err)
				}
				rc.Close()
			}
		}
	})
	b.Run("net/http baseline", func(b *testing.B) {
		hc := &http.Client{Transport: &http.Transport{}}
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			for off := int64(0); off < size; off += step {
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+step-1, 10))
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	})
}
