package download

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fault is what the test server does to one request.
type fault struct {
	status      int    // answer with this status and no body
	retryAfter  string // with status
	cutAt       int64  // >0: abort the connection after this many body bytes
	stall       bool   // with cutAt: stop sending (until the client goes away) instead of cutting
	hang        bool   // send the headers, then nothing (until the client goes away)
	flipAt      int64  // >0: flip the byte at this file offset
	ignoreRange bool   // answer 200 with the whole file
	contentLen  string // "": honest; "-": none (chunked); else this value
	contentRng  string // "": honest; else this Content-Range
	etag        string // "": the current ETag; else send this one
	extra       int    // send this many bytes past the end (chunked)
	change      []byte // before answering, the file becomes this (new ETag)
}

// testServer serves one file with Range/If-Range like nginx, and applies
// plan(i) to the i-th request (0-based).
type testServer struct {
	*httptest.Server
	t *testing.T

	mu       sync.Mutex
	content  []byte
	etag     string
	gen      int
	plan     func(i int) fault
	requests []*http.Request
	sent     atomic.Int64 // body bytes written
	inflight atomic.Int64 // handlers running
}

// settle waits until no handler runs, so that sent counts every byte the
// handlers wrote (a client may have read a body before its handler
// returned and counted it).
func (s *testServer) settle() {
	for s.inflight.Load() != 0 {
		time.Sleep(time.Millisecond)
	}
}

func newTestServer(t *testing.T, content []byte, plan func(i int) fault) *testServer {
	t.Helper()
	s := &testServer{t: t, content: content, etag: `"v0"`, plan: plan}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) url() string { return s.URL + "/image.bin" }

func (s *testServer) nreq() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func (s *testServer) req(i int) *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[i]
}

