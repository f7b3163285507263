package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// Fetcher returns a go-tuf fetcher.Fetcher that downloads metadata through
// c, bound to ctx (go-tuf's interface has no context).
//
// go-tuf builds URLs from its MetadataBaseURL; when a URL starts with
// mirrors[0], the same path is tried under each of the other mirrors in
// turn if an earlier one fails or answers 404. A missing file yields
// *metadata.ErrDownloadHTTP with StatusCode 404 when every mirror says 404,
// or, for a root version (N.root.json, whose 404 ends go-tuf's root walk),
// when the first mirror that answers says 404; other statuses yield
// *metadata.ErrDownloadHTTP with that status, and a file over maxLength
// *metadata.ErrDownloadLengthMismatch — read no further than maxLength+1
// bytes. TUF signatures keep a malicious mirror harmless.
func (c *Client) Fetcher(ctx context.Context, mirrors ...string) fetcher.Fetcher {
	return &tufFetcher{c: c, ctx: ctx, mirrors: mirrors}
}

type tufFetcher struct {
	c       *Client
	ctx     context.Context
	mirrors []string
}

// DownloadFile implements fetcher.Fetcher. The timeout argument is
// deprecated by go-tuf and ignored: ctx and the Client's stall and
// low-speed limits and MetadataTimeout govern.
func (t *tufFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	data, _, _, err := t.download(urlPath, maxLength, "")
	return data, err
}

// DownloadFileConditional implements verify.ConditionalFetcher: like
// DownloadFile, with If-None-Match or If-Modified-Since from validator, so
// that an unchanged file costs a 304 with no body.
func (t *tufFetcher) DownloadFileConditional(urlPath string, maxLength int64, validator string) ([]byte, bool, string, error) {
	return t.download(urlPath, maxLength, validator)
}

func (t *tufFetcher) download(urlPath string, maxLength int64, validator string) ([]byte, bool, string, error) {
	urls := []string{urlPath}
	if len(t.mirrors) > 0 {
		if rel, ok := strings.CutPrefix(urlPath, t.mirrors[0]); ok {
			urls = urls[:0]
			for _, m := range t.mirrors {
				urls = append(urls, m+rel)
			}
		}
	}
	var errs []error
	all404 := true
	for _, u := range urls {
		data, nm, v, err := t.c.get(t.ctx, u, maxLength, validator)
		if err == nil {
			return data, nm, v, nil
		}
		if t.ctx.Err() != nil {
			return nil, false, "", err
		}
		var se *StatusError
		if errors.As(err, &se) {
			err = &metadata.ErrDownloadHTTP{StatusCode: se.StatusCode, URL: se.URL}
		}
		if se == nil || se.StatusCode != http.StatusNotFound {
			all404 = false
		} else if strings.HasSuffix(urlPath, ".root.json") {
			// A 404 for the next root version is the normal end of
			// go-tuf's root walk: a mirror that answers it is final.
			// Asking the next mirror would let one bad mirror freeze
			// every device that lists it.
			return nil, false, "", &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: redact(urlPath)}
		} else {
			// Other files: only a 404 from every mirror reads as 404.
			err = fmt.Errorf("download: %s: not found", se.URL)
		}
		errs = append(errs, err)
	}
	if all404 {
		return nil, false, "", &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: redact(urlPath)}
	}
	if len(errs) == 1 {
		return nil, false, "", errs[0]
	}
	return nil, false, "", fmt.Errorf("download: all %d mirrors failed: %w", len(errs), errors.Join(errs...))
}

// GetConditional downloads a small file (at most maxLength bytes) unless
// it is unchanged since validator was returned for it: then it answers
// notModified with no body and no download beyond the headers. validator is
// the ETag (If-None-Match) or Last-Modified date (If-Modified-Since) an
// earlier call returned; empty fetches unconditionally. The validator
// returned describes the body returned (or, when not modified, is the one
// passed in unless the server sent a fresh one). A 404 is reported as
// *metadata.ErrDownloadHTTP, other failing statuses as *StatusError.
func (c *Client) GetConditional(ctx context.Context, url string, maxLength int64, validator string) (body []byte, notModified bool, newValidator string, err error) {
	data, nm, v, err := c.get(ctx, url, maxLength, validator)
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusNotFound {
		err = &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: se.URL}
	}
	return data, nm, v, err
}

