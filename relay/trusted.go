package relay

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// This file is the relay's only reader of raw TUF metadata. verify.Client
// stores what it verified in its Dir (root.json, roots/<N>.root.json,
// timestamp.json, snapshot.json, targets.json, <role>.json); the relay
// reads those files back and verifies them again, offline, with go-tuf's
// TrustedMetadata, so that what it serves is a set that verifies together
// at the time it was loaded, whatever happened to the files in between.
// When verify gains an API that hands out the trusted metadata, only this
// file changes.

// metaSet is one verified, consistent set of metadata files and the
// targets they sign. It is immutable once built.
type metaSet struct {
	// files maps the name a TUF client asks for ("timestamp.json",
	// "3.root.json", "7.snapshot.json"...) to its bytes.
	files map[string][]byte
	// roots maps root versions to their names in files; roots stay
	// servable after the set expires.
	roots map[string]bool
	// targets maps each signed target path to its trusted file info,
	// resolved through one level of delegation as go-tuf would.
	targets map[string]*metadata.TargetFiles
	// consistent reports consistent snapshots (hash-prefixed target names).
	consistent bool
	// expires is the earliest expiry of the set's roles.
	expires time.Time
	// timestampVersion identifies the set in logs.
	timestampVersion int64
}

// loadTrusted reads the metadata verify stored in dir and verifies it
// against root (the embedded root) at time now: the root chain version by
// version from roots/, then timestamp, snapshot, targets and the
// delegated roles the top-level targets name. A delegated role that does
// not verify is left out, with its targets.
func loadTrusted(dir string, root []byte, now time.Time) (*metaSet, error) {
	tm, err := trustedmetadata.New(root)
	if err != nil {
		return nil, fmt.Errorf("relay: embedded root: %w", err)
	}
	tm.RefTime = now.UTC()
	s := &metaSet{files: map[string][]byte{}, roots: map[string]bool{}, targets: map[string]*metadata.TargetFiles{}}
	s.addRoot(tm.Root.Signed.Version, root)
	for v := tm.Root.Signed.Version + 1; ; v++ {
		b, err := os.ReadFile(filepath.Join(dir, "roots", fmt.Sprintf("%d.root.json", v)))
		if errors.Is(err, fs.ErrNotExist) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("relay: read root %d: %w", v, err)
		}
		if _, err := tm.UpdateRoot(b); err != nil {
			break // does not chain: verify ignores it too
		}
		s.addRoot(v, b)
	}
	s.consistent = tm.Root.Signed.ConsistentSnapshot
	s.expires = tm.Root.Signed.Expires
	if err := s.loadTop(dir, tm); err != nil {
		return s, err
	}
	s.loadDelegated(dir, tm)
	return s, nil
}

func (s *metaSet) addRoot(v int64, b []byte) {
	name := strconv.FormatInt(v, 10) + ".root.json"
	s.files[name] = b
	s.roots[name] = true
}

// loadTop verifies timestamp, snapshot and top-level targets. On error the
// set holds only the roots.
func (s *metaSet) loadTop(dir string, tm *trustedmetadata.TrustedMetadata) error {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("relay: trusted metadata: %w", err)
		}
		return b, nil
	}
	ts, err := read("timestamp.json")
	if err != nil {
		return err
	}
	if _, err := tm.UpdateTimestamp(ts); err != nil {
		return fmt.Errorf("relay: timestamp: %w", err)
	}
	sn, err := read("snapshot.json")
	if err != nil {
		return err
	}
	if _, err := tm.UpdateSnapshot(sn, false); err != nil {
		return fmt.Errorf("relay: snapshot: %w", err)
	}
	tg, err := read("targets.json")
	if err != nil {
		return err
	}
	top, err := tm.UpdateTargets(tg)
	if err != nil {
		return fmt.Errorf("relay: targets: %w", err)
	}
	s.files["timestamp.json"] = ts
	s.files[s.versioned("snapshot", tm.Timestamp.Signed.Meta["snapshot.json"].Version)] = sn
	s.files[s.versioned("targets", tm.Snapshot.Signed.Meta["targets.json"].Version)] = tg
	s.timestampVersion = tm.Timestamp.Signed.Version
	for _, e := range []time.Time{tm.Timestamp.Signed.Expires, tm.Snapshot.Signed.Expires, top.Signed.Expires} {
		if e.Before(s.expires) {
			s.expires = e
		}
	}
	for p, tf := range top.Signed.Targets {
		tf.Path = p
		s.targets[p] = tf
	}
	return nil
}

// versioned is the file name a client asks for: "<v>.<role>.json" with
// consistent snapshots, else "<role>.json", the role name path-escaped as
// go-tuf escapes it.
func (s *metaSet) versioned(role string, v int64) string {
	name := url.PathEscape(role) + ".json"
	if s.consistent {
		return strconv.FormatInt(v, 10) + "." + name
	}
	return name
}

// loadDelegated verifies the roles the top-level targets delegate to (one
// level, as verify does) and adds the paths each role is trusted for,
// walking the roles in order for each path as go-tuf's search does.
func (s *metaSet) loadDelegated(dir string, tm *trustedmetadata.TrustedMetadata) {
	dl := tm.Targets[metadata.TARGETS].Signed.Delegations
	if dl == nil {
		return
	}
	loaded := map[string]*metadata.Metadata[metadata.TargetsType]{}
	for _, r := range dl.Roles {
		b, err := os.ReadFile(filepath.Join(dir, url.PathEscape(r.Name)+".json"))
		if err != nil {
			continue
		}
		m, err := tm.UpdateDelegatedTargets(b, r.Name, metadata.TARGETS)
		if err != nil {
			continue
		}
		loaded[r.Name] = m
		s.files[s.versioned(r.Name, tm.Snapshot.Signed.Meta[r.Name+".json"].Version)] = b
		if m.Signed.Expires.Before(s.expires) {
			s.expires = m.Signed.Expires
		}
	}
	for _, r := range dl.Roles {
		m := loaded[r.Name]
		if m == nil {
			continue
		}
		for p, tf := range m.Signed.Targets {
			if _, taken := s.targets[p]; taken || delegatedOwner(dl.Roles, loaded, p) != r.Name {
				continue
			}
			tf.Path = p
			s.targets[p] = tf
		}
	}
}

// delegatedOwner returns the role go-tuf's pre-order search takes path p
// from, one level deep, or "".
func delegatedOwner(roles []metadata.DelegatedRole, loaded map[string]*metadata.Metadata[metadata.TargetsType], p string) string {
	for i := range roles {
		r := &roles[i]
		if ok, _ := r.IsDelegatedPath(p); !ok {
			continue
		}
		m := loaded[r.Name]
		if m == nil {
			return "" // the role responsible is not trusted
		}
		if m.Signed.Targets[p] != nil {
			return r.Name
		}
		if r.Terminating {
			return ""
		}
	}
	return ""
}
