package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// route is what a request path names.
type route int

const (
	routeNone     route = iota
	routeMetadata       // /metadata/<file>
	routeTarget         // /targets/<path>
)

// Path prefixes the relay serves; an edge device's updater.Config takes
// MetadataURL "https://<gateway>/metadata/" and TargetsURL
// "https://<gateway>/targets/".
const (
	MetadataPrefix = "/metadata/"
	TargetsPrefix  = "/targets/"
)

// parsePath splits a request path into its route and the name under it.
// A metadata name is one path segment; a target path is one or more
// segments, none empty, "." or "..".
func parsePath(p string) (route, string) {
	if name, ok := strings.CutPrefix(p, MetadataPrefix); ok {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return routeNone, ""
		}
		return routeMetadata, name
	}
	if rel, ok := strings.CutPrefix(p, TargetsPrefix); ok {
		if rel == "" || strings.ContainsRune(rel, 0) {
			return routeNone, ""
		}
		for seg := range strings.SplitSeq(rel, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return routeNone, ""
			}
		}
		return routeTarget, rel
	}
	return routeNone, ""
}

// ServeHTTP serves the verified metadata under /metadata/ and the
// verified targets under /targets/, with the names the upstream
// repository uses, GET and HEAD only. Range, If-Range, If-None-Match and
// If-Modified-Since are answered as by http.ServeContent (ETags are
// strong: a hash of the bytes). A signed target not cached yet is fetched
// from upstream first; after [Config].MissWait the answer is 503 with
// Retry-After. Anything not verified, or no longer fresh, is 404.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch rt, name := parsePath(req.URL.Path); rt {
	case routeMetadata:
		r.serveMetadata(w, req, name)
	case routeTarget:
		r.serveTarget(w, req, name)
	default:
		http.NotFound(w, req)
	}
}

// serveMetadata serves one file of the published set. Root versions are
// served whatever the time; the other roles only until the set expires:
// then the relay serves nothing newer, and edge devices go to their next
// mirror.
func (r *Relay) serveMetadata(w http.ResponseWriter, req *http.Request, name string) {
	s := r.set.Load()
	if s == nil {
		http.NotFound(w, req)
		return
	}
	b, ok := s.files[name]
	if !ok || (!s.roots[name] && !s.fresh(r.now())) {
		http.NotFound(w, req)
		return
	}
	sum := sha256.Sum256(b)
	h := w.Header()
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, req, name, time.Time{}, bytes.NewReader(b))
}

// serveTarget serves a signed target from the cache, fetching it first
// (for at most MissWait) when it is not there.
func (r *Relay) serveTarget(w http.ResponseWriter, req *http.Request, rel string) {
	s := r.set.Load()
	if s == nil || !s.fresh(r.now()) {
		http.NotFound(w, req)
		return
	}
	tf, ok := s.lookup(rel)
	if !ok {
		http.NotFound(w, req)
		return
	}
	wt := r.want(s, tf)
	if !r.cache.has(wt.key) {
		ctx, cancel := context.WithTimeout(req.Context(), r.cfg.MissWait)
		err := r.cache.fetch(ctx, r.base, wt, nil)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded) && req.Context().Err() == nil:
			// Still downloading: the edge device's client retries.
			w.Header().Set("Retry-After", "5")
			http.Error(w, "fetching from upstream, retry later", http.StatusServiceUnavailable)
			return
		default:
			r.log.Warn("relay: target not available", "path", tf.Path, "err", err)
			http.NotFound(w, req)
			return
		}
	}
	f, release, ok := r.cache.open(wt.key)
	if !ok {
		http.NotFound(w, req)
		return
	}
	defer release()
	fi, err := f.Stat()
	if err != nil || fi.Size() != tf.Length {
		r.log.Error("relay: cached target has the wrong size", "path", tf.Path, "key", wt.key)
		http.NotFound(w, req)
		return
	}
	h := w.Header()
	h.Set("ETag", `"`+wt.key+`"`)
	h.Set("Content-Type", "application/octet-stream")
	var content io.ReadSeeker = f
	if req.Method == http.MethodGet && req.Header.Get("Range") == "" {
		v, err := verify.NewVerifier(wt.length, wt.hashes)
		if err == nil {
			content = &scrubReader{f: f, v: v, bad: func(err error) {
				r.log.Error("relay: cached target does not match its signed metadata: evicting it", "path", tf.Path, "err", err)
				r.cache.drop(wt.key)
			}}
		}
	}
	http.ServeContent(w, req, "", fi.ModTime(), content)
}

// scrubReader checks a cached file against its signed metadata while it
// is served whole: when the last bytes do not make the trusted hashes, it
// withholds them (the response ends short, a transfer error for the
// client, never a complete wrong file) and reports the file, which is
// evicted so that the next request fetches it again. The bytes before
// were sent: the edge device's own verification refuses them.
type scrubReader struct {
	f   *os.File
	v   *verify.Verifier
	pos int64
	bad func(error)
}

func (s *scrubReader) Read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	if n > 0 && s.pos == s.v.Written() {
		s.v.Write(p[:n]) // an overlong file fails Verify below
	}
	s.pos += int64(n)
	if s.v.Written() == s.v.Length() && s.pos == s.v.Length() && s.bad != nil {
		if verr := s.v.Verify(); verr != nil {
			s.bad(verr)
			s.bad = nil
			return 0, verr
		}
	}
	return n, err
}

// Seek lets http.ServeContent find the size; hashing resumes only if the
// reads come back to where it stopped.
func (s *scrubReader) Seek(off int64, whence int) (int64, error) {
	pos, err := s.f.Seek(off, whence)
	if err == nil {
		s.pos = pos
	}
	return pos, err
}
