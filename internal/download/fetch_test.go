package download

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

const testSize = 1<<20 + 12345 // a bit over 1 MiB: several copy buffers

// errAny in a table stands for "some error, not one of the sentinels".
var errAny = errors.New("any error")

func TestFetch(t *testing.T) {
	content := randomBytes(1, testSize)
	changed := randomBytes(2, testSize)
	L := int64(len(content))
	versions := [][]byte{randomBytes(20, testSize), randomBytes(21, testSize)}
	always := func(f fault) func(int) fault { return func(int) fault { return f } }
	seq := func(fs ...fault) func(int) fault {
		return func(i int) fault {
			if i < len(fs) {
				return fs[i]
			}
			return fault{}
		}
	}
	tests := []struct {
		name      string
		plan      func(i int) fault
		offset    int64 // the sink already holds content[:offset]
		validator string
		retryMax  int
		want      []byte // the sink's bytes at the end; nil: content
		wantErr   error  // nil: success
		wantReqs  int    // 0: not checked
		wantXfer  int64  // -1: not checked
		wantRst   int
		stall     time.Duration // StallTimeout; 0: 5s (no spurious stalls on a loaded machine)
	}{
		{name: "full", wantReqs: 1, wantXfer: L},
		{name: "resume with ETag", offset: 500_000, validator: `"v0"`, wantReqs: 1, wantXfer: L - 500_000},
		{name: "resume with a validator of this mirror", offset: 500_000, validator: "MIRROR0 \"v0\"", wantReqs: 1, wantXfer: L - 500_000},
		{name: "resume without validator", offset: 500_000, wantReqs: 1, wantXfer: L - 500_000},
		{name: "resume, file changed: 200 restarts", offset: 500_000, validator: `"v0"`,
			plan: seq(fault{change: changed}), want: changed, wantReqs: 1, wantXfer: L, wantRst: 1},
		{name: "resume, server ignores Range", offset: 500_000, validator: `"v0"`,
			plan: always(fault{ignoreRange: true}), wantReqs: 1, wantXfer: L, wantRst: 1},
		{name: "resume, 206 with another ETag restarts", offset: 500_000, validator: `"v0"`,
			plan: seq(fault{etag: `"other"`}), wantReqs: 2, wantXfer: L, wantRst: 1},
		{name: "416 at the end: done", offset: L, validator: `"v0"`, wantReqs: 1, wantXfer: 0},
		{name: "416 below the end: file shrank, restart", offset: 500_000,
			plan: seq(fault{change: content[:400_000]}, fault{change: content}), wantReqs: 2, wantXfer: L, wantRst: 1},
		{name: "503 twice then 200", plan: seq(fault{status: 503}, fault{status: 503}), wantReqs: 3, wantXfer: L},
		{name: "429 with Retry-After then 200", plan: seq(fault{status: 429, retryAfter: "0"}), wantReqs: 2, wantXfer: L},
		{name: "404 not retried", plan: always(fault{status: 404}), wantErr: &StatusError{StatusCode: 404}, wantReqs: 1, want: []byte{}},
		{name: "403 not retried", plan: always(fault{status: 403}), wantErr: &StatusError{StatusCode: 403}, wantReqs: 1, want: []byte{}},
		{name: "501 not retried", plan: always(fault{status: 501}), wantErr: &StatusError{StatusCode: 501}, wantReqs: 1, want: []byte{}},
		{name: "500 outlasts retries", retryMax: 2, plan: always(fault{status: 500}), wantErr: &StatusError{StatusCode: 500}, wantReqs: 3, want: []byte{}},
		{name: "cut mid-body resumes", plan: seq(fault{cutAt: 300_000}), wantReqs: 2, wantXfer: L},
		{name: "cut twice", plan: seq(fault{cutAt: 1}, fault{cutAt: 700_000}), wantReqs: 3, wantXfer: L},
		{name: "cut then 503 then resume", plan: seq(fault{cutAt: 300_000}, fault{status: 503}), wantReqs: 3, wantXfer: L},
		{name: "stall mid-body resumes", plan: seq(fault{cutAt: 200_000, stall: true}), wantReqs: 2, wantXfer: L, stall: 200 * time.Millisecond},
		{name: "empty 200", plan: always(fault{contentLen: "0"}), wantErr: ErrLength, want: []byte{}},
		{name: "resume, wrong Content-Length on 200 keeps the bytes", offset: 500_000, validator: `"v0"`,
			plan: always(fault{ignoreRange: true, contentLen: "1000"}), wantErr: ErrLength, want: content[:500_000]},
		{name: "flipped byte is delivered as sent", plan: seq(fault{flipAt: 777}), wantReqs: 1, wantXfer: L,
			want: func() []byte { b := bytes.Clone(content); b[777] ^= 0xff; return b }()},
		{name: "Content-Length too long", plan: always(fault{contentLen: "99999999"}), wantErr: ErrLength, want: []byte{}},
		{name: "Content-Length too short", plan: always(fault{contentLen: "1000"}), wantErr: ErrLength, want: []byte{}},
		{name: "body longer than expected is cut off", plan: always(fault{contentLen: "-", extra: 4096}),
			wantErr: ErrLength, want: content, wantXfer: L + 1},
		{name: "chunked body of the right length", plan: always(fault{contentLen: "-"}), wantReqs: 1, wantXfer: L},
		{name: "Content-Range starts elsewhere", offset: 500_000, validator: `"v0"`,
			plan: always(fault{contentRng: fmt.Sprintf("bytes 0-%d/%d", L-1, L)}), wantErr: ErrBadResponse, want: content[:500_000]},
		{name: "Content-Range wrong total", offset: 500_000, validator: `"v0"`,
			plan: always(fault{contentRng: fmt.Sprintf("bytes 500000-%d/%d", L, L+1)}), wantErr: ErrLength, want: content[:500_000]},
		{name: "Content-Range garbage", offset: 500_000, validator: `"v0"`,
			plan: always(fault{contentRng: "lies"}), wantErr: ErrBadResponse, want: content[:500_000]},
		{name: "no Range support and a link that always breaks", retryMax: 2,
			plan: func(i int) fault { return fault{ignoreRange: true, cutAt: 100_000} }, wantErr: errAny},
		{name: "content changes at every request", offset: 500_000, validator: `"v0"`,
			plan:    func(i int) fault { return fault{change: versions[i%len(versions)], cutAt: 1000} },
			wantErr: ErrUnstable},
	}
	for _, kind := range sinkKinds {
		for _, tt := range tests {
			t.Run(kind.name+"/"+tt.name, func(t *testing.T) {
				srv := newTestServer(t, content, tt.plan)
				retryMax := tt.retryMax
				if retryMax == 0 {
					retryMax = 4
				}
				stall := tt.stall
				if stall == 0 {
					stall = 5 * time.Second
				}
				c, _ := newTestClient(t, Config{RetryMax: retryMax, StallTimeout: stall})
				sink := kind.new()
				ms := sink.mem()
				ms.buf.Write(content[:tt.offset])
				validator := strings.ReplaceAll(tt.validator, "MIRROR0", srv.url())
				var lastDone int64 = -1
				res, err := c.Fetch(context.Background(), Request{URLs: []string{srv.url()}, Offset: tt.offset, Length: L, Validator: validator},
					sink, func(done, total int64) {
						if total != L {
							t.Errorf("progress total: got %d, want %d", total, L)
						}
						lastDone = done
					})
				if tt.wantErr == nil {
					if err != nil {
						t.Fatalf("Fetch: %v", err)
					}
					if lastDone != L && tt.offset != L {
						t.Errorf("last progress: got %d, want %d", lastDone, L)
					}
					if res.Delivered != L {
						t.Errorf("Delivered: got %d, want %d", res.Delivered, L)
					}
				} else {
					var se *StatusError
					if want, ok := tt.wantErr.(*StatusError); ok {
						if !errors.As(err, &se) || se.StatusCode != want.StatusCode {
							t.Fatalf("Fetch error: got %v, want HTTP %d", err, want.StatusCode)
						}
					} else if tt.wantErr == errAny {
						if err == nil || errors.Is(err, ErrUnstable) {
							t.Fatalf("Fetch error: got %v, want a mirror failure", err)
						}
					} else if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Fetch error: got %v, want %v", err, tt.wantErr)
					}
					if res.Delivered != int64(ms.buf.Len()) {
						t.Errorf("Delivered: got %d, want the sink's %d", res.Delivered, ms.buf.Len())
					}
				}
				want := tt.want
				if want == nil && tt.wantErr == nil {
					want = content
				}
				if want != nil && !bytes.Equal(ms.buf.Bytes(), want) {
					t.Errorf("sink: got %d bytes (sha256 %x), want %d bytes (sha256 %x)",
						ms.buf.Len(), sha256.Sum256(ms.buf.Bytes()), len(want), sha256.Sum256(want))
				}
				if int64(ms.buf.Len()) > L {
					t.Errorf("sink holds %d bytes, more than the length %d", ms.buf.Len(), L)
				}
				if tt.wantReqs != 0 && res.Requests != tt.wantReqs {
					t.Errorf("Requests: got %d, want %d", res.Requests, tt.wantReqs)
				}
				if res.Requests != srv.nreq() {
					t.Errorf("Requests: got %d, server saw %d", res.Requests, srv.nreq())
				}
				if tt.wantXfer != 0 && res.Transferred != tt.wantXfer && tt.wantErr == nil {
					t.Errorf("Transferred: got %d, want %d", res.Transferred, tt.wantXfer)
				}
				if tt.wantErr == nil && res.Restarts != tt.wantRst {
					t.Errorf("Restarts: got %d, want %d", res.Restarts, tt.wantRst)
				}
				if res.Restarts != ms.restarts {
					t.Errorf("Restarts: got %d, sink saw %d", res.Restarts, ms.restarts)
				}
				if tt.wantErr == nil && !strings.HasPrefix(res.Validator, srv.url()+" \"v") {
					t.Errorf("Validator: got %q, want the URL and an ETag", res.Validator)
				}
				if bs, ok := sink.(*bufSink); ok && bs.writes != 0 {
					t.Errorf("Write called %d times on a BufferSink", bs.writes)
				}
			})
		}
	}
}

