package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// Trusted is the metadata one [Client.Update] trusted: the top-level roles
// (TUF 5.3 to 5.5), and the delegated roles, loaded lazily as target
// lookups reach them (TUF 5.6). Its methods are safe for concurrent use
// (they are serialised with the Client's refreshes); its fields must not
// be modified.
type Trusted struct {
	// ConsistentSnapshot reports whether the repository uses consistent
	// snapshots (and hash-prefixed target file names).
	ConsistentSnapshot bool
	// Expires is the earliest expiry among the top-level roles.
	Expires time.Time
	// RootVersion, TimestampVersion, SnapshotVersion and TargetsVersion are
	// the versions of the trusted top-level metadata.
	RootVersion, TimestampVersion, SnapshotVersion, TargetsVersion int64

	c              *Client
	tm             *trustedmetadata.TrustedMetadata
	maxLength      int64 // of a delegated role the snapshot gives no length for
	maxDelegations int
	verified       map[roleParent]bool // delegations checked in this Trusted
	f              Fetcher             // the fetcher of the Update, for Refresh's listing
}

// TargetInfo is one trusted TUF target, whatever its custom metadata: what
// tools and other components (a relay, OCI manifests) need to fetch and
// verify any target of the repository.
type TargetInfo struct {
	// Path is the TUF target path.
	Path string
	// Length is the trusted length in bytes.
	Length int64
	// Hashes maps hash algorithm to trusted digest.
	Hashes map[string][]byte
	// Custom is the target's custom metadata as signed, nil if none.
	Custom json.RawMessage
	// URL is where the bytes are fetched from (see [TargetURL]).
	URL string
	// Role is the role that listed the target: "targets" for the
	// top-level role, else the delegated role's name.
	Role string
}

// Verifier returns a [Verifier] for the target's bytes as they are fetched.
func (ti TargetInfo) Verifier() (*Verifier, error) {
	v, err := NewVerifier(ti.Length, ti.Hashes)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", ti.Path, err)
	}
	return v, nil
}

func newTrusted(c *Client, tm *trustedmetadata.TrustedMetadata, f Fetcher, maxLength int64) *Trusted {
	top := tm.Targets[metadata.TARGETS]
	t := &Trusted{
		ConsistentSnapshot: tm.Root.Signed.ConsistentSnapshot,
		RootVersion:        tm.Root.Signed.Version,
		TimestampVersion:   tm.Timestamp.Signed.Version,
		SnapshotVersion:    tm.Snapshot.Signed.Version,
		TargetsVersion:     top.Signed.Version,
		Expires:            tm.Root.Signed.Expires,
		c:                  c,
		tm:                 tm,
		maxLength:          maxLength,
		maxDelegations:     c.cfg.MaxDelegations,
		verified:           map[roleParent]bool{},
		f:                  f,
	}
	if t.maxDelegations == 0 {
		t.maxDelegations = DefaultMaxDelegations
	}
	for _, e := range []time.Time{tm.Timestamp.Signed.Expires, tm.Snapshot.Signed.Expires, top.Signed.Expires} {
		if e.Before(t.Expires) {
			t.Expires = e
		}
	}
	return t
}

// Target looks up one target path as TUF 5.6.7 prescribes (see the
// package doc, "Delegations"): it fetches only the delegated roles the
// search visits. A path no trusted role provides is an error wrapping
// [ErrTargetNotFound]; a role on the way that cannot be fetched or
// trusted, one wrapping [ErrFetch] or [ErrUntrusted].
func (t *Trusted) Target(ctx context.Context, path string) (TargetInfo, error) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	// Roles fetched are stored durably by loadRole.
	tf, role, err := t.search(limitFetcher{t.c.fetcher(ctx)}, path)
	switch {
	case err != nil:
		return TargetInfo{}, t.c.refreshErr(ctx, fmt.Errorf("target %s: %w", path, err))
	case tf == nil:
		return TargetInfo{}, fmt.Errorf("%w: %s", ErrTargetNotFound, path)
	}
	return t.info(path, role, tf), nil
}

func (t *Trusted) info(path, role string, tf *metadata.TargetFiles) TargetInfo {
	hashes := make(map[string][]byte, len(tf.Hashes))
	for alg, d := range tf.Hashes {
		hashes[alg] = slices.Clone([]byte(d))
	}
	ti := TargetInfo{Path: path, Length: tf.Length, Hashes: hashes, Role: role}
	if tf.Custom != nil {
		ti.Custom = slices.Clone(*tf.Custom)
	}
	ti.URL = TargetURL(t.c.targetsURL, path, hashes, t.ConsistentSnapshot)
	return ti
}

// Targets lists the switchback targets (valid custom metadata) whose
// paths start with one of prefixes, every target when there is none. It
// visits only the delegated roles that may hold such paths (at most
// [Config].MaxListedRoles), and keeps for each path it finds the answer
// [Trusted.Target] gives: a path listed by a role not trusted for it is
// in Rejected, not in Targets. A delegated role that cannot be fetched or
// trusted is in Rejected (Path empty), and so are the targets it would
// have answered for.
func (t *Trusted) Targets(ctx context.Context, prefixes ...string) (*Targets, error) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.targets(ctx, limitFetcher{t.c.fetcher(ctx)}, prefixes)
}

