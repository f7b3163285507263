package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Sentinel errors; errors returned by this package wrap them where they
// apply (test with [errors.Is]).
var (
	// ErrLength means a server announced or sent a length other than the
	// expected one (Content-Length, Content-Range total, or a body longer
	// than expected). The excess is never read.
	ErrLength = errors.New("download: length differs from the expected length")
	// ErrBadResponse means a response is malformed or inconsistent with
	// the request: a Content-Range that does not start at the offset asked
	// for, or that does not parse.
	ErrBadResponse = errors.New("download: inconsistent response")
	// ErrStalled means no byte arrived for [Config].StallTimeout.
	ErrStalled = errors.New("download: transfer stalled")
	// ErrTooSlow means bytes arrived slower than [Config].LowSpeedLimit
	// over [Config].LowSpeedTime.
	ErrTooSlow = errors.New("download: transfer too slow")
	// ErrDeadline means a small file took longer than
	// [Config].MetadataTimeout.
	ErrDeadline = errors.New("download: deadline exceeded")
	// ErrNoRange means a server answered a byte-range request of
	// [Client.Range] with the whole file, or with other bytes than asked:
	// it does not serve ranges.
	ErrNoRange = errors.New("download: server does not serve byte ranges")
	// ErrUnstable means the content behind the URLs changed more often
	// during one Fetch than it can sensibly restart.
	ErrUnstable = errors.New("download: content keeps changing")
	// ErrSink means the Sink refused bytes or a restart; such an error is
	// the caller's and is never retried.
	ErrSink = errors.New("download: sink failed")
)

