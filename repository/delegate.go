package repository

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Delegation is a delegated targets role: the paths it is trusted for,
// and its own keys and threshold. See package verify's documentation
// ("Delegations") for a layout that keeps devices' checks cheap: one role
// per hardware family or vendor, with path patterns of its prefix
// ("app/board-a/*").
type Delegation struct {
	// Name is the role name: letters, digits, "_" and "-".
	Name string
	// Paths are the glob patterns of the target paths the role may
	// sign ("*" does not cross "/"). Exactly one of Paths and
	// PathHashPrefixes is set.
	Paths []string
	// PathHashPrefixes are prefixes of the hex SHA-256 of the target
	// paths the role may sign.
	PathHashPrefixes []string
	// Terminating stops devices from looking further for a path this
	// role is trusted for but does not list.
	Terminating bool
	// Threshold is the number of signatures the role needs; 0 means 1.
	Threshold int
	// Keys are the role's public keys.
	Keys []*metadata.Key
}

var roleNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// validDelegatedName refuses names that are top-level roles or would not
// make one plain metadata file name (N.<name>.json).
func validDelegatedName(name string) error {
	if !roleNameRE.MatchString(name) || slices.Contains(Roles, name) {
		return fmt.Errorf("repository: invalid delegated role name %q (letters, digits, _ and -; not a top-level role)", name)
	}
	return nil
}

func (d Delegation) validate() error {
	if err := validDelegatedName(d.Name); err != nil {
		return err
	}
	if (len(d.Paths) == 0) == (len(d.PathHashPrefixes) == 0) {
		return fmt.Errorf("repository: delegation %s: set exactly one of Paths and PathHashPrefixes", d.Name)
	}
	if len(d.Keys) == 0 {
		return fmt.Errorf("repository: delegation %s: no keys", d.Name)
	}
	if d.Threshold < 0 || d.Threshold > len(d.Keys) {
		return fmt.Errorf("repository: delegation %s: threshold %d with %d keys", d.Name, d.Threshold, len(d.Keys))
	}
	return nil
}

