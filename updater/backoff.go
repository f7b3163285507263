package updater

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// ErrBackoff is wrapped by the error of Check (and RunOnce) when the
// release a component would take is waiting out a backoff: its bytes
// failed verification in transit, from every server, not long ago.
var ErrBackoff = errors.New("updater: release in backoff after failing verification in transit")

// Bytes that fail verification in transit — a proxy answering 200 with an
// HTML page, a wrong Content-Length, a flipped byte — are the network's
// fault, not the release's: the release is never blocklisted for them
// (only a failure on the device is: trial boot, health, crash loop). The
// same Install first tries the next mirror; when every server failed, the
// target backs off, from backoffMin doubling up to backoffMax, so that a
// device behind a broken proxy does not download a large image in a loop.
const (
	backoffMin = time.Minute
	backoffMax = 24 * time.Hour
)

// transitBackoff records a target whose bytes failed verification in
// transit. Persisted in the state file, by target sha256.
type transitBackoff struct {
	Component string `json:"component"`
	Version   string `json:"version"`
	// TargetsVersion is the version of the signed targets metadata at the
	// failure: new signed metadata resets the backoff.
	TargetsVersion int64     `json:"targets_version"`
	Failures       int       `json:"failures"`
	Until          time.Time `json:"until"`
	Reason         string    `json:"reason"`
}

// backoffDelay is the wait after the n-th failure (n ≥ 1).
func backoffDelay(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// backoff returns the backoff of target sha, if it has one.
func (s *store) backoff(sha string) (transitBackoff, bool) {
	b, ok := s.p.Backoff[sha]
	return b, ok
}

// setBackoff records the backoff of target sha.
func (s *store) setBackoff(sha string, b transitBackoff) {
	if s.p.Backoff == nil {
		s.p.Backoff = map[string]transitBackoff{}
	}
	s.p.Backoff[sha] = b
}

// clearBackoff forgets the backoff of target sha; it reports whether there
// was one.
func (s *store) clearBackoff(sha string) bool {
	_, ok := s.p.Backoff[sha]
	delete(s.p.Backoff, sha)
	return ok
}

// resetBackoffs forgets the backoffs that new signed metadata voids: those
// recorded under another targets version, or of targets no longer listed
// with the same hash (trusted maps path to sha256). It reports whether any
// was forgotten.
func (s *store) resetBackoffs(targetsVersion int64, trusted map[string]string) bool {
	listed := make(map[string]bool, len(trusted))
	for _, sha := range trusted {
		listed[sha] = true
	}
	changed := false
	for sha, b := range s.p.Backoff {
		if b.TargetsVersion != targetsVersion || !listed[sha] {
			delete(s.p.Backoff, sha)
			changed = true
		}
	}
	return changed
}

// inBackoff returns an error wrapping ErrBackoff when target t may not be
// fetched yet.
func (u *Updater) inBackoff(c *Component, t verify.Target) error {
	b, ok := u.st.backoff(t.SHA256())
	if !ok || !u.now().Before(b.Until) {
		return nil
	}
	return fmt.Errorf("component %s: %s (%s) failed verification in transit %d time(s) (%s); next try after %s: %w",
		c.Name, t.Custom.Version, t.Path, b.Failures, b.Reason, b.Until.Format(time.RFC3339), ErrBackoff)
}

// transitFailed records that t's bytes failed verification from every
// server: the pending install is dropped (with the light checkpoint of its
// bytes) and the target backs off. The release is not blocklisted.
func (u *Updater) transitFailed(c *Component, t verify.Target, err error) {
	sha := t.SHA256()
	cs := u.st.component(c.Name)
	cs.Pending = nil
	_ = os.Remove(filepath.Join(filepath.Dir(u.st.path), lightFile))
	b, _ := u.st.backoff(sha)
	b.Failures++
	b.Component, b.Version, b.Reason = c.Name, t.Custom.Version, err.Error()
	b.TargetsVersion = u.targetsVersion
	b.Until = u.now().Add(backoffDelay(b.Failures))
	u.st.setBackoff(sha, b)
	cs.LastResult = fmt.Sprintf("%s failed verification in transit (%d time(s)); next try after %s",
		t.Custom.Version, b.Failures, b.Until.Format(time.RFC3339))
	if serr := u.st.save(); serr != nil {
		u.log.Error("save state after a verification failure", "err", serr)
	}
	u.changed(c.Name, StateDownloading, StateFailed, t.Custom.Version, t.Path, b.Reason)
}