// StatusError is an HTTP answer that is not the one a request needs, such
// as 404 or 403, or a 5xx that outlasted the retries.
type StatusError struct {
	StatusCode int
	URL        string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("download: %s: HTTP %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// Request describes one target to fetch.
type Request struct {
	// URLs are mirrors of the same file, tried in order: on failure (after
	// retries) the transfer continues from the same offset on the next.
	URLs []string
	// Offset is how many bytes an earlier attempt already delivered to the
	// sink; the transfer resumes there with a Range request.
	Offset int64
	// Length is the exact length of the file (from TUF). A server that
	// sends more is cut off, one that sends less is resumed or fails.
	Length int64
	// Validator is Result.Validator (or what a ValidatorSink was told) of
	// the attempt that delivered the first Offset bytes; it is sent as
	// If-Range so that bytes of two different files are never spliced. It
	// is opaque: store it as given.
	Validator string
}

// Sink receives the bytes of one transfer.
type Sink interface {
	// Write receives bytes in order, the first one being byte
	// Request.Offset of the file (or byte 0 after Restart).
	io.Writer
	// Restart discards everything delivered so far: the server ignored
	// the Range request or the file changed, and it is delivered again
	// from byte 0.
	Restart() error
}

// ValidatorSink is an optional ability of a [Sink]: SetValidator is called
// with the validator of the response whose bytes follow, before the first
// of them is written, so that a durable checkpoint can record it together
// with the offset (and pass it back as Request.Validator after a crash).
type ValidatorSink interface {
	Sink
	SetValidator(v string) error
}

// BufferSink is an optional ability of a [Sink] that has buffers of its
// own: the client reads the body straight into them instead of into its
// buffer and then copying, which saves a copy of every byte.
//
// Buffer returns where the next bytes go (at least one byte of room; the
// client reads at most len of it). Commit(n) then delivers its first n
// bytes, as Write would deliver them; on an error none of them are held.
// A Buffer the client read nothing into is asked for again; Restart
// discards it with the rest.
type BufferSink interface {
	Sink
	Buffer() []byte
	Commit(n int) error
}

// Result describes a finished (or failed) transfer.
type Result struct {
	// Validator identifies the version of the file the delivered bytes
	// belong to; pass it back as Request.Validator to resume.
	Validator string
	// Delivered is how many bytes of the file the sink holds (the offset
	// to resume from).
	Delivered int64
	// Transferred counts body bytes read from the network, across
	// restarts and retries.
	Transferred int64
	// Requests counts HTTP requests sent, retries included.
	Requests int
	// Restarts counts calls to Sink.Restart.
	Restarts int
}

// fetchState is one Fetch in progress.
type fetchState struct {
	req       Request
	sink      Sink
	progress  func(done, total int64)
	offset    int64
	validator string // opaque form, see formatValidator
	res       Result
	changes   int // restarts because the content changed
	// rangeRestarts counts restarts because the server ignored Range.
	rangeRestarts int
	att           attemptState
	buf           []byte // body bytes pass here unless the sink has buffers (BufferSink)
	// ranged: the transfer is bytes [base, base+req.Length) of a longer
	// file (Client.Range); offset counts from base.
	ranged bool
	base   int64
}

// Fetch streams req into sink, resuming at req.Offset, and reports
// progress (bytes delivered, total) after every write; progress may be nil.
// It returns when the sink holds all Length bytes, or with an error: the
// Result then still says how far the sink got (Delivered, Validator) so a
// later Fetch can resume. Errors from the sink or from Pause, and a
// cancelled ctx, end the transfer at once; network failures are retried
// and fail over to the next mirror.
func (c *Client) Fetch(ctx context.Context, req Request, sink Sink, progress func(done, total int64)) (Result, error) {
	if len(req.URLs) == 0 {
		return Result{}, errors.New("download: Request.URLs is empty")
	}
	if req.Length < 0 || req.Offset < 0 || req.Offset > req.Length {
		return Result{}, fmt.Errorf("download: Request offset %d and length %d are inconsistent", req.Offset, req.Length)
	}
	if sink == nil {
		return Result{}, errors.New("download: nil Sink")
	}
	for _, u := range req.URLs {
		if _, err := url.Parse(u); err != nil {
			return Result{}, fmt.Errorf("download: mirror URL: %w", err)
		}
	}
	f := &fetchState{
		req: req, sink: sink, progress: progress,
		offset: req.Offset, validator: req.Validator,
	}
	return c.run(ctx, f)
}

// run transfers f, trying each mirror in turn.
func (c *Client) run(ctx context.Context, f *fetchState) (Result, error) {
	req := f.req
	f.att.watch = c.newWatch()
	ctx = context.WithValue(ctx, attemptKey{}, &f.att)
	var errs []error
	for i, u := range req.URLs {
		if i > 0 {
			c.log.Warn("download: trying next mirror", "url", redact(u), "offset", f.offset)
		}
		err := c.fetchMirror(ctx, f, u)
		f.res.Delivered, f.res.Validator, f.res.Requests = f.offset, f.validator, f.att.requests
		if err == nil {
			return f.res, nil
		}
		if ctx.Err() != nil || isFatal(err) {
			return f.res, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return f.res, errs[0]
	}
	return f.res, fmt.Errorf("download: all %d mirrors failed: %w", len(errs), errors.Join(errs...))
}

var errPause = errors.New("download: paused transfer aborted")

// fetchMirror runs attempts against one mirror until the file is complete
// or the retry budget (consecutive attempts without progress) is spent.
func (c *Client) fetchMirror(ctx context.Context, f *fetchState, u string) error {
	failures := 0
	for {
		before := f.res.Transferred + int64(f.res.Restarts)
		err := c.attempt(ctx, f, u)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("download: %s: %w", redact(u), context.Cause(ctx))
		}
		if isFatal(err) {
			return err
		}
		var p permanent
		if errors.As(err, &p) {
			return p.err
		}
		if f.res.Transferred+int64(f.res.Restarts) != before && !errors.Is(err, ErrTooSlow) {
			// Progress: the budget is for attempts that get nowhere, and
			// for a link too slow to use even if it delivers bytes.
			failures = 0
		}
		failures++
		if failures > c.cfg.RetryMax {
			return fmt.Errorf("download: %s: giving up after %d attempts without progress: %w", redact(u), failures, err)
		}
		wait := c.backoff(c.cfg.RetryWaitMin, c.cfg.RetryWaitMax, failures-1, nil)
		c.log.Info("download: resuming", "url", redact(u), "offset", f.offset, "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("download: %s: %w", redact(u), context.Cause(ctx))
		case <-t.C:
		}
	}
}

// isFatal reports errors that end the whole Fetch, whatever the mirror.
func isFatal(err error) bool {
	return errors.Is(err, ErrSink) || errors.Is(err, ErrUnstable) || errors.Is(err, errPause)
}

// permanent marks an error that retrying the same mirror cannot cure.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// attempt sends one request (retryablehttp retries connection errors, 429
// and 5xx) and streams its body. A nil error means the file is complete.
func (c *Client) attempt(ctx context.Context, f *fetchState, u string) error {
	if err := c.pause(ctx); err != nil {
		return err
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	f.att.watch.start(cancel)
	defer f.att.watch.stop()

	req, err := retryablehttp.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return permanent{fmt.Errorf("download: %w", err)}
	}
	c.setHeaders(req.Request)
	sent := f.setRange(req.Header, u)
	resp, err := c.rc.Do(req)
	if err != nil && resp != nil {
		resp.Body.Close()
	}
	if err != nil {
		if cause := tripped(ctx, actx); cause != nil {
			return fmt.Errorf("download: %s: waiting for response: %w", redact(u), cause)
		}
		return permanent{fmt.Errorf("download: %s: %w", redact(u), err)}
	}
	defer resp.Body.Close()
	var done bool
	switch {
	case f.ranged:
		err = c.answerRange(f, u, resp)
	case resp.StatusCode == http.StatusPartialContent:
		err = c.answerPartial(f, u, resp, sent)
	case resp.StatusCode == http.StatusOK:
		err = c.answerWhole(f, u, resp, sent)
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		done, err = c.answerUnsatisfiable(f, u, resp, sent)
	default:
		err = permanent{&StatusError{StatusCode: resp.StatusCode, URL: redact(u)}}
	}
	if err != nil || done {
		return err
	}
	want := f.req.Length - f.offset
	if resp.ContentLength >= 0 && resp.ContentLength != want {
		return permanent{fmt.Errorf("%w: %s: Content-Length %d, want %d", ErrLength, redact(u), resp.ContentLength, want)}
	}
	return c.stream(ctx, actx, f, u, resp.Body)
}

// setRange asks for the bytes still missing, and returns the validator
// sent as If-Range ("" for none). A ranged transfer always asks for its
// range; a file, from the offset on once bytes were delivered, with
// If-Range so that bytes of two versions are never spliced.
func (f *fetchState) setRange(h http.Header, u string) string {
	if f.ranged {
		h.Set("Range", "bytes="+strconv.FormatInt(f.base+f.offset, 10)+"-"+strconv.FormatInt(f.base+f.req.Length-1, 10))
		return ""
	}
	if f.offset == 0 {
		return ""
	}
	h.Set("Range", "bytes="+strconv.FormatInt(f.offset, 10)+"-")
	// A validator of another mirror would not match: without it the
	// Range is still checked against the expected length, and splicing
	// two versions of equal length is caught by the caller's hash check.
	if vURL, v := parseValidator(f.validator); v != "" && (vURL == "" || vURL == u) {
		h.Set("If-Range", v)
		return v
	}
	return ""
}

// answerPartial accepts a 206 that continues the file at the offset.
func (c *Client) answerPartial(f *fetchState, u string, resp *http.Response, sent string) error {
	if f.offset == 0 {
		// We sent no Range; a 206 anyway is nonsense.
		return permanent{fmt.Errorf("%w: %s: 206 to a request without Range", ErrBadResponse, redact(u))}
	}
	start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return permanent{fmt.Errorf("%w: %s: %v", ErrBadResponse, redact(u), err)}
	}
	if total != f.req.Length {
		return permanent{fmt.Errorf("%w: %s: Content-Range total %d, want %d", ErrLength, redact(u), total, f.req.Length)}
	}
	if start != f.offset {
		return permanent{fmt.Errorf("%w: %s: Content-Range starts at %d, asked for %d", ErrBadResponse, redact(u), start, f.offset)}
	}
	respValidator := validatorOf(resp)
	if sent != "" && respValidator != "" && !sameValidator(sent, resp) {
		// If-Range should have produced a 200: the server splices
		// versions. Start over with what it serves now.
		c.log.Warn("download: validator changed on a partial response; restarting", "url", redact(u))
		if err := c.restart(f, true); err != nil {
			return err
		}
		return errors.New("download: content changed")
	}
	return c.accept(f, u, respValidator)
}

// answerWhole accepts a 200: the file from its first byte, restarting the
// sink if it holds bytes already.
func (c *Client) answerWhole(f *fetchState, u string, resp *http.Response, sent string) error {
	if resp.ContentLength >= 0 && resp.ContentLength != f.req.Length {
		// Checked before restarting: a wrong answer must not cost the
		// bytes already delivered.
		return permanent{fmt.Errorf("%w: %s: Content-Length %d, want %d", ErrLength, redact(u), resp.ContentLength, f.req.Length)}
	}
	respValidator := validatorOf(resp)
	if f.offset > 0 {
		changed := sent != "" && respValidator != "" && !sameValidator(sent, resp)
		if changed {
			c.log.Info("download: file changed since the transfer began; restarting from 0", "url", redact(u))
		} else if _, logged := c.ignoresRange.LoadOrStore(hostOf(u), struct{}{}); !logged {
			c.log.Warn("download: server ignores Range; restarting from 0", "host", hostOf(u))
		}
		if err := c.restart(f, changed); err != nil {
			return err
		}
	}
	return c.accept(f, u, respValidator)
}

// answerUnsatisfiable handles a 416: done when the offset already is the
// length (nothing is missing), else the file shrank and starts over.
func (c *Client) answerUnsatisfiable(f *fetchState, u string, resp *http.Response, sent string) (bool, error) {
	if f.offset == f.req.Length {
		respValidator := validatorOf(resp)
		if vURL, _ := parseValidator(f.validator); respValidator != "" && f.validator == "" {
			f.validator = formatValidator(u, respValidator)
		} else if vURL == "" && sent != "" {
			f.validator = formatValidator(u, sent)
		}
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if total, err := parseUnsatisfiedRange(cr); err == nil && total != f.req.Length {
				return false, permanent{fmt.Errorf("%w: %s: file is now %d bytes, want %d", ErrLength, redact(u), total, f.req.Length)}
			}
		}
		return true, nil
	}
	// The file is shorter than what we already hold: it changed.
	c.log.Info("download: 416 below the expected length; restarting from 0", "url", redact(u), "offset", f.offset)
	if err := c.restart(f, true); err != nil {
		return false, err
	}
	return false, errors.New("download: range not satisfiable")
}