func (s *testServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	s.mu.Lock()
	i := len(s.requests)
	s.requests = append(s.requests, r.Clone(r.Context()))
	var f fault
	if s.plan != nil {
		f = s.plan(i)
	}
	if f.change != nil {
		s.content = f.change
		s.gen++
		s.etag = `"v` + strconv.Itoa(s.gen) + `"`
	}
	content, etag := s.content, s.etag
	s.mu.Unlock()

	if f.status != 0 {
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		w.WriteHeader(f.status)
		return
	}
	sentTag := etag
	if f.etag != "" {
		sentTag = f.etag
	}
	w.Header().Set("ETag", sentTag)
	w.Header().Set("Last-Modified", "Sat, 28 Nov 2026 00:00:00 GMT")
	start, status := int64(0), http.StatusOK
	if rg := r.Header.Get("Range"); rg != "" && !f.ignoreRange {
		ir := r.Header.Get("If-Range")
		if ir == "" || ir == etag {
			first, last, ok := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
			n, err := strconv.ParseInt(first, 10, 64)
			end := int64(len(content)) - 1
			if err == nil && last != "" {
				end, err = strconv.ParseInt(last, 10, 64)
				end = min(end, int64(len(content))-1)
			}
			if err != nil || !ok {
				http.Error(w, "bad range", http.StatusBadRequest)
				return
			}
			if n >= int64(len(content)) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(content)))
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return
			}
			start, status = n, http.StatusPartialContent
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, end, len(content)))
			content = content[:end+1]
		}
	}
	if f.contentRng != "" {
		w.Header().Set("Content-Range", f.contentRng)
	}
	body := content[start:]
	switch f.contentLen {
	case "":
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	case "-":
	default:
		w.Header().Set("Content-Length", f.contentLen)
	}
	w.WriteHeader(status)
	if f.flipAt > 0 && f.flipAt >= start && f.flipAt < int64(len(content)) {
		body = bytes.Clone(body)
		body[f.flipAt-start] ^= 0xff
	}
	if f.hang {
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		panic(http.ErrAbortHandler)
	}
	if f.cutAt > 0 && f.cutAt < int64(len(body)) {
		n, _ := w.Write(body[:f.cutAt])
		s.sent.Add(int64(n))
		w.(http.Flusher).Flush()
		if f.stall {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	n, _ := w.Write(body)
	s.sent.Add(int64(n))
	if f.extra > 0 {
		n, _ := w.Write(bytes.Repeat([]byte{'X'}, f.extra))
		s.sent.Add(int64(n))
	}
}

// memSink collects bytes in memory.
type memSink struct {
	buf        bytes.Buffer
	restarts   int
	validators []string
	failAt     int64 // >0: Write fails once the sink holds this many bytes
}

func (m *memSink) Write(p []byte) (int, error) {
	if m.failAt > 0 && int64(m.buf.Len())+int64(len(p)) > m.failAt {
		k := m.failAt - int64(m.buf.Len())
		m.buf.Write(p[:k])
		return int(k), fmt.Errorf("disk full at %d", m.failAt)
	}
	return m.buf.Write(p)
}

func (m *memSink) Restart() error {
	m.restarts++
	m.buf.Reset()
	return nil
}

func (m *memSink) SetValidator(v string) error {
	m.validators = append(m.validators, v)
	return nil
}

func (m *memSink) mem() *memSink { return m }

// testSink is a sink whose bytes a test reads back: a memSink, or a
// bufSink around one.
type testSink interface {
	ValidatorSink
	mem() *memSink
}

// sinkKinds are the two ways bytes reach a sink: Write from the client's
// buffer, or read straight into the sink's buffers (BufferSink).
var sinkKinds = []struct {
	name string
	new  func() testSink
}{
	{"Write", func() testSink { return &memSink{} }},
	{"BufferSink", func() testSink { return &bufSink{room: make([]byte, 7001)} }},
}

// bufSink is a memSink with a buffer of its own (a BufferSink). Commit
// takes the bytes from that buffer, so a client that read them elsewhere
// delivers garbage; Write is counted, since the client must not call it.
type bufSink struct {
	memSink
	room   []byte
	writes int
}

func (b *bufSink) Buffer() []byte { return b.room }

func (b *bufSink) Commit(n int) error {
	if b.failAt > 0 && int64(b.buf.Len()+n) > b.failAt {
		return fmt.Errorf("disk full at %d", b.failAt) // none of the n held
	}
	b.buf.Write(b.room[:n])
	clear(b.room[:n]) // a stale copy is never read again as new bytes
	return nil
}

func (b *bufSink) Write(p []byte) (int, error) {
	b.writes++
	return b.memSink.Write(p)
}

// bodyCounter wraps a RoundTripper and counts response bodies not yet
// closed; wrap, optionally, changes each body (iotest readers).
type bodyCounter struct {
	rt   http.RoundTripper
	open atomic.Int64
	wrap func(io.Reader) io.Reader
}

func (b *bodyCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := b.rt.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b.open.Add(1)
	cb := &countedBody{rc: resp.Body, b: b}
	cb.r = resp.Body
	if b.wrap != nil {
		cb.r = b.wrap(resp.Body)
	}
	resp.Body = cb
	return resp, nil
}

// CloseIdleConnections passes on, so that http.Client's reaches the
// transport.
func (b *bodyCounter) CloseIdleConnections() {
	if ci, ok := b.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

type countedBody struct {
	rc   io.ReadCloser
	r    io.Reader
	b    *bodyCounter
	once sync.Once
}

func (c *countedBody) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *countedBody) Close() error {
	c.once.Do(func() { c.b.open.Add(-1) })
	return c.rc.Close()
}

// newTestClient returns a Client with fast retries and its transport
// wrapped by a body counter, and checks at cleanup that every body was
// closed.
func newTestClient(t *testing.T, cfg Config) (*Client, *bodyCounter) {
	t.Helper()
	if cfg.RetryWaitMin == 0 {
		cfg.RetryWaitMin = time.Millisecond
	}
	if cfg.RetryWaitMax == 0 {
		cfg.RetryWaitMax = 5 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	bc := &bodyCounter{rt: c.hc.Transport}
	c.hc.Transport = bc
	t.Cleanup(func() {
		if n := bc.open.Load(); n != 0 {
			t.Errorf("response bodies left open: got %d, want 0", n)
		}
		c.hc.CloseIdleConnections()
	})
	return c, bc
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// logBuf is a goroutine-safe log destination for counting messages.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), substr)
}
