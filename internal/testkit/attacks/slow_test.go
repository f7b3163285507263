package attacks

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// stall accepts the request and never answers.
func stall(w http.ResponseWriter, req *http.Request, _ http.Handler) {
	<-req.Context().Done()
}

// trickle answers with the real file, announced in full, one byte every
// 20ms: bytes keep coming (no stall to detect), just never enough.
func trickle(w http.ResponseWriter, req *http.Request, next http.Handler) {
	rec := &recorder{header: http.Header{}}
	next.ServeHTTP(rec, req)
	w.Header().Set("Content-Length", strconv.Itoa(len(rec.body)))
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for _, b := range rec.body {
		if _, err := w.Write([]byte{b}); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-req.Context().Done():
			return
		case <-t.C:
		}
	}
}

// recorder captures a response in memory (the files are small).
type recorder struct {
	header http.Header
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(int)             {}
func (r *recorder) Write(p []byte) (int, error) { r.body = append(r.body, p...); return len(p), nil }

// TestSlowRetrieval: the server stalls (accepts, never answers) or
// trickles a byte at a time, on metadata or on the release. The device's
// ctx deadline ends the attempt with an error wrapping
// context.DeadlineExceeded (metadata: verify.ErrFetch too), nothing is
// activated, the release is not blocklisted (a slow network is not a bad
// release), and once the server answers the same release installs and
// commits.
//
// The updater has no knob for its download stall timeout (30s by
// default, in internal/download) nor a minimum transfer rate, so the
// deadline comes from ctx, as an application bounds one update cycle.
func TestSlowRetrieval(t *testing.T) {
	t.Parallel()
	const deadline = 300 * time.Millisecond
	tests := []struct {
		name     string
		metadata bool // the attack is on metadata (Check), else on the target (Install)
		match    func(r *tuftest.Repo) func(string) bool
		h        func(http.ResponseWriter, *http.Request, http.Handler)
		writes   writes
	}{
		{"stalled timestamp", true, func(*tuftest.Repo) func(string) bool { return suffix("/timestamp.json") }, stall, noWrites},
		{"trickled timestamp", true, func(*tuftest.Repo) func(string) bool { return suffix("/timestamp.json") }, trickle, noWrites},
		{"stalled targets metadata", true, func(*tuftest.Repo) func(string) bool { return suffix(".targets.json") }, stall, noWrites},
		{"stalled release", false, func(r *tuftest.Repo) func(string) bool { return suffix(targetFile(r, "1.2.0")) }, stall, noWrites},
		{"trickled release", false, func(r *tuftest.Repo) func(string) bool { return suffix(targetFile(r, "1.2.0")) }, trickle, someWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, d := trustingDevice(t)
			img := release(r, "1.2.0")
			f := addFault(r, tt.match(r), tt.h)
			before := d.snap()
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			var err error
			if tt.metadata {
				_, err = d.u.Check(ctx)
				wantErr(t, "Check", err, verify.ErrFetch, context.DeadlineExceeded)
			} else {
				ups, cerr := d.u.Check(context.Background())
				must(t, cerr)
				err = d.u.Install(ctx, ups[0])
				wantErr(t, "Install", err, context.DeadlineExceeded)
			}
			d.assertRefused(before, tt.writes)
			if st, _ := d.u.Status(context.Background()); len(st.Blocklist) != 0 {
				t.Errorf("blocklist %+v after a slow server, want empty", st.Blocklist)
			}
			f.on.Store(false)
			d.mustUpdate("1.2.0", img)
		})
	}
}
