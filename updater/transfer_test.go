package updater

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/download"
)

// isDeltaRange reports a request for a byte range of the image (the
// adaptive delta's chunks): an explicit "bytes=first-last", never the
// open-ended range of a resumed full transfer.
func isDeltaRange(r *http.Request) bool {
	rg := r.Header.Get("Range")
	return strings.HasSuffix(r.URL.Path, ".img") && strings.HasPrefix(rg, "bytes=") && !strings.HasSuffix(rg, "-")
}

// TestDeltaRangesUseTheDownloadClient: the byte ranges of an adaptive
// delta go through the updater's download client and its rules. A 206
// that stalls ends with the stall timeout (download.ErrStalled) instead of
// holding Install until its context ends; Pause is called for them; a
// mirror is tried when the first server refuses them. Before, they went
// through a bare http.Client: the stall held Install until the test's
// deadline, Pause was never called and no mirror was tried.
func TestDeltaRangesUseTheDownloadClient(t *testing.T) {
	base := image("1.1.0", 1<<20)
	next := edit(base)
	errMetered := errors.New("metered link")
	tests := []struct {
		name string
		// primary answers the delta's range requests (nil: normally).
		primary    func(w http.ResponseWriter, r *http.Request)
		mirror     bool // a good mirror in TargetsMirrors
		meter      bool // Pause fails once a delta range was requested
		wantErrOp  error
		wantMethod string
	}{
		{name: "stalled 206", primary: func(w http.ResponseWriter, r *http.Request) {
			// The range asked for, then nothing.
			w.Header().Set("Content-Range", "bytes "+strings.TrimPrefix(r.Header.Get("Range"), "bytes=")+"/"+strconv.Itoa(len(next)))
			w.WriteHeader(http.StatusPartialContent)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, wantErrOp: download.ErrStalled, wantMethod: methodFull},
		{name: "pause", meter: true, wantErrOp: errMetered},
		{name: "mirror", primary: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no ranges here", http.StatusNotFound)
		}, mirror: true, wantMethod: methodAdaptive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, d, _ := deltaDevice(t, base)
			repo.AddTarget("rootfs/1.2.0.img", next, custom("1.2.0"))
			publishIndex(t, repo, "rootfs/1.2.0.img", next, "1.2.0")
			repo.Publish()
			var ranges, mirrored atomic.Int64
			repo.Wrap(func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if isDeltaRange(r) && r.Header.Get("X-Mirror") == "" {
						ranges.Add(1)
						if tt.primary != nil {
							tt.primary(w, r)
							return
						}
					}
					h.ServeHTTP(w, r)
				})
			})
			var mirrors []string
			if tt.mirror {
				u, _ := url.Parse(repo.URL())
				proxy := httputil.NewSingleHostReverseProxy(u)
				m := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if isDeltaRange(r) {
						mirrored.Add(1)
					}
					r.Header.Set("X-Mirror", "1")
					proxy.ServeHTTP(w, r)
				}))
				t.Cleanup(m.Close)
				mirrors = []string{m.URL + "/targets/"}
			}
			d.cfg = func(c *Config) {
				c.TargetsMirrors = mirrors
				c.StallTimeout = 300 * time.Millisecond
				if tt.meter {
					c.Pause = func(context.Context) error {
						if ranges.Load() > 0 {
							return errMetered
						}
						return nil
					}
				}
			}
			d.start()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := d.updateCtx(ctx)
			if tt.wantMethod == "" {
				if !errors.Is(err, tt.wantErrOp) {
					t.Errorf("update: got %v, want %v", err, tt.wantErrOp)
				}
			} else if err != nil {
				t.Fatalf("update: %v", err)
			}
			if ranges.Load() == 0 {
				t.Fatal("no delta range requested")
			}
			if tt.wantErrOp != nil && !d.adaptiveFailed(tt.wantErrOp) {
				t.Errorf("no adaptive delta failure with %v among the events", tt.wantErrOp)
			}
			if tt.wantMethod != "" {
				if got := d.u.st.component("rootfs").Pending.Method; got != tt.wantMethod {
					t.Errorf("method %s, want %s", got, tt.wantMethod)
				}
			}
			if tt.mirror && mirrored.Load() == 0 {
				t.Error("the mirror served no delta range")
			}
		})
	}
}

// adaptiveFailed reports whether an ErrorEvent of the adaptive method
// wraps target.
func (d *device) adaptiveFailed(target error) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.events {
		if ee, ok := e.(ErrorEvent); ok && ee.Op == methodAdaptive && errors.Is(ee.Err, target) {
			return true
		}
	}
	return false
}
