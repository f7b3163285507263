package download

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// readRange reads a whole Range.
func readRange(c *Client, ctx context.Context, urls []string, off, n int64) ([]byte, error) {
	rc, err := c.Range(ctx, urls, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestRange: byte ranges under the client's rules — exact bytes, a cut
// resumed mid-range, a stall ended by the stall timeout, a server that
// ignores Range refused with ErrNoRange, the next mirror tried.
func TestRange(t *testing.T) {
	content := randomBytes(31, 3*copyBufferSize)
	const off, n = 1000, 2*copyBufferSize + 5
	want := content[off : off+n]
	seq := func(fs ...fault) func(int) fault {
		return func(i int) fault {
			if i < len(fs) {
				return fs[i]
			}
			return fault{}
		}
	}
	tests := []struct {
		name     string
		plan     func(int) fault
		mirror   bool // a good second mirror
		wantErr  error
		wantReqs int // to the first server
	}{
		{name: "plain", plan: nil, wantReqs: 1},
		{name: "cut mid-range resumes", plan: seq(fault{cutAt: 70_000}), wantReqs: 2},
		{name: "stall ends with the stall timeout", plan: seq(fault{cutAt: 10, stall: true}, fault{hang: true}), wantErr: ErrStalled, wantReqs: 2},
		{name: "whole file refused", plan: func(int) fault { return fault{ignoreRange: true} }, wantErr: ErrNoRange, wantReqs: 1},
		{name: "next mirror after a stall", plan: func(int) fault { return fault{hang: true} }, mirror: true, wantReqs: 2},
		{name: "next mirror after a 404", plan: func(int) fault { return fault{status: 404} }, mirror: true, wantReqs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t, content, tt.plan)
			urls := []string{srv.url()}
			if tt.mirror {
				urls = append(urls, newTestServer(t, content, nil).url())
			}
			c, _ := newTestClient(t, Config{RetryMax: 1, StallTimeout: 200 * time.Millisecond})
			got, err := readRange(c, t.Context(), urls, off, n)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("got %v, want %v", err, tt.wantErr)
				}
			} else if err != nil || !bytes.Equal(got, want) {
				t.Errorf("got %d bytes, %v; want the %d bytes asked", len(got), err, n)
			}
			if got := srv.nreq(); got != tt.wantReqs {
				t.Errorf("requests to the first server: got %d, want %d", got, tt.wantReqs)
			}
			if r := srv.req(srv.nreq() - 1).Header.Get("Range"); r == "" {
				t.Error("no Range header sent")
			}
		})
	}
}

// TestRangePauseAndRateLimit: Pause is called and rate-limit tokens are
// taken for every byte of a range, as for a Fetch.
func TestRangePauseAndRateLimit(t *testing.T) {
	content := randomBytes(32, 4*copyBufferSize)
	srv := newTestServer(t, content, nil)
	pauses := 0
	c, _ := newTestClient(t, Config{RateLimit: 100_000, Pause: func(context.Context) error { pauses++; return nil }})
	tokens := 0
	c.wait = func(_ context.Context, n int) error { tokens += n; return nil }
	const off, n = 5, 3 * copyBufferSize
	got, err := readRange(c, t.Context(), []string{srv.url()}, off, n)
	if err != nil || !bytes.Equal(got, content[off:off+n]) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	if tokens != n {
		t.Errorf("rate-limit tokens: got %d, want %d", tokens, n)
	}
	if want := n / 100_000; pauses < want {
		t.Errorf("Pause calls: got %d, want at least %d", pauses, want)
	}
	// A Pause that fails ends the range with its error.
	boom := errors.New("metered")
	c2, _ := newTestClient(t, Config{Pause: func(context.Context) error { return boom }})
	if _, err := readRange(c2, t.Context(), []string{srv.url()}, off, n); !errors.Is(err, boom) {
		t.Errorf("Range with a failing Pause: got %v, want %v", err, boom)
	}
}

// TestRangeCloseEarly: closing a range before its end stops the transfer
// (and leaves no body open: checked by newTestClient).
func TestRangeCloseEarly(t *testing.T) {
	content := randomBytes(33, 4*copyBufferSize)
	srv := newTestServer(t, content, nil)
	c, _ := newTestClient(t, Config{})
	rc, err := c.Range(t.Context(), []string{srv.url()}, 0, int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 10)
	if _, err := io.ReadFull(rc, b); err != nil || !bytes.Equal(b, content[:10]) {
		t.Errorf("first bytes: %x, %v", b, err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestRangeBadArguments: no URL, an empty or negative range.
func TestRangeBadArguments(t *testing.T) {
	c, _ := newTestClient(t, Config{})
	for _, tt := range []struct {
		urls   []string
		off, n int64
	}{{nil, 0, 1}, {[]string{"http://x/"}, -1, 1}, {[]string{"http://x/"}, 0, 0}} {
		if _, err := c.Range(t.Context(), tt.urls, tt.off, tt.n); err == nil {
			t.Errorf("Range(%v, %d, %d): nil error", tt.urls, tt.off, tt.n)
		}
	}
}
