package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"

	"github.com/switchback-ota/switchback/internal/download"
)

// Fetcher downloads one metadata file; it is go-tuf's interface, so any
// go-tuf fetcher fits. An implementation must return
// &metadata.ErrDownloadHTTP{StatusCode: 404} when the file does not exist
// (that ends the walk of root versions) and must not return more than
// maxLength bytes.
type Fetcher = fetcher.Fetcher

// NewHTTPFetcher returns a [Fetcher] whose requests use client and are bound
// to ctx. A nil client means a private client with its own transport, never
// [http.DefaultClient]. The fetcher makes one attempt per file (the caller
// retries whole refreshes), maps a status other than 200 to
// *metadata.ErrDownloadHTTP, and stops reading a body as soon as it exceeds
// maxLength, whatever Content-Length said.
func NewHTTPFetcher(ctx context.Context, client *http.Client) Fetcher {
	if client == nil {
		client = defaultClient()
	}
	return &httpFetcher{ctx: ctx, client: client}
}

func defaultClient() *http.Client {
	var tr *http.Transport
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		tr = dt.Clone()
	} else {
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment}
	}
	// The context bounds a whole refresh; this bounds a server that
	// accepts the connection and never answers.
	tr.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: tr}
}

type httpFetcher struct {
	ctx    context.Context
	client *http.Client
}

// fetchError marks a transport failure as a go-tuf download error while
// keeping the cause (net errors, context errors) reachable.
type fetchError struct{ err error }

func (e *fetchError) Error() string        { return "download error: " + e.err.Error() }
func (e *fetchError) Unwrap() error        { return e.err }
func (e *fetchError) Is(target error) bool { _, ok := target.(*metadata.ErrDownload); return ok }

func (f *httpFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	data, _, _, err := f.DownloadFileConditional(urlPath, maxLength, "")
	return data, err
}

// DownloadFileConditional implements [ConditionalFetcher]: validator is
// sent as If-None-Match (an ETag) or If-Modified-Since (a date).
func (f *httpFetcher) DownloadFileConditional(urlPath string, maxLength int64, validator string) ([]byte, bool, string, error) {
	if maxLength < 0 {
		return nil, false, "", &metadata.ErrValue{Msg: fmt.Sprintf("negative maximum length %d for %s", maxLength, urlPath)}
	}
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, urlPath, nil)
	if err != nil {
		return nil, false, "", &fetchError{err}
	}
	download.SetConditional(req.Header, validator)
	res, err := f.client.Do(req)
	if err != nil {
		return nil, false, "", &fetchError{err}
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		// Read a short error page (a static server's 404 for the next
		// root version) to its end, so that the connection is reused
		// for the timestamp: an idle check then costs one connection
		// (one TLS handshake), not two.
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxErrorBody))
	}
	if res.StatusCode == http.StatusNotModified && validator != "" {
		return nil, true, responseValidator(res, validator), nil
	}
	if res.StatusCode != http.StatusOK {
		return nil, false, "", &metadata.ErrDownloadHTTP{StatusCode: res.StatusCode, URL: urlPath}
	}
	if res.ContentLength > maxLength {
		return nil, false, "", tooLong(urlPath, strconv.FormatInt(res.ContentLength, 10), maxLength)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxLength+1))
	if err != nil {
		return nil, false, "", &fetchError{err}
	}
	if int64(len(data)) > maxLength {
		return nil, false, "", tooLong(urlPath, "more than "+strconv.FormatInt(maxLength, 10), maxLength)
	}
	return data, false, responseValidator(res, ""), nil
}

// maxErrorBody is how much of an error response is read so that its
// connection can be reused.
const maxErrorBody = 4 << 10

// responseValidator is the ETag of a response, else its Last-Modified,
// else def.
func responseValidator(res *http.Response, def string) string {
	if v := res.Header.Get("ETag"); v != "" {
		return v
	}
	if v := res.Header.Get("Last-Modified"); v != "" {
		return v
	}
	return def
}

func tooLong(url, got string, max int64) error {
	return &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %s bytes, more than the allowed %d", url, got, max)}
}

// limitFetcher holds any Fetcher to maxLength, so that a custom one cannot
// hand go-tuf more than it asked for, and marks its failures as download
// errors (whatever their type: stalls, exhausted mirrors...) so that they
// are told apart from refused metadata. An oversized body stays a refusal.
type limitFetcher struct{ f Fetcher }

func (l limitFetcher) DownloadFile(urlPath string, maxLength int64, timeout time.Duration) ([]byte, error) {
	data, err := l.f.DownloadFile(urlPath, maxLength, timeout)
	if err != nil {
		if errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
			return nil, err
		}
		return nil, &fetchError{err}
	}
	if int64(len(data)) > maxLength {
		return nil, tooLong(urlPath, strconv.Itoa(len(data)), maxLength)
	}
	return data, nil
}

// isFetchFailure reports whether err says metadata could not be fetched,
// as opposed to fetched and refused.
func isFetchFailure(err error) bool {
	if errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
		return false // the server sent more than trusted metadata allows
	}
	var ne net.Error
	return errors.Is(err, &metadata.ErrDownload{}) || errors.As(err, &ne) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// rootRecorder keeps the root versions fetched during a refresh, so that
// the walked chain can be stored.
type rootRecorder struct {
	f    Fetcher
	mu   sync.Mutex
	seen map[int64][]byte
}

func (r *rootRecorder) DownloadFile(urlPath string, maxLength int64, timeout time.Duration) ([]byte, error) {
	data, err := r.f.DownloadFile(urlPath, maxLength, timeout)
	if err != nil {
		return data, err
	}
	// go-tuf asks for "<base>/<N>.root.json" once per version.
	name := urlPath[strings.LastIndex(urlPath, "/")+1:]
	vs, ok := strings.CutSuffix(name, ".root.json")
	if !ok {
		return data, nil
	}
	v, perr := strconv.ParseInt(vs, 10, 64)
	if perr != nil {
		return data, nil
	}
	if m, perr := metadata.Root().FromBytes(data); perr == nil && m.Signed.Version == v {
		r.mu.Lock()
		if r.seen == nil {
			r.seen = map[int64][]byte{}
		}
		if _, dup := r.seen[v]; !dup {
			r.seen[v] = data
		}
		r.mu.Unlock()
	}
	return data, nil
}

func (r *rootRecorder) roots() map[int64][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.seen)
}