// Get downloads a small file whole (at most maxLength bytes) from the
// first of the mirrors urls that serves it, with the rules of every
// transfer (stall and low-speed limits, Pause, rate limit, retries) and
// the MetadataTimeout per mirror. A file every mirror answers 404 for
// yields a *StatusError with StatusCode 404.
func (c *Client) Get(ctx context.Context, urls []string, maxLength int64) ([]byte, error) {
	if len(urls) == 0 {
		return nil, errors.New("download: no URL")
	}
	var errs []error
	for _, u := range urls {
		data, _, _, err := c.get(ctx, u, maxLength, "")
		if err == nil {
			return data, nil
		}
		if ctx.Err() != nil || isFatal(err) {
			return nil, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, fmt.Errorf("download: all %d mirrors failed: %w", len(errs), errors.Join(errs...))
}

// get fetches a small file whole, with retries, the watch, Pause and the
// rate limit, within MetadataTimeout; a body cut mid-way is fetched again
// (these files are small).
func (c *Client) get(ctx context.Context, u string, maxLength int64, validator string) ([]byte, bool, string, error) {
	if maxLength < 0 {
		return nil, false, "", fmt.Errorf("download: maxLength %d is negative", maxLength)
	}
	outer := ctx
	if c.cfg.MetadataTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.cfg.MetadataTimeout,
			fmt.Errorf("%w: %s took more than %v", ErrDeadline, redact(u), c.cfg.MetadataTimeout))
		defer cancel()
	}
	st := attemptState{watch: c.newWatch()}
	ctx = context.WithValue(ctx, attemptKey{}, &st)
	failures := 0
	for {
		data, nm, v, err := c.getOnce(ctx, &st, u, maxLength, validator)
		if err != nil && outer.Err() == nil && ctx.Err() != nil {
			// Our deadline, not the caller's: say so.
			return nil, false, "", fmt.Errorf("download: %s: %w", redact(u), context.Cause(ctx))
		}
		if err == nil || ctx.Err() != nil || isFatal(err) {
			return data, nm, v, err
		}
		var p permanent
		if errors.As(err, &p) {
			return nil, false, "", p.err
		}
		failures++
		if failures > c.cfg.RetryMax {
			return nil, false, "", err
		}
		t := time.NewTimer(c.backoff(c.cfg.RetryWaitMin, c.cfg.RetryWaitMax, failures-1, nil))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, "", fmt.Errorf("download: %s: %w", redact(u), context.Cause(ctx))
		case <-t.C:
		}
	}
}

func (c *Client) getOnce(ctx context.Context, st *attemptState, u string, maxLength int64, validator string) ([]byte, bool, string, error) {
	if err := c.pause(ctx); err != nil {
		return nil, false, "", err
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st.watch.start(cancel)
	defer st.watch.stop()
	req, err := retryablehttp.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, "", permanent{fmt.Errorf("download: %w", err)}
	}
	c.setHeaders(req.Request)
	SetConditional(req.Header, validator)
	resp, err := c.rc.Do(req)
	if err != nil && resp != nil {
		resp.Body.Close()
	}
	if err != nil {
		if cause := tripped(ctx, actx); cause != nil {
			return nil, false, "", fmt.Errorf("download: %s: waiting for response: %w", redact(u), cause)
		}
		return nil, false, "", permanent{fmt.Errorf("download: %s: %w", redact(u), err)}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if validator == "" {
			return nil, false, "", permanent{fmt.Errorf("%w: %s: 304 to an unconditional request", ErrBadResponse, redact(u))}
		}
		v := conditionalValidator(resp)
		if v == "" {
			v = validator
		}
		return nil, true, v, nil
	default:
		// Read a short error page (a static server's 404 for the next
		// root version) to its end, so that the connection is reused for
		// the timestamp: an idle check then costs one connection (one TLS
		// handshake), not two.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil, false, "", permanent{&StatusError{StatusCode: resp.StatusCode, URL: redact(u)}}
	}
	if resp.ContentLength > maxLength {
		return nil, false, "", permanent{&metadata.ErrDownloadLengthMismatch{
			Msg: fmt.Sprintf("%s: Content-Length %d is over the maximum %d", redact(u), resp.ContentLength, maxLength)}}
	}
	data, err := c.readSmall(ctx, actx, st.watch, resp.Body, maxLength)
	if err != nil {
		err = fmt.Errorf("download: %s: %w", redact(u), err)
		if le := (*metadata.ErrDownloadLengthMismatch)(nil); errors.As(err, &le) {
			err = permanent{err}
		}
		return nil, false, "", err
	}
	return data, false, conditionalValidator(resp), nil
}

// maxErrorBody is how much of an error response is read so that its
// connection can be reused.
const maxErrorBody = 4 << 10

// readSmall reads a body of at most maxLength bytes whole, never more than
// one byte past the limit, through the watch, Pause and the rate limit.
func (c *Client) readSmall(ctx, actx context.Context, w *watch, body io.Reader, maxLength int64) ([]byte, error) {
	data := make([]byte, 0, min(maxLength+1, 64<<10))
	buf := make([]byte, min(32<<10, c.chunkSize()))
	lr := io.LimitReader(body, maxLength+1)
	for {
		if err := c.pause(ctx); err != nil {
			return nil, err
		}
		w.arm()
		n, err := lr.Read(buf)
		w.disarm(n)
		if n > 0 {
			if werr := c.wait(ctx, n); werr != nil {
				return nil, fmt.Errorf("rate limit: %w", werr)
			}
			data = append(data, buf[:n]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if cause := tripped(ctx, actx); cause != nil {
				err = cause
			}
			return nil, fmt.Errorf("reading body: %w", err)
		}
	}
	if int64(len(data)) > maxLength {
		return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("more than the maximum %d bytes", maxLength)}
	}
	return data, nil
}

// conditionalValidator prefers the ETag (weak ones are fine for
// If-None-Match), else Last-Modified.
func conditionalValidator(resp *http.Response) string {
	if et := resp.Header.Get("ETag"); et != "" {
		return et
	}
	return resp.Header.Get("Last-Modified")
}

// IsETag reports whether a validator is an ETag (strong or weak) rather
// than a Last-Modified date.
func IsETag(v string) bool {
	return strings.HasPrefix(v, `"`) || strings.HasPrefix(v, `W/"`)
}

// SetConditional makes a request conditional on validator: If-None-Match
// for an ETag, If-Modified-Since for a date, nothing for "".
func SetConditional(h http.Header, validator string) {
	switch {
	case validator == "":
	case IsETag(validator):
		h.Set("If-None-Match", validator)
	default:
		h.Set("If-Modified-Since", validator)
	}
}
