package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/internal/durable"
)

// ConditionalFetcher is an optional ability of a [Fetcher]: a conditional
// download that answers notModified, with no body, when the file still has
// the validator (ETag or Last-Modified) an earlier download returned. With
// it, a refresh that finds nothing changed costs two requests and no body:
// the probe for the next root version answered 404, and timestamp.json
// answered 304 (see [Config.FullRefreshInterval] for a cheaper, opt-in,
// non-conformant mode).
type ConditionalFetcher interface {
	Fetcher
	// DownloadFileConditional fetches urlPath (at most maxLength bytes)
	// unless it still has validator; an empty validator fetches it
	// unconditionally. It returns the validator of the bytes returned, or
	// of the unchanged file.
	DownloadFileConditional(urlPath string, maxLength int64, validator string) (data []byte, notModified bool, newValidator string, err error)
}

// idleFile, in Dir, remembers the ETag of the trusted timestamp.json, if
// the server gave one, and when the last full refresh (root walk included)
// ran.
const idleFile = "timestamp.validator"

type idleState struct {
	// Validator is the server's ETag for the timestamp whose bytes hash to
	// SHA256, or "".
	Validator string `json:"validator"`
	SHA256    string `json:"sha256"`
	// Full is when the last refresh that walked the root chain succeeded.
	Full time.Time `json:"full"`
	// Root is the version of the root trusted after the last refresh: an
	// idle check starts from that very root, or is a full refresh.
	Root int64 `json:"root"`
}

func (c *Client) readIdle() (idleState, bool) {
	var s idleState
	b, err := os.ReadFile(filepath.Join(c.cfg.Dir, idleFile))
	if err != nil || json.Unmarshal(b, &s) != nil {
		return idleState{}, false
	}
	return s, true
}

func (c *Client) writeIdle(s idleState) {
	b, err := json.Marshal(s)
	if err == nil {
		err = durable.WriteFile(filepath.Join(c.cfg.Dir, idleFile), b, 0o600)
	}
	if err != nil {
		// Only an optimisation: the next refresh is a full one.
		c.log.Warn("cannot save the timestamp validator", "err", err)
	}
}

// skipMode reports whether the opt-in mode that may skip the root walk is
// on (see [Config.FullRefreshInterval]).
func (c *Client) skipMode() bool { return c.cfg.FullRefreshInterval > 0 }

// DefaultFullRefreshInterval is a suggested [Config.FullRefreshInterval]
// for the opt-in mode that skips the walk of the root chain while the
// timestamp is unchanged. It is not applied by default: the default is the
// TUF workflow, which looks for a new root at every refresh.
const DefaultFullRefreshInterval = 24 * time.Hour

// idleFetcher wraps the fetcher of one refresh and makes an unchanged
// timestamp cheap. By default it leaves the order of the TUF workflow
// alone: go-tuf walks the root chain (one N+1.root.json probe answered 404
// when nothing changed), then asks for timestamp.json, which the
// idleFetcher fetches conditionally when the trusted one has a known ETag:
// a 304 hands go-tuf the trusted bytes again (equal version: nothing
// changes). An idle check is thus two requests and no body.
//
// In the opt-in mode (positive [Config.FullRefreshInterval]), prefetch asks
// for timestamp.json before go-tuf starts; when it is unchanged and a full
// refresh ran within the interval, go-tuf gets a 404 for the next root
// version without a request, so the check is one request. That departs
// from TUF 5.3 (a root published without a new timestamp is seen only at
// the next full refresh) and is documented as such.
//
// Security: "not modified" is not trusted on its own. go-tuf still checks
// the trusted timestamp's signatures and expiry against the clock, so a
// server or attacker answering 304 forever freezes a device no longer than
// the timestamp's expiry, as TUF allows.
type idleFetcher struct {
	Fetcher
	c     *Client
	state idleState
	known bool // state describes the trusted timestamp.json
	full  bool // this refresh walks the root chain

	ts     []byte // the prefetched timestamp, handed to go-tuf once
	tsURL  string
	tsUsed bool
	got    string // validator of the timestamp, saved after success
}

