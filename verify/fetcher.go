package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
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
// to ctx: the fetcher of switchback's download client (one per job: TUF
// metadata goes through the same client, with its stall and low-speed
// limits and deadline, as every other byte). A nil client means a private
// client with its own transport, never [http.DefaultClient]. The fetcher
// makes one attempt per file (the caller retries whole refreshes), maps a
// status other than 200 to *metadata.ErrDownloadHTTP, and stops reading a
// body as soon as it exceeds maxLength, whatever Content-Length said.
func NewHTTPFetcher(ctx context.Context, client *http.Client) Fetcher {
	dl, err := download.New(download.Config{HTTPClient: client, RetryMax: -1})
	if err != nil {
		// Not expected: a Config with only HTTPClient and RetryMax is valid.
		return failedFetcher{err}
	}
	return dl.Fetcher(ctx)
}

// failedFetcher fails every download with the error that prevented making
// a fetcher.
type failedFetcher struct{ err error }

func (f failedFetcher) DownloadFile(string, int64, time.Duration) ([]byte, error) {
	return nil, &fetchError{f.err}
}

// NewFileFetcher returns a [Fetcher] that reads file:// URLs (with an
// empty host or "localhost"): a TUF repository in a local directory — an
// update medium, a USB stick, a repository being published — verified
// exactly as over HTTP. A missing file is *metadata.ErrDownloadHTTP with
// StatusCode 404, which ends go-tuf's walk of root versions; a file over
// maxLength is *metadata.ErrDownloadLengthMismatch and is read no further
// than maxLength+1 bytes; ctx ends it between files.
func NewFileFetcher(ctx context.Context) Fetcher { return fileFetcher{ctx} }

type fileFetcher struct{ ctx context.Context }

func (f fileFetcher) DownloadFile(urlPath string, maxLength int64, _ time.Duration) ([]byte, error) {
	if err := f.ctx.Err(); err != nil {
		return nil, err
	}
	u, err := url.Parse(urlPath)
	if err != nil || u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") {
		return nil, &metadata.ErrValue{Msg: fmt.Sprintf("%q is not a local file:// URL", urlPath)}
	}
	fh, err := os.Open(u.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: urlPath}
	}
	if err != nil {
		return nil, &fetchError{err}
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxLength+1))
	if err != nil {
		return nil, &fetchError{err}
	}
	if int64(len(b)) > maxLength {
		return nil, tooLong(urlPath, "more than "+strconv.FormatInt(maxLength, 10), maxLength)
	}
	return b, nil
}

// fetchError marks a transport failure as a go-tuf download error while
// keeping the cause (net errors, context errors) reachable.
type fetchError struct{ err error }

func (e *fetchError) Error() string        { return "download error: " + e.err.Error() }
func (e *fetchError) Unwrap() error        { return e.err }
func (e *fetchError) Is(target error) bool { _, ok := target.(*metadata.ErrDownload); return ok }

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
