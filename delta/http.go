package delta

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Plain HTTP sources, for tools and tests. They make one request per call
// with the client given: no stall timeout, low-speed limit, retries, rate
// limit, pause or mirrors. A device fetches through its download client
// instead, which applies all of them to every byte (package updater
// supplies the RangeFunc and StoreFunc that Apply takes).

// HTTPDoer sends HTTP requests; *http.Client satisfies it, and so does
// the StandardClient of a retryablehttp.Client.
type HTTPDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// HTTPRange returns a [RangeFunc] that asks url for byte ranges with
// client, one plain request each (for tools and tests; see above). A server that answers 200 (the whole file) instead of 206 gets
// an error wrapping [ErrNoRange]; one that answers another range, or
// another status, gets an error too.
func HTTPRange(client HTTPDoer, url string) RangeFunc {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
		// A transparently decompressed body would not be the bytes asked.
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		switch resp.StatusCode {
		case http.StatusPartialContent:
		case http.StatusOK:
			resp.Body.Close()
			return nil, fmt.Errorf("%w: %s answered 200 to a range request", ErrNoRange, url)
		default:
			resp.Body.Close()
			return nil, fmt.Errorf("delta: %s: %s", url, resp.Status)
		}
		if s, e, ok := parseContentRange(resp.Header.Get("Content-Range")); !ok || s != off || e != off+n-1 {
			resp.Body.Close()
			return nil, fmt.Errorf("%w: asked bytes %d-%d of %s, got Content-Range %q", ErrNoRange, off, off+n-1, url, resp.Header.Get("Content-Range"))
		}
		return resp.Body, nil
	}
}

// parseContentRange parses "bytes first-last/total".
func parseContentRange(v string) (first, last int64, ok bool) {
	v, ok = strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, false
	}
	v, _, _ = strings.Cut(v, "/")
	f, l, ok := strings.Cut(v, "-")
	if !ok {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(f, 10, 64)
	last, err2 := strconv.ParseInt(l, 10, 64)
	return first, last, err1 == nil && err2 == nil
}

// HTTPStore returns a [StoreFunc] that fetches chunk files under the
// store URL base (".../chunks"; a trailing slash is optional) with client,
// one plain request each (for tools and tests; see above).
func HTTPStore(client HTTPDoer, base string) StoreFunc {
	base = strings.TrimSuffix(base, "/")
	return func(ctx context.Context, name string) (io.ReadCloser, error) {
		u := base + "/" + name
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("delta: %s: %s", u, resp.Status)
		}
		return resp.Body, nil
	}
}