func (c *Client) newIdleFetcher(f Fetcher, rootVersion int64) *idleFetcher {
	i := &idleFetcher{Fetcher: f, c: c, full: true,
		tsURL: strings.TrimSuffix(c.cfg.MetadataURL, "/") + "/" + metadata.TIMESTAMP + ".json"}
	if _, ok := f.(ConditionalFetcher); !ok {
		return i
	}
	s, ok := c.readIdle()
	if !ok || s.Root != rootVersion {
		return i
	}
	local, err := os.ReadFile(filepath.Join(c.cfg.Dir, metadata.TIMESTAMP+".json"))
	if err != nil {
		return i
	}
	sum := sha256.Sum256(local)
	if hex.EncodeToString(sum[:]) != s.SHA256 {
		return i
	}
	i.state, i.known = s, true
	if c.skipMode() {
		now := c.now()
		i.full = now.Sub(s.Full) >= c.cfg.FullRefreshInterval || now.Before(s.Full)
	}
	return i
}

// prefetch fetches the timestamp before go-tuf runs, in the opt-in mode
// only; see the type's comment.
func (i *idleFetcher) prefetch(maxLength int64) error {
	if !i.c.skipMode() {
		return nil
	}
	return i.fetchTimestamp(maxLength)
}

// fetchTimestamp fetches timestamp.json, conditionally when the trusted
// one has a known ETag, and keeps it for go-tuf.
func (i *idleFetcher) fetchTimestamp(maxLength int64) error {
	cf, ok := i.Fetcher.(ConditionalFetcher)
	if !ok {
		return nil
	}
	validator := ""
	if i.known {
		validator = i.state.Validator // an ETag, or ""
	}
	data, notModified, v, err := cf.DownloadFileConditional(i.tsURL, maxLength, validator)
	if err != nil {
		return err
	}
	local, _ := os.ReadFile(filepath.Join(i.c.cfg.Dir, metadata.TIMESTAMP+".json"))
	switch {
	case notModified && i.known:
		data = local
	case notModified:
		return &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotModified, URL: i.tsURL}
	case !i.known || !bytes.Equal(data, local):
		i.full = true
	}
	if !download.IsETag(v) {
		// Only an ETag says "these bytes". A Last-Modified date would
		// answer 304 for an older file too (a stale mirror), which then
		// goes unnoticed; without an ETag the timestamp comes whole and
		// is compared with the trusted one.
		v = ""
	}
	i.ts, i.got = data, v
	return nil
}

func (i *idleFetcher) DownloadFile(urlPath string, maxLength int64, timeout time.Duration) ([]byte, error) {
	if urlPath == i.tsURL && i.ts == nil && !i.tsUsed {
		if err := i.fetchTimestamp(maxLength); err != nil {
			return nil, err
		}
	}
	switch {
	case i.ts != nil && !i.tsUsed && urlPath == i.tsURL:
		i.tsUsed = true
		if int64(len(i.ts)) > maxLength {
			return nil, &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("timestamp of %d bytes, more than %d", len(i.ts), maxLength)}
		}
		return i.ts, nil
	case i.ts != nil && !i.full && strings.HasSuffix(urlPath, ".root.json"):
		// The idle path: no root walk (see the type's comment).
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: urlPath}
	}
	data, err := i.Fetcher.DownloadFile(urlPath, maxLength, timeout)
	if err == nil && strings.HasSuffix(urlPath, ".root.json") {
		// A new root: the timestamp is judged afresh, never "not
		// modified" against what the old root trusted.
		i.known = false
	}
	return data, err
}

// done records the outcome of a refresh: after a success, the validator of
// the trusted timestamp (and the time, after a full refresh); after a
// failure, nothing, so that the next refresh is a full one.
func (i *idleFetcher) done(err error, rootVersion int64) {
	path := filepath.Join(i.c.cfg.Dir, idleFile)
	if err != nil || i.ts == nil {
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			i.c.log.Warn("cannot remove the timestamp validator", "err", rerr)
		}
		return
	}
	local, rerr := os.ReadFile(filepath.Join(i.c.cfg.Dir, metadata.TIMESTAMP+".json"))
	if rerr != nil {
		return
	}
	sum := sha256.Sum256(local)
	s := idleState{Validator: i.got, SHA256: hex.EncodeToString(sum[:]), Full: i.state.Full, Root: rootVersion}
	if i.full {
		s.Full = i.c.now()
	}
	i.c.writeIdle(s)
}