// TestFetchResumeHeaders checks what is asked on the wire.
func TestFetchResumeHeaders(t *testing.T) {
	content := randomBytes(3, 300_000)
	tests := []struct {
		name        string
		validator   string
		wantIfRange string
	}{
		{"bare ETag", `"v0"`, `"v0"`},
		{"validator of this mirror", "SELF \"v0\"", `"v0"`},
		{"validator of another mirror is not sent", "http://mirror.invalid/x \"v9\"", ""},
		{"Last-Modified", "Sat, 28 Nov 2026 00:00:00 GMT", "Sat, 28 Nov 2026 00:00:00 GMT"},
		{"none", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, content, nil)
			c, _ := newTestClient(t, Config{UserAgent: "sb-test/1"})
			sink := &memSink{}
			sink.buf.Write(content[:1000])
			v := strings.ReplaceAll(tt.validator, "SELF", srv.url())
			res, err := c.Fetch(context.Background(), Request{URLs: []string{srv.url()}, Offset: 1000, Length: int64(len(content)), Validator: v}, sink, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := srv.req(0)
			for h, want := range map[string]string{"Range": "bytes=1000-", "If-Range": tt.wantIfRange, "User-Agent": "sb-test/1", "Accept-Encoding": "identity"} {
				if got := r.Header.Get(h); got != want {
					t.Errorf("%s: got %q, want %q", h, got, want)
				}
			}
			if !bytes.Equal(sink.buf.Bytes(), content) {
				t.Errorf("sink content differs")
			}
			if got := sink.validators; len(got) > 0 && got[len(got)-1] != srv.url()+` "v0"` {
				t.Errorf("SetValidator calls: got %q, want none or last %q", got, srv.url()+` "v0"`)
			}
			if got, want := res.Validator, srv.url()+` "v0"`; got != want {
				t.Errorf("Validator: got %q, want %q", got, want)
			}
		})
	}
}