// Delegate makes parent (RoleTargets or a delegated role) delegate d.Paths
// (or d.PathHashPrefixes) to d.Name, signed by d.Keys with d.Threshold.
// A delegation of parent to the same name is replaced in place (its order,
// which devices search in, is kept); a new one is appended. The role is
// created, empty, if it does not exist. A role may be delegated by several
// parents; devices then check it against the parent that led them to it.
// The change is staged; Publish signs parent and the role with the
// available keys.
func (r *Repo) Delegate(parent string, d Delegation) error {
	if err := d.validate(); err != nil {
		return err
	}
	pm, err := r.targetsRole(parent)
	if err != nil {
		return err
	}
	if d.Threshold == 0 {
		d.Threshold = 1
	}
	if pm.Signed.Delegations == nil {
		pm.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	if pm.Signed.Delegations.SuccinctRoles != nil {
		return fmt.Errorf("repository: %s uses succinct hash-bin delegations: cannot add %s", parent, d.Name)
	}
	role := metadata.DelegatedRole{Name: d.Name, Threshold: d.Threshold, Terminating: d.Terminating,
		Paths: slices.Clone(d.Paths), PathHashPrefixes: slices.Clone(d.PathHashPrefixes)}
	for _, k := range d.Keys {
		id, err := k.ID()
		if err != nil {
			return fmt.Errorf("repository: delegation %s: %w", d.Name, err)
		}
		pm.Signed.Delegations.Keys[id] = k
		role.KeyIDs = append(role.KeyIDs, id)
	}
	r.touch(parent)
	roles := pm.Signed.Delegations.Roles
	if i := slices.IndexFunc(roles, func(x metadata.DelegatedRole) bool { return x.Name == d.Name }); i >= 0 {
		roles[i] = role
	} else {
		pm.Signed.Delegations.Roles = append(roles, role)
	}
	pm.Signed.Delegations.Keys = usedKeys(pm.Signed.Delegations)
	if r.work[d.Name] == nil {
		m := metadata.Targets(r.expires(d.Name, r.now()))
		m.Signed.Version = 0
		r.work[d.Name] = m
		r.touch(d.Name)
		if err := r.stage(d.Name); err != nil {
			return err
		}
	}
	return r.stage(parent)
}

// usedKeys drops keys no delegation of d names any more.
func usedKeys(d *metadata.Delegations) map[string]*metadata.Key {
	keys := map[string]*metadata.Key{}
	for _, role := range d.Roles {
		for _, id := range role.KeyIDs {
			if k := d.Keys[id]; k != nil {
				keys[id] = k
			}
		}
	}
	return keys
}

// targetsRole returns the working metadata of RoleTargets or a delegated
// role.
func (r *Repo) targetsRole(name string) (*metadata.Metadata[metadata.TargetsType], error) {
	if name == "" {
		name = RoleTargets
	}
	if name != RoleTargets {
		if err := validDelegatedName(name); err != nil {
			return nil, err
		}
	}
	m, ok := r.work[name].(*metadata.Metadata[metadata.TargetsType])
	if !ok {
		return nil, fmt.Errorf("%w: targets role %q", ErrNotFound, name)
	}
	return m, nil
}

// DelegatedRoles lists the delegated roles of the working copy, by name.
func (r *Repo) DelegatedRoles() []string { return r.delegatedNames() }

func (r *Repo) delegatedNames() []string {
	var names []string
	for name := range r.work {
		if !slices.Contains(Roles, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// allRoles lists the top-level roles in signing order, then the delegated
// ones by name.
func (r *Repo) allRoles() []string { return append(slices.Clone(Roles), r.delegatedNames()...) }

// delegator returns a targets role that delegates to name and its
// delegation entry (the first in name order when several do).
func (r *Repo) delegator(name string) (*metadata.Metadata[metadata.TargetsType], *metadata.DelegatedRole) {
	for _, p := range append([]string{RoleTargets}, r.delegatedNames()...) {
		pm, _ := r.work[p].(*metadata.Metadata[metadata.TargetsType])
		if pm == nil || pm.Signed.Delegations == nil {
			continue
		}
		for i := range pm.Signed.Delegations.Roles {
			if pm.Signed.Delegations.Roles[i].Name == name {
				return pm, &pm.Signed.Delegations.Roles[i]
			}
		}
	}
	return nil, nil
}

// checkDelegated checks a delegated role against every role that
// delegates to it: a device may reach it through any of them.
func (r *Repo) checkDelegated(name string) error {
	found := false
	for _, p := range append([]string{RoleTargets}, r.delegatedNames()...) {
		pm, _ := r.work[p].(*metadata.Metadata[metadata.TargetsType])
		if pm == nil || pm.Signed.Delegations == nil ||
			!slices.ContainsFunc(pm.Signed.Delegations.Roles, func(x metadata.DelegatedRole) bool { return x.Name == name }) {
			continue
		}
		found = true
		if err := pm.VerifyDelegate(name, r.work[name]); err != nil {
			return fmt.Errorf("%s v%d as delegated by %s: %w", name, versionOf(r.work[name]), p, err)
		}
	}
	if !found {
		return fmt.Errorf("%s: no role delegates to it", name)
	}
	return nil
}

// authorizedDelegated returns the key ids every delegator of name allows.
func (r *Repo) authorizedDelegated(name string) map[string]bool {
	ids := map[string]bool{}
	for _, p := range append([]string{RoleTargets}, r.delegatedNames()...) {
		pm, _ := r.work[p].(*metadata.Metadata[metadata.TargetsType])
		if pm == nil || pm.Signed.Delegations == nil {
			continue
		}
		for _, d := range pm.Signed.Delegations.Roles {
			if d.Name == name {
				for _, id := range d.KeyIDs {
					ids[id] = true
				}
			}
		}
	}
	return ids
}

// loadDelegated loads the delegated roles the published snapshot lists,
// then staged delegated roles.
func (r *Repo) loadDelegated() error {
	snap := r.pub[RoleSnapshot].(*metadata.Metadata[metadata.SnapshotType])
	for file, mf := range snap.Signed.Meta {
		name := strings.TrimSuffix(file, ".json")
		if name == RoleTargets {
			continue
		}
		if err := validDelegatedName(name); err != nil {
			return err
		}
		p := filepath.Join(r.MetadataDir(), fmt.Sprintf("%d.%s.json", mf.Version, name))
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("repository: %w", err)
		}
		m, err := parse(name, b)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		r.pub[name] = m
		r.work[name] = clone(name, m)
	}
	entries, err := os.ReadDir(filepath.Join(r.dir, stagedDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || slices.Contains(Roles, name) || validDelegatedName(name) != nil {
			continue
		}
		if err := r.loadStaged(name); err != nil {
			return err
		}
	}
	return nil
}
