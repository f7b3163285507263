package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/durable"
)

// Delegated targets (TUF 5.6.7). A target path is looked up by a pre-order
// depth-first search of the delegation graph, starting at the top-level
// targets role: a role that lists the path answers; otherwise its
// delegations whose paths match (glob patterns or path hash prefixes, or
// the one hash bin of a succinct delegation) are searched in the order
// they are listed; a terminating delegation ends the backtracking; a role
// already visited in this search is skipped (cycles); and at most
// MaxDelegations roles are visited. Each role is loaded only when a search
// reaches it, and it is verified against the delegator that led to it,
// every time: a role loaded earlier through another delegator does not
// carry that delegator's authority over (go-tuf issue #759).

// DefaultMaxDelegations is the number of roles one target search visits at
// most, the top-level targets role included, when
// [Config].MaxDelegations is zero (python-tuf's bound).
const DefaultMaxDelegations = 32

// DefaultMaxListedRoles bounds the roles one [Trusted.Targets] listing
// loads when [Config].MaxListedRoles is zero.
const DefaultMaxListedRoles = 256

// roleParent is one step of a search: a role and the delegator whose
// delegation led to it.
type roleParent struct{ role, parent string }

// delegationsFor returns the roles delegated by d that are responsible for
// path, in the order listed, with their terminating flag, as TUF 5.6.7.2
// says: a role's glob patterns are matched segment by segment ("*" does not
// cross "/", case-sensitive), its path_hash_prefixes against the hex
// SHA-256 of the path; a succinct delegation names the one bin of the path,
// always terminating.
func delegationsFor(d *metadata.Delegations, path string) []metadata.RoleResult {
	if d == nil {
		return nil
	}
	if d.SuccinctRoles != nil {
		return d.SuccinctRoles.GetRolesForTarget(path)
	}
	var res []metadata.RoleResult
	for i := range d.Roles {
		if roleCoversPath(&d.Roles[i], path) {
			res = append(res, metadata.RoleResult{Name: d.Roles[i].Name, Terminating: d.Roles[i].Terminating})
		}
	}
	return res
}

// roleCoversPath reports whether a delegated role is trusted for path.
func roleCoversPath(r *metadata.DelegatedRole, path string) bool {
	if len(r.Paths) > 0 {
		return slices.ContainsFunc(r.Paths, func(p string) bool { return MatchPath(p, path) })
	}
	if len(r.PathHashPrefixes) > 0 {
		sum := sha256.Sum256([]byte(path))
		h := hex.EncodeToString(sum[:])
		return slices.ContainsFunc(r.PathHashPrefixes, func(p string) bool { return strings.HasPrefix(h, p) })
	}
	return false
}

// MatchPath reports whether a target path matches a delegation's path
// pattern with TUF's rules: pattern and path have the same number of
// "/"-separated segments and each segment matches as Unix shell wildcards
// do ("*" any run of characters, "?" one character, "[abc]", "[a-z]" and
// "[!abc]" one character of, or not of, a set). "*" never crosses "/", and
// matching is case-sensitive.
func MatchPath(pattern, path string) bool {
	ps, ts := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(ts) {
		return false
	}
	for i := range ps {
		if !matchSegment(ps[i], ts[i]) {
			return false
		}
	}
	return true
}

