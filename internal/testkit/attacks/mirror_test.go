package attacks

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// TestMixAndMatch: the server combines genuine, validly signed files of
// different times: an old targets or snapshot file under the name of the
// current version, or the genuine bytes of one release under another's
// name. The signed versions, lengths and hashes that tie each file to the
// one above it catch every combination.
func TestMixAndMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		attack func(t *testing.T, r *tuftest.Repo, old versions)
		want   []error
		writes writes
	}{
		{"old targets under the current version's name", func(t *testing.T, r *tuftest.Repo, old versions) {
			v := r.Version(repository.RoleTargets)
			r.SetFile(fmt.Sprintf("metadata/%d.targets.json", v), r.MetadataFile(fmt.Sprintf("%d.targets.json", old[repository.RoleTargets])))
		}, []error{verify.ErrUntrusted, &metadata.ErrBadVersionNumber{}}, noWrites},
		{"old snapshot under the current version's name", func(t *testing.T, r *tuftest.Repo, old versions) {
			v := r.Version(repository.RoleSnapshot)
			r.SetFile(fmt.Sprintf("metadata/%d.snapshot.json", v), r.MetadataFile(fmt.Sprintf("%d.snapshot.json", old[repository.RoleSnapshot])))
		}, []error{verify.ErrUntrusted, &metadata.ErrLengthOrHashMismatch{}}, noWrites},
		{"genuine bytes of the previous release under the new one's name", func(t *testing.T, r *tuftest.Repo, old versions) {
			r.SetTargetBytes(targetPath("1.2.0"), image("1.1.0"))
		}, []error{verify.ErrVerification}, someWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tuftest.New(t)
			d := newDevice(t, r, nil)
			release(r, "1.1.0")
			d.trust()
			old := published(r)
			release(r, "1.2.0")
			before := d.snap()
			tt.attack(t, r, old)
			err := d.update(context.Background())
			wantErr(t, "update", err, tt.want...)
			d.assertRefused(before, tt.writes)
			r.ClearOverrides()
			d.honestUpdate("1.3.0")
		})
	}
}

// TestMaliciousMirror: the device lists mirrors (Config.MetadataMirrors,
// TargetsMirrors) that it falls back to when the origin fails; here the
// origin answers 404 and a mirror is stale (a copy of an older
// repository), serves an attacker's own repository, or serves other bytes
// for a release. A mirror is trusted for nothing: the device refuses what
// it serves exactly as it would from the origin, writes nothing to a
// running slot, arms nothing, and takes the next honest release once the
// origin is back.
func TestMaliciousMirror(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// mirror returns the mirror's base URL, made after the device
		// first refreshed and before the publisher ships 1.2.0.
		mirror func(t *testing.T, r *tuftest.Repo) string
		// origin is the part of the origin that fails (404).
		origin string
		want   []error
		writes writes
	}{
		{"stale metadata mirror", func(t *testing.T, r *tuftest.Repo) string {
			stale := r.Mirror()
			// The device will trust metadata newer than the mirror's.
			must(t, r.Repository().Bump(repository.RoleSnapshot))
			r.Publish()
			return stale.URL
		}, "/metadata/", []error{verify.ErrUntrusted, &metadata.ErrBadVersionNumber{}}, noWrites},
		{"mirror serving the attacker's own repository", func(t *testing.T, r *tuftest.Repo) string {
			evil := tuftest.New(t)
			evil.AddTarget(targetPath("6.6.6"), image("6.6.6"), custom("6.6.6"))
			evil.Publish()
			return evil.URL()
		}, "/metadata/", []error{verify.ErrUntrusted, &metadata.ErrUnsignedMetadata{}}, noWrites},
		{"targets mirror serving other bytes", func(t *testing.T, r *tuftest.Repo) string {
			return garbageServer(t, "/targets/").URL
		}, "/targets/", []error{verify.ErrVerification}, someWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := tuftest.New(t)
			var mirror string
			clk := newClock()
			d := newDevice(t, r, func(c *updater.Config) {
				c.Now = clk.Now
				if mirror != "" {
					c.MetadataMirrors = []string{mirror + "/metadata/"}
					c.TargetsMirrors = []string{mirror + "/targets/"}
				}
			})
			d.trust()
			mirror = tt.mirror(t, r)
			d.start()
			if tt.origin == "/metadata/" {
				// Make the device trust the newest metadata before the
				// origin goes away.
				if _, err := d.u.Check(context.Background()); !errorsIsNoUpdate(err) {
					t.Fatalf("Check: %v, want no update", err)
				}
			}
			img := release(r, "1.2.0")
			down := addFault(r, prefix(tt.origin), func(w http.ResponseWriter, req *http.Request, _ http.Handler) {
				http.NotFound(w, req)
			})
			before := d.snap()
			served := mirrorRequests(t, d)
			err := d.update(context.Background())
			wantErr(t, "update", err, tt.want...)
			d.assertRefused(before, tt.writes)
			if mirrorRequests(t, d) == served {
				t.Error("the mirror was never asked: the test does not test it")
			}
			down.on.Store(false)
			// Bytes that failed verification back the release off for a
			// minute (they are the network's fault: no ban).
			clk.Advance(2 * time.Minute)
			d.mustUpdate("1.2.0", img)
		})
	}

	// A mirror is asked for every root version the origin does not have
	// (404 is the normal end of the root walk), so one that answers
	// anything else must not stop a device whose origin is healthy.
	t.Run("mirror answering for a root version the origin does not have", func(t *testing.T) {
		t.Parallel()
		r := tuftest.New(t)
		evil := garbageServer(t, "/")
		d := newDevice(t, r, func(c *updater.Config) {
			c.MetadataMirrors = []string{evil.URL + "/metadata/"}
			c.TargetsMirrors = []string{evil.URL + "/targets/"}
		})
		d.honestUpdate("1.1.0")
		d.honestUpdate("1.2.0")
	})
}

// garbageServer answers 200 with bytes of 0x66 for every path under
// prefix, 404 elsewhere.
func garbageServer(t *testing.T, prefix string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, prefix) {
			http.NotFound(w, req)
			return
		}
		evil := bytes.Repeat([]byte{0x66}, imageSize)
		http.ServeContent(w, req, "evil", zeroTime, bytes.NewReader(evil))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// mirrorRequests counts the device's requests that did not go to the
// origin.
func mirrorRequests(t *testing.T, d *device) int {
	d.net.mu.Lock()
	defer d.net.mu.Unlock()
	origin := strings.TrimPrefix(d.repo.URL(), "http://")
	n := 0
	for host, k := range d.net.hosts {
		if host != origin {
			n += k
		}
	}
	return n
}