// TestFetchRandomCuts runs against a server that cuts every response at a
// random offset (seeded): every run must end with the exact file.
func TestFetchRandomCuts(t *testing.T) {
	content := randomBytes(4, testSize)
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run("seed"+string(rune('0'+seed)), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			srv := newTestServer(t, content, func(i int) fault {
				switch rng.IntN(4) {
				case 0:
					return fault{status: 502}
				case 1:
					return fault{cutAt: 1 + rng.Int64N(200_000), stall: rng.IntN(3) == 0}
				default:
					return fault{cutAt: 1 + rng.Int64N(400_000)}
				}
			})
			c, _ := newTestClient(t, Config{RetryMax: 8, StallTimeout: 50 * time.Millisecond})
			sink := &memSink{}
			res, err := c.Fetch(context.Background(), Request{URLs: []string{srv.url()}, Length: int64(len(content))}, sink, nil)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !bytes.Equal(sink.buf.Bytes(), content) {
				t.Fatalf("sink differs from the file")
			}
			srv.settle()
			// The device counts what it read. A response the client gave
			// up on as stalled (50 ms here: a loaded machine may take that
			// long to schedule the reader) can leave bytes the server
			// wrote unread in the socket, so the server's count may be
			// higher, never lower; and nothing is read twice beyond it.
			if sent := srv.sent.Load(); res.Transferred > sent || res.Transferred < int64(len(content)) {
				t.Errorf("Transferred: got %d, want between the file's %d and the %d the server sent", res.Transferred, len(content), sent)
			}
			if res.Restarts != 0 {
				t.Errorf("Restarts: got %d, want 0", res.Restarts)
			}
			t.Logf("%d requests, %d bytes transferred", res.Requests, res.Transferred)
		})
	}
}

