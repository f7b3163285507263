package download

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// dripServer serves content one byte every `every`, honouring Range (from
// an offset to the end) so that resumed transfers drip too. It stops when
// the client goes away.
func dripServer(t *testing.T, content []byte, every time.Duration) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := content
		w.Header().Set("ETag", `"drip"`)
		if rg := r.Header.Get("Range"); rg != "" {
			var first int
			if _, err := parseSimpleRange(rg, &first); err != nil || first >= len(content) {
				http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
				return
			}
			body = content[first:]
			w.Header().Set("Content-Range", "bytes "+strconv.Itoa(first)+"-"+strconv.Itoa(len(content)-1)+"/"+strconv.Itoa(len(content)))
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		for i := range body {
			if _, err := w.Write(body[i : i+1]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(every):
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/file"
}

// parseSimpleRange reads "bytes=N-" into first.
func parseSimpleRange(s string, first *int) (int, error) {
	v := s[len("bytes="):]
	for i, r := range v {
		if r == '-' {
			n, err := strconv.Atoi(v[:i])
			*first = n
			return n, err
		}
	}
	return 0, errors.New("no range")
}

// TestLowSpeed: a server that drips a byte every 5 ms (200 B/s) is given
// up on under a low-speed limit of 1,000 B/s over 200 ms, as a target
// transfer and as a metadata file, whatever the stall timeout; so is one
// that sends 10 bytes and stalls, at every attempt (progress each time,
// but too slow across attempts); the same file served at full speed
// passes. Without the limit each of these transfers would take 80 s or
// more and end with the test's context.
func TestLowSpeed(t *testing.T) {
	content := randomBytes(21, 40_000)
	drip := dripServer(t, content, 5*time.Millisecond)
	fast := newTestServer(t, content, nil).url()
	// 4,000 attempts of 10 bytes and a 20 ms stall: 80 s.
	stalls := newTestServer(t, content, func(int) fault { return fault{cutAt: 10, stall: true} }).url()
	tests := []struct {
		name    string
		url     string
		stall   time.Duration
		wantErr error
		// Get fetches a small file again from its start at each attempt,
		// and counts every attempt: stalls end it first.
		wantGetErr error
	}{
		{"drip", drip, time.Minute, ErrTooSlow, ErrTooSlow},
		{"few bytes then a stall, again and again", stalls, 20 * time.Millisecond, ErrTooSlow, ErrStalled},
		{"full speed", fast, time.Minute, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestClient(t, Config{RetryMax: 1, StallTimeout: tt.stall, LowSpeedLimit: 1000, LowSpeedTime: 200 * time.Millisecond})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			sink := &memSink{}
			_, err := c.Fetch(ctx, Request{URLs: []string{tt.url}, Length: int64(len(content))}, sink, nil)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("Fetch: got %v, want %v", err, tt.wantErr)
			}
			_, err = c.Get(ctx, []string{tt.url}, 1<<20)
			if !errors.Is(err, tt.wantGetErr) || (tt.wantGetErr == nil && err != nil) {
				t.Errorf("Get: got %v, want %v", err, tt.wantGetErr)
			}
		})
	}
}

// TestLowSpeedPauseNotCounted: time spent in Pause is not time on the
// network: a Pause longer than the low-speed window between every chunk
// does not make a fast transfer "too slow".
func TestLowSpeedPauseNotCounted(t *testing.T) {
	content := randomBytes(22, 3*copyBufferSize)
	srv := newTestServer(t, content, nil)
	c, _ := newTestClient(t, Config{RetryMax: -1, LowSpeedLimit: 100, LowSpeedTime: 200 * time.Millisecond,
		Pause: func(ctx context.Context) error {
			select {
			case <-time.After(300 * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
	sink := &memSink{}
	if _, err := c.Fetch(t.Context(), Request{URLs: []string{srv.url()}, Length: int64(len(content))}, sink, nil); err != nil {
		t.Fatalf("Fetch with long pauses: %v", err)
	}
}

// TestMetadataDeadline: a metadata file that arrives fast enough for the
// low-speed limit (off here) but takes longer than MetadataTimeout fails
// with ErrDeadline, through GetConditional and the go-tuf Fetcher alike;
// a second mirror is then tried.
func TestMetadataDeadline(t *testing.T) {
	content := randomBytes(23, 558) // timestamp.json
	drip := dripServer(t, content, 10*time.Millisecond)
	good := newTestServer(t, content, nil)
	c, _ := newTestClient(t, Config{LowSpeedLimit: -1, StallTimeout: time.Minute, MetadataTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, _, _, err := c.GetConditional(ctx, drip, 1<<20, ""); !errors.Is(err, ErrDeadline) {
		t.Errorf("GetConditional: got %v, want ErrDeadline", err)
	}
	f := c.Fetcher(ctx)
	if _, err := f.DownloadFile(drip, 1<<20, 0); !errors.Is(err, ErrDeadline) {
		t.Errorf("Fetcher: got %v, want ErrDeadline", err)
	}
	base := drip[:len(drip)-len("file")]
	f = c.Fetcher(ctx, base, good.URL+"/")
	if got, err := f.DownloadFile(base+"image.bin", 1<<20, 0); err != nil || len(got) != len(content) {
		t.Errorf("Fetcher with a second mirror: %d bytes, %v; want %d bytes from the second", len(got), err, len(content))
	}
}