// answerRange accepts, for a ranged transfer, only a 206 of exactly the
// bytes asked for.
func (c *Client) answerRange(f *fetchState, u string, resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		return permanent{fmt.Errorf("%w: %s answered 200 to a range request", ErrNoRange, redact(u))}
	default:
		return permanent{&StatusError{StatusCode: resp.StatusCode, URL: redact(u)}}
	}
	cr := resp.Header.Get("Content-Range")
	first, last, _, err := parseByteRange(cr)
	if err != nil {
		return permanent{fmt.Errorf("%w: %s: %v", ErrBadResponse, redact(u), err)}
	}
	if want := f.base + f.offset; first != want || last != f.base+f.req.Length-1 {
		return permanent{fmt.Errorf("%w: %s: asked bytes %d-%d, got Content-Range %q", ErrNoRange, redact(u), want, f.base+f.req.Length-1, cr)}
	}
	return c.accept(f, u, validatorOf(resp))
}

// accept records the validator of a response whose bytes are about to be
// delivered.
func (c *Client) accept(f *fetchState, u, respValidator string) error {
	v := formatValidator(u, respValidator)
	if v == f.validator && f.offset > 0 {
		return nil
	}
	f.validator = v
	if vs, ok := f.sink.(ValidatorSink); ok {
		if err := vs.SetValidator(v); err != nil {
			return fmt.Errorf("%w: SetValidator: %w", ErrSink, err)
		}
	}
	return nil
}