func TestFetchShortReads(t *testing.T) {
	content := randomBytes(5, 100_000)
	tests := []struct {
		name     string
		wrap     func(io.Reader) io.Reader
		wantReqs int
	}{
		{"one byte", iotest.OneByteReader, 1},
		{"half", iotest.HalfReader, 1},
		// bufio first: DataErrReader drops data that comes with EOF, as
		// net/http's bodies do.
		{"data with EOF", func(r io.Reader) io.Reader { return iotest.DataErrReader(bufio.NewReaderSize(r, 4096)) }, 1},
		{"timeout on the second read resumes", iotest.TimeoutReader, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, content, nil)
			c, bc := newTestClient(t, Config{RetryMax: 5})
			bc.wrap = tt.wrap
			sink := &memSink{}
			res, err := c.Fetch(context.Background(), Request{URLs: []string{srv.url()}, Length: int64(len(content))}, sink, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sink.buf.Bytes(), content) {
				t.Fatalf("sink differs from the file")
			}
			if tt.wantReqs != 0 && res.Requests != tt.wantReqs {
				t.Errorf("Requests: got %d, want %d", res.Requests, tt.wantReqs)
			}
		})
	}
}

func TestFetchLogsIgnoredRangeOnce(t *testing.T) {
	content := randomBytes(6, 50_000)
	srv := newTestServer(t, content, func(int) fault { return fault{ignoreRange: true} })
	var logs logBuf
	c, _ := newTestClient(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := 0; i < 3; i++ {
		sink := &memSink{}
		sink.buf.Write(content[:100])
		res, err := c.Fetch(context.Background(), Request{URLs: []string{srv.url()}, Offset: 100, Length: int64(len(content))}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Restarts != 1 || !bytes.Equal(sink.buf.Bytes(), content) {
			t.Fatalf("Restarts: got %d, want 1 and the whole file", res.Restarts)
		}
	}
	if got := logs.count("server ignores Range"); got != 1 {
		t.Errorf(`"server ignores Range" logged %d times, want 1`, got)
	}
}

func TestFetchMirrors(t *testing.T) {
	content := randomBytes(7, testSize)
	L := int64(len(content))
	t.Run("first mirror 404", func(t *testing.T) {
		bad := newTestServer(t, content, func(int) fault { return fault{status: 404} })
		good := newTestServer(t, content, nil)
		c, _ := newTestClient(t, Config{})
		sink := &memSink{}
		res, err := c.Fetch(context.Background(), Request{URLs: []string{bad.url(), good.url()}, Length: L}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sink.buf.Bytes(), content) {
			t.Fatal("sink differs")
		}
		if res.Requests != 2 || !strings.HasPrefix(res.Validator, good.url()) {
			t.Errorf("got %d requests and validator %q, want 2 and one of the second mirror", res.Requests, res.Validator)
		}
	})
	t.Run("first mirror dies mid-body: the second continues", func(t *testing.T) {
		bad := newTestServer(t, content, func(i int) fault {
			if i == 0 {
				return fault{cutAt: 600_000}
			}
			return fault{status: 500}
		})
		good := newTestServer(t, content, nil)
		c, _ := newTestClient(t, Config{RetryMax: 2})
		sink := &memSink{}
		res, err := c.Fetch(context.Background(), Request{URLs: []string{bad.url(), good.url()}, Length: L}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sink.buf.Bytes(), content) {
			t.Fatal("sink differs")
		}
		r := good.req(0)
		if got, want := r.Header.Get("Range"), "bytes=600000-"; got != want {
			t.Errorf("second mirror Range: got %q, want %q", got, want)
		}
		if got := r.Header.Get("If-Range"); got != "" {
			t.Errorf("second mirror If-Range: got %q, want none (the ETag is the first mirror's)", got)
		}
		if res.Transferred != L {
			t.Errorf("Transferred: got %d, want %d", res.Transferred, L)
		}
	})
	t.Run("all fail", func(t *testing.T) {
		a := newTestServer(t, content, func(int) fault { return fault{status: 404} })
		b := newTestServer(t, content, func(int) fault { return fault{status: 403} })
		c, _ := newTestClient(t, Config{})
		_, err := c.Fetch(context.Background(), Request{URLs: []string{a.url(), b.url()}, Length: L}, &memSink{}, nil)
		var se *StatusError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "403") {
			t.Errorf("got %v, want both mirrors' statuses", err)
		}
	})
	t.Run("unreachable mirror", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		deadURL := dead.URL + "/image.bin"
		dead.Close()
		good := newTestServer(t, content, nil)
		c, _ := newTestClient(t, Config{RetryMax: 1})
		sink := &memSink{}
		if _, err := c.Fetch(context.Background(), Request{URLs: []string{deadURL, good.url()}, Length: L}, sink, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sink.buf.Bytes(), content) {
			t.Fatal("sink differs")
		}
	})
}

