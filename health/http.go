package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxHTTPBody is how much of a response body the [HTTP] check reads to match
// it; the rest is neither read into memory nor matched.
const MaxHTTPBody = 1 << 20

// HTTPDoer sends an HTTP request. It is satisfied by any *http.Client.
type HTTPDoer interface {
	Do(req *http.Request) (*http.Response, error)
}

// HTTPOption configures the [HTTP] check. An [Option] is an HTTPOption.
type HTTPOption interface{ applyHTTP(*httpCheck) }

type httpOption func(*httpCheck)

func (o httpOption) applyHTTP(h *httpCheck) { o(h) }
func (o Option) applyHTTP(h *httpCheck)     { o(&h.base) }

// WithStatus sets the range of accepted status codes, both ends included;
// the default is 200 to 299.
func WithStatus(lo, hi int) HTTPOption {
	return httpOption(func(h *httpCheck) { h.statusLo, h.statusHi = lo, hi })
}

// WithBodyContains requires the response body (its first [MaxHTTPBody]
// bytes) to contain s.
func WithBodyContains(s string) HTTPOption {
	return httpOption(func(h *httpCheck) { h.contains = append(h.contains, s) })
}

// WithBodyMatch requires the response body (its first [MaxHTTPBody] bytes)
// to match re.
func WithBodyMatch(re *regexp.Regexp) HTTPOption {
	return httpOption(func(h *httpCheck) {
		if re == nil {
			h.err = errors.New("WithBodyMatch: nil regexp")
			return
		}
		h.matches = append(h.matches, re)
	})
}

// WithHeader adds a request header, such as Authorization or Host.
func WithHeader(key, value string) HTTPOption {
	return httpOption(func(h *httpCheck) { h.header.Add(key, value) })
}

// WithHTTPClient sends the requests through c. The default is a client of
// the check's own (never http.DefaultClient) that keeps no idle
// connections, so a probe run once a minute holds no sockets in between.
func WithHTTPClient(c HTTPDoer) HTTPOption {
	return httpOption(func(h *httpCheck) {
		if c != nil {
			h.client = c
		}
	})
}

type httpCheck struct {
	base
	url                string
	statusLo, statusHi int
	contains           []string
	matches            []*regexp.Regexp
	header             http.Header
	client             HTTPDoer
	err                error // a bad option, reported by every run
}

// HTTP returns a check that GETs url and passes when the status code is in
// range (by default 2xx) and the body matches every [WithBodyContains] and
// [WithBodyMatch] given. Redirects are followed by the default client. Its
// default name is "http:" + url. Its errors quote the status and the start
// of the body.
func HTTP(url string, opts ...HTTPOption) HealthCheck {
	h := &httpCheck{
		base:     newBase("http:"+url, DefaultTimeout),
		url:      url,
		statusLo: 200, statusHi: 299,
		header: http.Header{},
		client: &http.Client{Transport: &http.Transport{
			Proxy:             http.ProxyFromEnvironment,
			DisableKeepAlives: true,
		}},
	}
	for _, o := range opts {
		if o != nil {
			o.applyHTTP(h)
		}
	}
	return h.finish(h.check)
}

func (h *httpCheck) check(ctx context.Context) error {
	if h.err != nil {
		return h.err
	}
	if h.statusLo < 100 || h.statusHi > 599 || h.statusLo > h.statusHi {
		return fmt.Errorf("invalid status range %d-%d: want 100 <= lo <= hi <= 599", h.statusLo, h.statusHi)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return fmt.Errorf("bad URL %q: %w", h.url, err)
	}
	req.Header = h.header.Clone() // requests run concurrently: share nothing
	if host := h.header.Get("Host"); host != "" {
		req.Host = host
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", h.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxHTTPBody))
	if err != nil {
		return fmt.Errorf("GET %s: status %d, reading body: %w", h.url, resp.StatusCode, err)
	}
	// Drain a little more so a small remainder does not reset the
	// connection, but never read an unbounded body.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	if resp.StatusCode < h.statusLo || resp.StatusCode > h.statusHi {
		return fmt.Errorf("GET %s: status %d, want %d-%d; body: %s", h.url, resp.StatusCode, h.statusLo, h.statusHi, excerpt(body))
	}
	for _, s := range h.contains {
		if !bytes.Contains(body, []byte(s)) {
			return fmt.Errorf("GET %s: status %d, body does not contain %q; body: %s", h.url, resp.StatusCode, s, excerpt(body))
		}
	}
	for _, re := range h.matches {
		if !re.Match(body) {
			return fmt.Errorf("GET %s: status %d, body does not match /%s/; body: %s", h.url, resp.StatusCode, re, excerpt(body))
		}
	}
	return nil
}

// excerpt shows the start of a body in an error message, on one line.
func excerpt(b []byte) string {
	const max = 200
	cut := len(b) > max
	if cut {
		b = b[:max]
	}
	s := printable(string(b))
	if s == "" {
		return "(empty)"
	}
	if cut {
		s += "..."
	}
	return s
}

// printable trims s and puts it on one line, with every control character
// or invalid byte shown as '?', so an error message stays readable.
func printable(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r == utf8.RuneError || !unicode.IsPrint(r):
			return '?'
		}
		return r
	}, s))
}
