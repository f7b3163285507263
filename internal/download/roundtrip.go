package download

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RoundTripper returns an [http.RoundTripper] over base for a layer that
// c's requests go through and that makes requests of its own, such as a
// container registry's auth transport (its ping of /v2/ and its token
// exchanges): put it under that layer, and the layer over it in c's
// [Config].HTTPClient. Requests of c's own (those of Fetch, Range, Get
// and the others, and the redirects they follow) go to base as they are:
// c already applies its rules to them, and retrying them here as well
// would multiply the retries. Every other request is sent under c's rules
// for small requests:
//
//   - Pause is called before each attempt, and its error ends the request;
//   - the response body is read whole (at most maxBody bytes: more fails
//     with *metadata.ErrDownloadLengthMismatch) under the stall and
//     low-speed limits, Pause and the rate limit, and handed back from
//     memory;
//   - connection errors, bodies cut short, stalls, 429 and 5xx other than
//     501 are retried up to RetryMax times with c's backoff, honouring
//     Retry-After; the last answer of a status that outlasted the retries
//     is returned for the caller to judge;
//   - all of it, retries included, within MetadataTimeout ([ErrDeadline]).
//
// A request made while one of c's requests waits for its answer (a token
// refreshed on a 401) is such a request too, and the time it takes is not
// counted as a stall of the request that waits for it. A request whose
// body cannot be sent again (no GetBody) is sent once.
//
// Once a RoundTripper is made, c marks its requests with a header the
// RoundTripper recognises and removes (so the layers between must pass
// on the headers of c's requests, as http.Client does on a redirect).
// Redirects are not followed here: the client over the RoundTripper
// follows them. The RoundTripper is safe for concurrent use; it shares
// c's Pause and rate limit.
func (c *Client) RoundTripper(base http.RoundTripper, maxBody int64) http.RoundTripper {
	c.marksOwn.Store(true)
	return &ruledTransport{c: c, base: base, maxBody: maxBody}
}

// ownHeader marks the requests of a Client for its RoundTripper, which
// removes it: no server sees it.
const ownHeader = "Switchback-Own-Request"

type ruledTransport struct {
	c       *Client
	base    http.RoundTripper
	maxBody int64
}

func (t *ruledTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get(ownHeader) != "" {
		r = r.Clone(r.Context()) // a RoundTripper must not change its request
		r.Header.Del(ownHeader)
		return t.base.RoundTrip(r)
	}
	if st := stateOf(r.Context()); st != nil {
		// Made in the middle of one of c's requests, whose watch
		// pauses meanwhile: this request has a watch of its own.
		st.watch.disarm(0)
		defer st.watch.arm()
	}
	return t.c.roundTrip(r, t.base, t.maxBody)
}

// roundTrip sends r with retries, the watch and Pause, within
// MetadataTimeout.
func (c *Client) roundTrip(r *http.Request, base http.RoundTripper, maxBody int64) (*http.Response, error) {
	outer, ctx := r.Context(), r.Context()
	if d := c.cfg.MetadataTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("%w: no answer within %v", ErrDeadline, d))
		defer cancel()
	}
	replayable := r.Body == nil || r.Body == http.NoBody || r.GetBody != nil
	w := c.newWatch()
	for failures := 0; ; failures++ {
		req, err := replay(ctx, r, failures)
		if err != nil {
			return nil, err
		}
		resp, err := c.sendOnce(ctx, w, base, req, maxBody)
		if err != nil && outer.Err() == nil && ctx.Err() != nil {
			return nil, context.Cause(ctx) // our deadline
		}
		if !replayable || !retryable(ctx, resp, err) {
			return resp, err
		}
		if failures >= c.cfg.RetryMax {
			if err != nil {
				err = fmt.Errorf("download: giving up after %d attempts: %w", failures+1, err)
			}
			return resp, err
		}
		wait := c.backoff(c.cfg.RetryWaitMin, c.cfg.RetryWaitMax, failures, resp)
		c.log.Info("download: retrying", "url", redact(r.URL.String()), "status", statusOf(resp), "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// replay returns attempt n of r, with ctx and, after the first, a fresh
// copy of its body.
func replay(ctx context.Context, r *http.Request, n int) (*http.Request, error) {
	req := r.WithContext(ctx)
	if n > 0 && r.GetBody != nil {
		body, err := r.GetBody()
		if err != nil {
			return nil, fmt.Errorf("download: request body: %w", err)
		}
		req.Body = body
	}
	return req, nil
}

// sendOnce makes one attempt of req: Pause, then the request and its body,
// read whole, under the watch w.
func (c *Client) sendOnce(ctx context.Context, w *watch, base http.RoundTripper, req *http.Request, maxBody int64) (*http.Response, error) {
	if err := c.pause(ctx); err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the request body, always
		}
		return nil, err
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w.start(cancel)
	defer w.stop()
	w.arm()
	resp, err := base.RoundTrip(req.WithContext(actx))
	w.disarm(0)
	if err != nil {
		if cause := tripped(ctx, actx); cause != nil {
			err = fmt.Errorf("waiting for response: %w", cause)
		}
		return nil, err
	}
	body := resp.Body
	defer body.Close()
	data, err := c.readSmall(ctx, actx, w, body, maxBody)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if req.Method != http.MethodHead { // a HEAD's length is the resource's
		resp.ContentLength = int64(len(data))
	}
	return resp, nil
}

// retryable reports whether an attempt that ended in resp or err may
// succeed if made again: retryablehttp's policy (connection errors but
// not certificate errors, 429, 5xx other than 501), bodies cut short, but
// neither a refusal of Pause, a body over the limit nor an HTTPS request
// answered by a server that does not speak TLS.
func retryable(ctx context.Context, resp *http.Response, err error) bool {
	var le *metadata.ErrDownloadLengthMismatch
	if errors.Is(err, errPause) || errors.As(err, &le) || permanentTLS(err) {
		return false
	}
	if err != nil {
		// The policy looks for certificate errors in the *url.Error
		// http.Client would have made.
		err = &url.Error{Op: "Get", URL: "", Err: err}
	}
	retry, _ := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	return retry
}

// permanentTLS reports a TLS failure that retrying cannot fix: the server
// speaks plain HTTP, or it refused this client's certificate.
func permanentTLS(err error) bool {
	return wrongProtocol(err) || rejectedCertificate(err)
}

// certificateAlerts are the TLS alerts by which a server refuses the
// client's certificate or its absence (RFC 8446, section 6.2).
var certificateAlerts = []tls.AlertError{
	42,  // bad_certificate
	43,  // unsupported_certificate
	44,  // certificate_revoked
	45,  // certificate_expired
	46,  // certificate_unknown
	48,  // unknown_ca
	49,  // access_denied
	116, // certificate_required
}

// rejectedCertificate reports whether err is the server's refusal of the
// client's certificate (or of its absence) in the handshake: a
// configuration to fix, not a transient fault. crypto/tls reports a
// received alert as a *net.OpError "remote error" around an unexported
// alert whose text is that of the same tls.AlertError.
func rejectedCertificate(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	for _, a := range certificateAlerts {
		if op.Err.Error() == a.Error() {
			return true
		}
	}
	return false
}

// wrongProtocol reports an HTTPS request answered by a server that does
// not speak TLS (net/http says so in words when the answer looks like
// HTTP): no retry can cure it.
func wrongProtocol(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) || (err != nil && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"))
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}