func TestFetchSinkAndPauseErrorsAreFinal(t *testing.T) {
	content := randomBytes(8, 600_000)
	errMetered := errors.New("metered link")
	tests := []struct {
		name    string
		sink    testSink
		pause   func(context.Context) error
		wantErr error
	}{
		{"sink fails", &memSink{failAt: 300_000}, nil, ErrSink},
		{"buffer sink fails", &bufSink{memSink: memSink{failAt: 300_000}, room: make([]byte, 7001)}, nil, ErrSink},
		{"pause refuses at once", &memSink{}, func(context.Context) error { return errMetered }, errMetered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, content, nil)
			c, _ := newTestClient(t, Config{Pause: tt.pause})
			res, err := c.Fetch(context.Background(), Request{URLs: []string{srv.url(), srv.url()}, Length: int64(len(content))}, tt.sink, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			if srv.nreq() > 1 {
				t.Errorf("requests: got %d, want at most 1 (not retried)", srv.nreq())
			}
			if held := int64(tt.sink.mem().buf.Len()); res.Delivered != held {
				t.Errorf("Delivered: got %d, want %d", res.Delivered, held)
			}
		})
	}
}

func TestFetchPauseBetweenChunks(t *testing.T) {
	content := randomBytes(9, 5*copyBufferSize+10)
	srv := newTestServer(t, content, nil)
	calls := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	c, _ := newTestClient(t, Config{Pause: func(ctx context.Context) error {
		calls++
		if calls == 3 {
			select { // a metered link: wait until released
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}})
	go func() { close(release) }()
	sink := &memSink{}
	if _, err := c.Fetch(ctx, Request{URLs: []string{srv.url()}, Length: int64(len(content))}, sink, nil); err != nil {
		t.Fatal(err)
	}
	// One call before the request, one before each chunk read.
	if calls < 7 {
		t.Errorf("Pause calls: got %d, want at least 7", calls)
	}
	if !bytes.Equal(sink.buf.Bytes(), content) {
		t.Error("sink differs")
	}

	// A Pause that blocks until ctx ends returns ctx's error.
	c2, _ := newTestClient(t, Config{Pause: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := c2.Fetch(ctx2, Request{URLs: []string{srv.url()}, Length: int64(len(content))}, &memSink{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestFetchRateLimitAccounting(t *testing.T) {
	content := randomBytes(10, 3*copyBufferSize+77)
	srv := newTestServer(t, content, nil)
	const limit = 100_000 // bytes per second: burst and chunk are 100 000
	c, _ := newTestClient(t, Config{RateLimit: limit})
	if got, want := c.limiter.Limit(), float64(limit); float64(got) != want {
		t.Errorf("limiter rate: got %v, want %v", got, want)
	}
	if got := c.chunkSize(); got != limit {
		t.Errorf("chunk size: got %d, want %d", got, limit)
	}
	var tokens, calls int
	c.wait = func(ctx context.Context, n int) error {
		calls++
		tokens += n
		if n > c.limiter.Burst() {
			t.Errorf("asked for %d tokens, more than the burst %d", n, c.limiter.Burst())
		}
		return nil // accounting only: no waiting
	}
	// A sink's own buffer larger than the burst is read into a burst at
	// a time, too.
	for _, sink := range []testSink{&memSink{}, &bufSink{room: make([]byte, 1<<20)}} {
		tokens, calls = 0, 0
		res, err := c.Fetch(context.Background(), Request{URLs: []string{srv.url()}, Length: int64(len(content))}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		if int64(tokens) != res.Transferred || tokens != len(content) {
			t.Errorf("%T: tokens taken: got %d, want %d (bytes transferred %d)", sink, tokens, len(content), res.Transferred)
		}
		if calls < len(content)/limit {
			t.Errorf("%T: waits: got %d, want at least %d", sink, calls, len(content)/limit)
		}
		if !bytes.Equal(sink.mem().buf.Bytes(), content) {
			t.Errorf("%T: sink differs", sink)
		}
	}
	// The real limiter: a context that ends stops the wait with its error.
	c3, _ := newTestClient(t, Config{RateLimit: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c3.wait(ctx, 1); err == nil {
		t.Error("rate limiter wait with a cancelled context: got nil, want an error")
	}
}

func TestFetchCancel(t *testing.T) {
	content := randomBytes(11, 600_000)
	srv := newTestServer(t, content, func(int) fault { return fault{cutAt: 1000, stall: true} })
	c, _ := newTestClient(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	sink := &memSink{}
	done := make(chan error)
	go func() {
		_, err := c.Fetch(ctx, Request{URLs: []string{srv.url()}, Length: int64(len(content))}, sink, func(d, _ int64) {
			if d >= 1000 {
				cancel()
			}
		})
		done <- err
	}()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestFetchBadRequest(t *testing.T) {
	c, _ := newTestClient(t, Config{})
	tests := []struct {
		name string
		req  Request
		sink Sink
	}{
		{"no URL", Request{Length: 10}, &memSink{}},
		{"offset past length", Request{URLs: []string{"http://127.0.0.1:1/x"}, Offset: 11, Length: 10}, &memSink{}},
		{"negative length", Request{URLs: []string{"http://127.0.0.1:1/x"}, Length: -1}, &memSink{}},
		{"bad URL", Request{URLs: []string{"http://[::1"}, Length: 1}, &memSink{}},
		{"nil sink", Request{URLs: []string{"http://127.0.0.1:1/x"}, Length: 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Fetch(context.Background(), tt.req, tt.sink, nil); err == nil {
				t.Error("got nil error, want one")
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	now := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"7", 7 * time.Second, true},
		{"0", 0, true},
		{" 3 ", 3 * time.Second, true},
		{"-1", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{"Sat, 28 Nov 2026 00:01:00 GMT", time.Minute, true},
		{"Fri, 27 Nov 2026 00:00:00 GMT", 0, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q): got %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	c, _ := newTestClient(t, Config{MaxRetryAfter: time.Minute})
	resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"30"}}}
	if got := c.backoff(time.Millisecond, time.Second, 0, resp); got != 30*time.Second {
		t.Errorf("Retry-After 30 on 429: got %v, want 30s", got)
	}
	resp.Header.Set("Retry-After", "3600")
	if got := c.backoff(time.Millisecond, time.Second, 0, resp); got != time.Minute {
		t.Errorf("Retry-After 3600 capped: got %v, want 1m", got)
	}
	// Jitter: within [d/2, d], d = lo·2^attempt capped at hi.
	lo, hi := 100*time.Millisecond, 2*time.Second
	for attempt, d := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		d *= time.Millisecond
		if got := jitterBackoff(lo, hi, attempt, func(int64) int64 { return 0 }); got != d/2 {
			t.Errorf("attempt %d lowest: got %v, want %v", attempt, got, d/2)
		}
		if got := jitterBackoff(lo, hi, attempt, func(n int64) int64 { return n - 1 }); got != d {
			t.Errorf("attempt %d highest: got %v, want %v", attempt, got, d)
		}
	}
	if got := jitterBackoff(lo, hi, 200, rand.Int64N); got > hi || got < hi/2 {
		t.Errorf("attempt 200: got %v, want within [%v, %v]", got, hi/2, hi)
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 0-9/10", 0, 10, true},
		{"bytes 5-9/10", 5, 10, true},
		{"bytes 5-8/10", 0, 0, false}, // does not reach the end
		{"bytes 5-10/10", 0, 0, false},
		{"bytes 6-5/10", 0, 0, false},
		{"bytes 0-9/*", 0, 0, false},
		{"bytes */10", 0, 0, false},
		{"bytes -1-9/10", 0, 0, false},
		{"bytes +1-9/10", 0, 0, false},
		{"bits 0-9/10", 0, 0, false},
		{"bytes 0-99999999999999999999/100000000000000000000", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		s, tot, err := parseContentRange(tt.in)
		if (err == nil) != tt.ok || s != tt.start || tot != tt.total {
			t.Errorf("parseContentRange(%q): got %d, %d, %v; want %d, %d, ok=%v", tt.in, s, tot, err, tt.start, tt.total, tt.ok)
		}
	}
}

func TestValidatorEncoding(t *testing.T) {
	tests := []struct{ in, url, v string }{
		{`https://a/x "e1"`, "https://a/x", `"e1"`},
		{"http://a/x Sat, 28 Nov 2026 00:00:00 GMT", "http://a/x", "Sat, 28 Nov 2026 00:00:00 GMT"},
		{`"e1"`, "", `"e1"`},
		{"https://a/x", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		u, v := parseValidator(tt.in)
		if u != tt.url || v != tt.v {
			t.Errorf("parseValidator(%q): got %q, %q; want %q, %q", tt.in, u, v, tt.url, tt.v)
		}
	}
	if got := formatValidator("https://a/x", `"e"`); got != `https://a/x "e"` {
		t.Errorf("formatValidator: got %q", got)
	}
	if got := formatValidator("https://a/x", ""); got != "" {
		t.Errorf("formatValidator of nothing: got %q, want empty", got)
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/10", "bytes */10", "bytes 0-0/1", "bytes 1-2/3", "x", "bytes 9223372036854775806-9223372036854775806/9223372036854775807"} {
		f.Add(s)
	}
	f.Add("bytes 5-8/*")
	f.Fuzz(func(t *testing.T, s string) {
		if first, last, total, err := parseByteRange(s); err == nil {
			if first < 0 || first > last || (total >= 0 && last >= total) || total < -1 {
				t.Fatalf("parseByteRange(%q) = %d, %d, %d: not a range within the file", s, first, last, total)
			}
		}
		start, total, err := parseContentRange(s)
		if err != nil {
			return
		}
		if start < 0 || total <= 0 || start >= total {
			t.Fatalf("parseContentRange(%q) = %d, %d: outside the file", s, start, total)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "-5", "Fri, 31 Dec 1999 23:59:59 GMT", "", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if d < 0 || (!ok && d != 0) {
			t.Fatalf("parseRetryAfter(%q) = %v, %v", s, d, ok)
		}
	})
}