// matchSegment is fnmatch for one segment, backtracking over the last "*".
func matchSegment(pattern, name string) bool {
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(name) {
		if p < len(pattern) {
			switch pattern[p] {
			case '*':
				starP, starN = p, n
				p++
				continue
			case '?':
				p++
				n++
				continue
			case '[':
				if ok, next, valid := matchClass(pattern, p, name[n]); valid {
					if ok {
						p, n = next, n+1
						continue
					}
				} else if name[n] == '[' { // an unclosed "[" is a literal
					p, n = p+1, n+1
					continue
				}
			default:
				if pattern[p] == name[n] {
					p, n = p+1, n+1
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starN++
		p, n = starP+1, starN
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchClass matches c against the bracket expression at pattern[start]
// ("[...]"). valid is false when the bracket is not closed.
func matchClass(pattern string, start int, c byte) (ok bool, next int, valid bool) {
	i := start + 1
	negate := i < len(pattern) && pattern[i] == '!'
	if negate {
		i++
	}
	first := i
	for ; i < len(pattern); i++ {
		if pattern[i] == ']' && i > first {
			return ok != negate, i + 1, true
		}
		lo, hi := pattern[i], pattern[i]
		if i+2 < len(pattern) && pattern[i+1] == '-' && pattern[i+2] != ']' {
			hi = pattern[i+2]
			i += 2
		}
		if lo <= c && c <= hi {
			ok = true
		}
	}
	return false, 0, false
}

// mayCoverPrefix reports whether some path starting with prefix could be
// delegated to r: used to visit, when listing, only the roles that may
// hold targets under a prefix. It errs on the side of yes.
func mayCoverPrefix(r *metadata.DelegatedRole, prefix string) bool {
	if len(r.Paths) == 0 {
		return len(r.PathHashPrefixes) > 0 // any path may hash into the bin
	}
	return slices.ContainsFunc(r.Paths, func(p string) bool { return patternMayCoverPrefix(p, prefix) })
}

func patternMayCoverPrefix(pattern, prefix string) bool {
	ps := strings.Split(pattern, "/")
	full := strings.Split(prefix, "/")
	partial := full[len(full)-1]
	full = full[:len(full)-1]
	if len(ps) <= len(full) {
		return false
	}
	for i, seg := range full {
		if !matchSegment(ps[i], seg) {
			return false
		}
	}
	next := ps[len(full)]
	if strings.ContainsAny(next, "*?[") {
		return true
	}
	return strings.HasPrefix(next, partial)
}

// role returns the metadata of role name, reached through parent, verified
// against parent's delegation. A role this Trusted already loaded is
// verified again against this parent (a cheap signature check, cached per
// pair); otherwise the copy stored in Dir is used if it verifies, else the
// version the snapshot names is fetched and stored.
func (t *Trusted) role(f Fetcher, name, parent string) (*metadata.Metadata[metadata.TargetsType], error) {
	if name == metadata.TARGETS && parent == metadata.ROOT {
		return t.tm.Targets[metadata.TARGETS], nil
	}
	if name == "" || slices.Contains(metadata.TOP_LEVEL_ROLE_NAMES[:], name) {
		return nil, &metadata.ErrRepository{Msg: fmt.Sprintf("invalid delegated role name %q", name)}
	}
	delegator := t.tm.Targets[parent]
	if delegator == nil {
		return nil, &metadata.ErrRuntime{Msg: fmt.Sprintf("delegator %s of %s not loaded", parent, name)}
	}
	pair := roleParent{name, parent}
	if m := t.tm.Targets[name]; m != nil {
		if !t.verified[pair] {
			if err := delegator.VerifyDelegate(name, m); err != nil {
				return nil, err
			}
			t.verified[pair] = true
		}
		return m, nil
	}
	m, err := t.loadRole(f, name, parent)
	if err != nil {
		return nil, err
	}
	t.verified[pair] = true
	return m, nil
}

// loadRole verifies role name from Dir, or downloads it when the stored
// copy is missing, stale or invalid, and stores it durably. go-tuf's
// TrustedMetadata checks it against the delegator, the snapshot (version,
// length, hashes) and the clock.
func (t *Trusted) loadRole(f Fetcher, name, parent string) (*metadata.Metadata[metadata.TargetsType], error) {
	file := filepath.Join(t.c.cfg.Dir, url.PathEscape(name)+".json")
	if b, err := os.ReadFile(file); err == nil {
		m, err := t.tm.UpdateDelegatedTargets(b, name, parent)
		if err == nil {
			return m, nil
		}
		t.c.log.Info("stored delegated role not usable: fetching it", "role", name, "err", err)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	meta := t.tm.Snapshot.Signed.Meta[name+".json"]
	if meta == nil {
		return nil, &metadata.ErrRepository{Msg: fmt.Sprintf("snapshot does not list %s", name)}
	}
	length := meta.Length
	if length == 0 {
		length = t.maxLength
	}
	u := strings.TrimSuffix(t.c.cfg.MetadataURL, "/") + "/"
	if t.tm.Root.Signed.ConsistentSnapshot {
		u += strconv.FormatInt(meta.Version, 10) + "."
	}
	u += url.PathEscape(name) + ".json"
	b, err := f.DownloadFile(u, length, 0)
	if err != nil {
		return nil, err
	}
	m, err := t.tm.UpdateDelegatedTargets(b, name, parent)
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(file, b, 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

// search is the pre-order depth-first search of TUF 5.6.7.2 for one path.
// It returns the target and the role that lists it, or a nil target when
// no role that may answer lists it.
func (t *Trusted) search(f Fetcher, path string) (*metadata.TargetFiles, string, error) {
	stack := []roleParent{{metadata.TARGETS, metadata.ROOT}}
	visited := map[string]bool{}
	for len(stack) > 0 && len(visited) <= t.maxDelegations {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[top.role] {
			continue // a cycle, or a role reached twice
		}
		m, err := t.role(f, top.role, top.parent)
		if err != nil {
			return nil, top.role, fmt.Errorf("delegated role %s (delegated by %s): %w", top.role, top.parent, err)
		}
		if tf := m.Signed.Targets[path]; tf != nil {
			return tf, top.role, nil
		}
		visited[top.role] = true
		var children []roleParent
		for _, r := range delegationsFor(m.Signed.Delegations, path) {
			children = append(children, roleParent{r.Name, top.role})
			if r.Terminating {
				stack = nil
				break
			}
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	if len(stack) > 0 {
		t.c.log.Warn("tuf target search stopped at the bound on visited roles", "path", path,
			"max", t.maxDelegations, "left", len(stack))
	}
	return nil, "", nil
}