// restart makes the sink start over. changed says the content changed
// (bounded by maxRestarts: ErrUnstable); otherwise the server ignores
// Range, and a link that keeps breaking is given up on after RetryMax such
// restarts (a permanent failure of this mirror, which never completes a
// file in one piece).
func (c *Client) restart(f *fetchState, changed bool) error {
	if changed {
		if f.changes >= maxRestarts {
			return fmt.Errorf("%w: restarted %d times", ErrUnstable, f.changes)
		}
		f.changes++
	} else {
		if f.rangeRestarts > c.cfg.RetryMax {
			return permanent{fmt.Errorf("download: server ignores Range and the transfer broke off %d times", f.rangeRestarts)}
		}
		f.rangeRestarts++
	}
	f.res.Restarts++
	if err := f.sink.Restart(); err != nil {
		return fmt.Errorf("%w: Restart: %w", ErrSink, err)
	}
	f.offset, f.validator = 0, ""
	if f.progress != nil {
		f.progress(0, f.req.Length)
	}
	return nil
}

// buffer is where the next body bytes are read (see [BufferFor]); the
// fixed buffer is made on first use, for sinks without buffers of their
// own.
func (f *fetchState) buffer(limit int) []byte {
	if _, own := f.sink.(BufferSink); !own && f.buf == nil {
		f.buf = make([]byte, limit)
	}
	return BufferFor(f.sink, f.buf, limit)
}

