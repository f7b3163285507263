package verify

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/switchback-ota/switchback/internal/durable"
)

// Simple delegations: the top-level targets role may delegate paths to
// roles listed by name (with path patterns or path hash prefixes). go-tuf
// loads delegated roles only when asked for one path; to list every
// release, the Client loads each delegated role itself, through go-tuf's
// TrustedMetadata (same signature, version, snapshot and expiry checks),
// and resolves each path exactly as go-tuf's pre-order search would for one
// level of delegation. Succinct (hash-bin) delegations are ignored, and a
// path that a delegated role delegates further is rejected: both would
// need the whole tree walked, which switchback repositories do not use.

type delegation struct {
	loaded   map[string]*metadata.Metadata[metadata.TargetsType]
	targets  []delegatedTarget
	rejected []Rejected
}

type delegatedTarget struct {
	role string
	tf   *metadata.TargetFiles
}

// loadDelegations loads the roles delegated by the trusted top-level
// targets and picks, for every path they list, the target go-tuf would.
func (c *Client) loadDelegations(f Fetcher, trusted *trustedmetadata.TrustedMetadata, maxLength int64) *delegation {
	top := trusted.Targets[metadata.TARGETS]
	dl := top.Signed.Delegations
	if dl == nil {
		return nil
	}
	if dl.SuccinctRoles != nil {
		c.log.Warn("tuf succinct delegations are not supported: their targets are ignored")
	}
	d := &delegation{loaded: map[string]*metadata.Metadata[metadata.TargetsType]{}}
	failed := map[string]error{}
	for _, r := range dl.Roles {
		m, err := c.loadRole(f, trusted, r.Name, maxLength)
		if err != nil {
			failed[r.Name] = err
			d.rejected = append(d.rejected, Rejected{Role: r.Name, Err: fmt.Errorf("%w: delegated role %s: %w", ErrUntrusted, r.Name, err)})
			continue
		}
		d.loaded[r.Name] = m
	}
	// Every path some delegated role lists, in a stable order.
	var paths []string
	seen := map[string]bool{}
	for _, r := range dl.Roles {
		if m := d.loaded[r.Name]; m != nil {
			for p := range m.Signed.Targets {
				if !seen[p] {
					seen[p] = true
					paths = append(paths, p)
				}
			}
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		if _, ok := top.Signed.Targets[p]; ok {
			continue // the top-level role answers first
		}
		role, tf, err := resolve(dl.Roles, d.loaded, failed, p)
		switch {
		case err != nil:
			d.rejected = append(d.rejected, Rejected{Path: p, Role: role, Err: err})
		case tf != nil:
			tf.Path = p
			d.targets = append(d.targets, delegatedTarget{role: role, tf: tf})
		}
	}
	return d
}

// resolve walks the delegated roles in order for path p, as go-tuf's
// pre-order search does one level deep. A path that roles list but none is
// trusted to provide (outside its patterns, or behind a terminating role)
// is an error, so that the publisher sees it in Rejected.
func resolve(roles []metadata.DelegatedRole, loaded map[string]*metadata.Metadata[metadata.TargetsType], failed map[string]error, p string) (string, *metadata.TargetFiles, error) {
	why := "not trusted for this path"
	for i := range roles {
		r := &roles[i]
		if ok, _ := r.IsDelegatedPath(p); !ok {
			continue
		}
		if err := failed[r.Name]; err != nil {
			return r.Name, nil, fmt.Errorf("%w: delegated role %s, responsible for this path, is not trusted: %w", ErrUntrusted, r.Name, err)
		}
		m := loaded[r.Name]
		if tf := m.Signed.Targets[p]; tf != nil {
			return r.Name, tf, nil
		}
		if sub := m.Signed.Delegations; sub != nil && (sub.SuccinctRoles != nil || len(sub.GetRolesForTarget(p)) > 0) {
			return r.Name, nil, fmt.Errorf("%w: role %s delegates this path further; nested delegations are not supported", ErrUntrusted, r.Name)
		}
		if r.Terminating {
			why = "shadowed by terminating role " + r.Name
			break
		}
	}
	var listedBy []string
	for i := range roles {
		if m := loaded[roles[i].Name]; m != nil && m.Signed.Targets[p] != nil {
			listedBy = append(listedBy, roles[i].Name)
		}
	}
	if len(listedBy) == 0 {
		return "", nil, nil
	}
	return listedBy[0], nil, fmt.Errorf("%w: listed by %s, %s", ErrUntrusted, strings.Join(listedBy, ", "), why)
}

// loadRole verifies the delegated role name from Dir, or downloads it when
// the stored copy is missing, stale or invalid, and stores it durably.
func (c *Client) loadRole(f Fetcher, trusted *trustedmetadata.TrustedMetadata, name string, maxLength int64) (*metadata.Metadata[metadata.TargetsType], error) {
	if name == "" || slices.Contains(metadata.TOP_LEVEL_ROLE_NAMES[:], name) {
		return nil, fmt.Errorf("invalid delegated role name %q", name)
	}
	file := filepath.Join(c.cfg.Dir, url.PathEscape(name)+".json")
	if b, err := os.ReadFile(file); err == nil {
		m, err := trusted.UpdateDelegatedTargets(b, name, metadata.TARGETS)
		if err == nil {
			return m, nil
		}
		c.log.Info("stored delegated role not usable: fetching it", "role", name, "err", err)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	meta := trusted.Snapshot.Signed.Meta[name+".json"]
	if meta == nil {
		return nil, &metadata.ErrRepository{Msg: fmt.Sprintf("snapshot does not list %s", name)}
	}
	length := meta.Length
	if length == 0 {
		length = maxLength
	}
	u := strings.TrimSuffix(c.cfg.MetadataURL, "/") + "/"
	if trusted.Root.Signed.ConsistentSnapshot {
		u += strconv.FormatInt(meta.Version, 10) + "."
	}
	u += url.PathEscape(name) + ".json"
	b, err := f.DownloadFile(u, length, 0)
	if err != nil {
		return nil, err
	}
	m, err := trusted.UpdateDelegatedTargets(b, name, metadata.TARGETS)
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(file, b, 0o644); err != nil {
		return nil, err
	}
	return m, nil
}