func (t *Trusted) targets(ctx context.Context, f Fetcher, prefixes []string) (*Targets, error) {
	paths, rejected := t.list(f, prefixes)
	res := &Targets{
		ConsistentSnapshot: t.ConsistentSnapshot, Expires: t.Expires, Rejected: rejected,
		RootVersion: t.RootVersion, TimestampVersion: t.TimestampVersion,
		SnapshotVersion: t.SnapshotVersion, TargetsVersion: t.TargetsVersion,
	}
	for _, p := range paths {
		tf, role, err := t.search(f, p.path)
		if role == metadata.TARGETS {
			role = "" // Rejected and Target keep "" for the top-level role
		}
		switch {
		case err != nil:
			res.Rejected = append(res.Rejected, Rejected{Path: p.path, Role: role, Err: fmt.Errorf("%w: %w", ErrUntrusted, err)})
		case tf == nil:
			res.Rejected = append(res.Rejected, Rejected{Path: p.path, Role: p.listedBy[0],
				Err: fmt.Errorf("%w: listed by %s, not trusted for this path", ErrUntrusted, strings.Join(p.listedBy, ", "))})
		default:
			tg, err := t.c.target(t.info(p.path, role, tf))
			if err != nil {
				res.Rejected = append(res.Rejected, Rejected{Path: p.path, Role: role, Err: err})
				continue
			}
			tg.Role = role
			res.Targets = append(res.Targets, tg)
		}
	}
	for name, m := range t.tm.Targets {
		if name != metadata.TARGETS && m.Signed.Expires.Before(res.Expires) {
			res.Expires = m.Signed.Expires
		}
	}
	for _, r := range res.Rejected {
		t.c.log.Warn("tuf target or delegated role rejected", "path", r.Path, "role", r.Role, "err", r.Err)
	}
	sort.Slice(res.Targets, func(i, j int) bool { return res.Targets[i].Path < res.Targets[j].Path })
	sort.SliceStable(res.Rejected, func(i, j int) bool {
		if res.Rejected[i].Path != res.Rejected[j].Path {
			return res.Rejected[i].Path < res.Rejected[j].Path
		}
		return res.Rejected[i].Role < res.Rejected[j].Role
	})
	return res, ctx.Err()
}

// candidate is a path some visited role lists, and the roles listing it.
type candidate struct {
	path     string
	listedBy []string
}

// list walks, depth first, the roles that may hold paths under prefixes
// (at most MaxListedRoles, none deeper than MaxDelegations) and returns
// the paths they list under prefixes, sorted.
func (t *Trusted) list(f Fetcher, prefixes []string) ([]candidate, []Rejected) {
	under := func(p string) bool {
		return len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(pre string) bool { return strings.HasPrefix(p, pre) })
	}
	mayHold := func(r *metadata.DelegatedRole) bool {
		return len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(pre string) bool { return mayCoverPrefix(r, pre) })
	}
	limit := t.c.cfg.MaxListedRoles
	if limit == 0 {
		limit = DefaultMaxListedRoles
	}
	listed := map[string][]string{}
	var rejected []Rejected
	visited := map[string]bool{}
	// A role deeper than maxDelegations can answer no search (each
	// search visits its ancestors first): it is not listed either.
	type step struct {
		roleParent
		depth int
	}
	stack := []step{{roleParent{metadata.TARGETS, metadata.ROOT}, 0}}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[top.role] {
			continue
		}
		if len(visited) >= limit {
			rejected = append(rejected, Rejected{Role: top.role, Err: fmt.Errorf("%w: more than %d delegated roles to list", ErrUntrusted, limit)})
			break
		}
		visited[top.role] = true
		m, err := t.role(f, top.role, top.parent)
		if err != nil {
			rejected = append(rejected, Rejected{Role: top.role, Err: fmt.Errorf("%w: delegated role %s (delegated by %s): %w", ErrUntrusted, top.role, top.parent, err)})
			continue
		}
		name := top.role
		if name == metadata.TARGETS {
			name = ""
		}
		for p := range m.Signed.Targets {
			if under(p) {
				listed[p] = append(listed[p], name)
			}
		}
		if top.depth >= t.maxDelegations {
			continue
		}
		children := childRoles(m.Signed.Delegations, mayHold, limit)
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, step{roleParent{children[i], top.role}, top.depth + 1})
		}
	}
	out := make([]candidate, 0, len(listed))
	for _, p := range slices.Sorted(maps.Keys(listed)) {
		out = append(out, candidate{path: p, listedBy: listed[p]})
	}
	return out, rejected
}

// childRoles returns the names of the roles d delegates to that mayHold
// accepts, in order; every bin of a succinct delegation, but no more than
// limit+1 (the listing stops at limit anyway).
func childRoles(d *metadata.Delegations, mayHold func(*metadata.DelegatedRole) bool, limit int) []string {
	if d == nil {
		return nil
	}
	if s := d.SuccinctRoles; s != nil {
		suffixLen, bins := s.GetSuffixLen()
		var names []string
		for i := 0; i < bins && i <= limit; i++ {
			names = append(names, fmt.Sprintf("%s-%0*x", s.NamePrefix, suffixLen, i))
		}
		return names
	}
	var names []string
	for i := range d.Roles {
		if mayHold(&d.Roles[i]) {
			names = append(names, d.Roles[i].Name)
		}
	}
	return names
}