// deliver hands the sink the bytes just read into b (from buffer) and
// advances the offset by what the sink holds.
func (f *fetchState) deliver(b []byte) error {
	held, err := Deliver(f.sink, b)
	f.offset += int64(held)
	return err
}

// BufferFor returns where the next bytes for sink are to be read: the
// sink's own buffer when it is a [BufferSink], else buf; at most limit
// bytes. What is read there goes to the sink through [Deliver]. Fetch
// reads a body this way, and so may a caller that feeds a Sink from
// elsewhere (a local file).
func BufferFor(sink Sink, buf []byte, limit int) []byte {
	if bs, ok := sink.(BufferSink); ok {
		buf = bs.Buffer()
	}
	return buf[:min(len(buf), limit)]
}

// Deliver hands sink b, which was read into the buffer [BufferFor]
// returned: a [BufferSink] commits it, any other Sink gets it through
// Write. It returns how many of the bytes the sink holds, and an error if
// it does not hold them all (a short Write is io.ErrShortWrite).
func Deliver(sink Sink, b []byte) (held int, err error) {
	if bs, ok := sink.(BufferSink); ok {
		if err := bs.Commit(len(b)); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	w, err := sink.Write(b)
	if err == nil && w != len(b) {
		err = io.ErrShortWrite
	}
	if w < 0 || w > len(b) {
		return 0, err // a broken count: nothing is known to be held
	}
	return w, err
}

// stream copies the body to the sink, reading at most the bytes still
// missing.
func (c *Client) stream(ctx, actx context.Context, f *fetchState, u string, body io.Reader) error {
	watch := f.att.watch
	readErr := func(err error) error {
		if cause := tripped(ctx, actx); cause != nil {
			err = cause
		}
		return fmt.Errorf("download: %s: body cut at %d of %d: %w", redact(u), f.offset, f.req.Length, err)
	}
	for f.offset < f.req.Length {
		if err := c.pause(ctx); err != nil {
			return err
		}
		buf := f.buffer(c.chunkSize())
		n := int(min(int64(len(buf)), f.req.Length-f.offset))
		watch.arm()
		n, err := body.Read(buf[:n])
		watch.disarm(n)
		if n > 0 {
			f.res.Transferred += int64(n)
			if werr := c.wait(ctx, n); werr != nil {
				return fmt.Errorf("download: rate limit: %w", werr)
			}
			if werr := f.deliver(buf[:n]); werr != nil {
				return fmt.Errorf("%w: %w", ErrSink, werr)
			}
			if f.progress != nil {
				f.progress(f.offset, f.req.Length)
			}
		}
		if err == io.EOF {
			if f.offset < f.req.Length {
				return readErr(io.ErrUnexpectedEOF)
			}
			return nil
		}
		if err != nil {
			return readErr(err)
		}
	}
	// Everything expected is here. A body of unannounced length may hold
	// more: peek one byte to tell, never more.
	watch.arm()
	var one [1]byte
	n, _ := io.ReadFull(body, one[:])
	watch.disarm(n)
	if n > 0 {
		f.res.Transferred++
		return permanent{fmt.Errorf("%w: %s: more than %d bytes sent", ErrLength, redact(u), f.req.Length)}
	}
	return nil
}

func (c *Client) pause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.cfg.Pause == nil {
		return nil
	}
	if err := c.cfg.Pause(ctx); err != nil {
		return fmt.Errorf("%w: %w", errPause, err)
	}
	return nil
}

