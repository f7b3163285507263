package tuftest

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

func matches(req *http.Request, urlPath string) bool {
	return req.URL.Path == "/"+strings.TrimPrefix(urlPath, "/")
}

// Stall makes requests for urlPath hang without sending a byte until the
// client gives up or the test ends (slow retrieval attack).
func (r *Repo) Stall(urlPath string) {
	r.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if !matches(req, urlPath) {
				h.ServeHTTP(w, req)
				return
			}
			select {
			case <-req.Context().Done():
			case <-r.done:
			}
		})
	})
}

// EndlessBody answers requests for urlPath with 200 and a body that never
// ends, without Content-Length, until the client stops reading (endless
// data attack).
func (r *Repo) EndlessBody(urlPath string) {
	chunk := bytes.Repeat([]byte("A"), 32<<10)
	r.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if !matches(req, urlPath) {
				h.ServeHTTP(w, req)
				return
			}
			w.WriteHeader(http.StatusOK)
			for {
				select {
				case <-req.Context().Done():
					return
				case <-r.done:
					return
				default:
				}
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})
	})
}

// OversizeBody answers requests for urlPath with n bytes of filler and a
// Content-Length of n, streamed rather than held in memory.
func (r *Repo) OversizeBody(urlPath string, n int64) {
	chunk := bytes.Repeat([]byte(" "), 32<<10)
	r.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if !matches(req, urlPath) {
				h.ServeHTTP(w, req)
				return
			}
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			w.WriteHeader(http.StatusOK)
			for left := n; left > 0; {
				k := min(left, int64(len(chunk)))
				if _, err := w.Write(chunk[:k]); err != nil {
					return
				}
				left -= k
			}
		})
	})
}