func (c *Client) setHeaders(r *http.Request) {
	r.Header.Set("User-Agent", c.cfg.UserAgent)
	// Offsets and lengths are of the bytes on the wire.
	r.Header.Set("Accept-Encoding", "identity")
}

// validatorOf returns the validator If-Range can use: a strong ETag, else
// Last-Modified, else "".
func validatorOf(resp *http.Response) string {
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		return et
	}
	return resp.Header.Get("Last-Modified")
}

// sameValidator reports whether resp carries the validator sent as
// If-Range, comparing like with like (ETag or date).
func sameValidator(sent string, resp *http.Response) bool {
	if strings.HasPrefix(sent, `"`) {
		et := resp.Header.Get("ETag")
		return et == "" || et == sent
	}
	lm := resp.Header.Get("Last-Modified")
	return lm == "" || lm == sent
}

// formatValidator binds a validator to the URL that produced it: another
// mirror's ETag would never match.
func formatValidator(u, v string) string {
	if v == "" {
		return ""
	}
	return u + " " + v
}

// parseValidator splits what formatValidator made. A bare ETag or date
// (not starting with a URL) applies to any mirror.
func parseValidator(s string) (u, v string) {
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		if u, v, ok := strings.Cut(s, " "); ok {
			return u, v
		}
		return "", ""
	}
	return "", s
}

func hostOf(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Host
	}
	return u
}

// redact drops userinfo and the query (which may hold credentials) from
// URLs that end up in logs and errors.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<invalid URL>"
	}
	p.User = nil
	p.RawQuery = ""
	return p.String()
}

// parseContentRange parses a satisfied byte range that reaches the end
// of the file, "bytes first-last/total", and returns first and total. The
// total must be known (not "*").
func parseContentRange(s string) (start, total int64, err error) {
	first, last, total, err := parseByteRange(s)
	if err != nil {
		return 0, 0, err
	}
	if total < 0 {
		return 0, 0, fmt.Errorf("Content-Range %q: no total", s)
	}
	if last != total-1 {
		// We ask for open-ended ranges: a server sending less than the
		// rest of the file is as suspicious as one sending more.
		return 0, 0, fmt.Errorf("Content-Range %q: does not reach the end of the file", s)
	}
	return first, total, nil
}

// parseByteRange parses a satisfied byte range, "bytes first-last/total"
// (RFC 9110), where total may be "*" (returned as -1). The range must lie
// within the total.
func parseByteRange(s string) (first, last, total int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q: not a byte range", s)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q: no total", s)
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q: no range", s)
	}
	first, err1 := parseDigits(a)
	last, err2 := parseDigits(b)
	total, err3 := int64(-1), error(nil)
	if tot != "*" {
		total, err3 = parseDigits(tot)
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, 0, fmt.Errorf("Content-Range %q: %w", s, err)
	}
	if first > last || (total >= 0 && last >= total) {
		return 0, 0, 0, fmt.Errorf("Content-Range %q: range outside the total", s)
	}
	return first, last, total, nil
}

// parseUnsatisfiedRange parses "bytes */total" (RFC 9110, 416 answers).
func parseUnsatisfiedRange(s string) (int64, error) {
	rest, ok := strings.CutPrefix(s, "bytes */")
	if !ok {
		return 0, fmt.Errorf("Content-Range %q: not an unsatisfied range", s)
	}
	return parseDigits(rest)
}

// parseDigits accepts only ASCII digits (no sign, no spaces), as RFC 9110
// does, without overflow.
func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
