package repository

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Bump starts a new version of role with a fresh expiry, to be signed at
// the next Publish. Used to renew a role before it expires.
func (r *Repo) Bump(role string) error {
	if err := validRole(role); err != nil {
		return err
	}
	if !r.dirty[role] {
		r.touch(role)
	}
	return r.stage(role)
}

// Refresh publishes new versions of snapshot and timestamp with fresh
// expiries: the job a cron runs well before the timestamp expires. It
// needs only the snapshot and timestamp keys.
func (r *Repo) Refresh(ctx context.Context) error {
	for _, role := range []string{RoleSnapshot, RoleTimestamp} {
		if err := r.Bump(role); err != nil {
			return err
		}
	}
	return r.Publish(ctx)
}

// SetExpiry sets how long new versions of role stay valid, saves it in the
// repository settings, and bumps role so its next version uses it.
func (r *Repo) SetExpiry(role string, d time.Duration) error {
	if err := validRole(role); err != nil {
		return err
	}
	if d <= 0 {
		return fmt.Errorf("repository: %s: expiry %v is not positive", role, d)
	}
	r.expiry[role] = d
	if err := r.saveSettings(); err != nil {
		return err
	}
	if r.dirty[role] {
		r.touch(role)
		_, exp, _, _ := common(r.work[role])
		*exp = r.expires(role, r.now())
		return r.stage(role)
	}
	return r.Bump(role)
}

// Expiry returns the expiry period of role.
func (r *Repo) Expiry(role string) time.Duration { return r.expiry[role] }

// SetExpires sets the expiry date of the next version of role to t
// exactly, whatever the period: for a root that must outlive a known date,
// and for tests that publish already expired metadata.
func (r *Repo) SetExpires(role string, t time.Time) error {
	if err := validRole(role); err != nil {
		return err
	}
	r.touch(role)
	_, exp, _, _ := common(r.work[role])
	*exp = t.UTC().Truncate(time.Second)
	return r.stage(role)
}

// rootChanged bumps root and the role whose keys or threshold changed: the
// role must be re-signed under the new rules.
func (r *Repo) rootChanged(role string) error {
	r.touch(RoleRoot)
	if role != RoleRoot {
		r.touch(role)
	}
	if err := r.stage(RoleRoot); err != nil {
		return err
	}
	return r.stage(role)
}

// AddKey authorises a public key for role. The private key, when
// available, is passed with AddKeys.
func (r *Repo) AddKey(role string, key *metadata.Key) error {
	if err := validRole(role); err != nil {
		return err
	}
	if err := r.root().Signed.AddKey(key, role); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	return r.rootChanged(role)
}

// RevokeKey removes key id from role. It refuses to leave the role with
// fewer keys than its threshold.
func (r *Repo) RevokeKey(role, keyID string) error {
	if err := validRole(role); err != nil {
		return err
	}
	rl := r.root().Signed.Roles[role]
	if !slices.Contains(rl.KeyIDs, keyID) {
		return fmt.Errorf("%w: key %s in role %s", ErrNotFound, keyID, role)
	}
	if len(rl.KeyIDs)-1 < rl.Threshold {
		return fmt.Errorf("repository: revoking key %s would leave %s with %d keys for threshold %d", keyID, role, len(rl.KeyIDs)-1, rl.Threshold)
	}
	if err := r.root().Signed.RevokeKey(keyID, role); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	return r.rootChanged(role)
}

// SetThreshold sets the number of signatures role needs.
func (r *Repo) SetThreshold(role string, n int) error {
	if err := validRole(role); err != nil {
		return err
	}
	rl := r.root().Signed.Roles[role]
	if n < 1 || n > len(rl.KeyIDs) {
		return fmt.Errorf("repository: threshold %d for %s with %d keys", n, role, len(rl.KeyIDs))
	}
	rl.Threshold = n
	return r.rootChanged(role)
}

// RotateKeys replaces every key of role by keys, with threshold (0 keeps
// the current one if keys are enough, else len(keys)). The private keys are
// made available for signing. The new root needs the signatures of the old
// root keys (to the old threshold) and, when role is root, of the new ones:
// a device holding the old root walks to the new one and no further root
// signed by old keys alone is accepted.
func (r *Repo) RotateKeys(role string, keys []*Key, threshold int) error {
	if err := validRole(role); err != nil {
		return err
	}
	if len(keys) == 0 {
		return fmt.Errorf("repository: rotate %s: no new keys", role)
	}
	rl := r.root().Signed.Roles[role]
	if threshold == 0 {
		threshold = min(rl.Threshold, len(keys))
	}
	if threshold < 1 || threshold > len(keys) {
		return fmt.Errorf("repository: rotate %s: threshold %d with %d keys", role, threshold, len(keys))
	}
	root := r.root()
	for _, id := range slices.Clone(rl.KeyIDs) {
		if err := root.Signed.RevokeKey(id, role); err != nil {
			return fmt.Errorf("repository: %w", err)
		}
	}
	for _, k := range keys {
		if err := root.Signed.AddKey(k.Public(), role); err != nil {
			return fmt.Errorf("repository: %w", err)
		}
	}
	root.Signed.Roles[role].Threshold = threshold
	r.AddKeys(keys...)
	return r.rootChanged(role)
}

// RoleStatus describes one role.
type RoleStatus struct {
	Role string
	// Version and Expires of the published metadata.
	Version int64
	Expires time.Time
	// Threshold and KeyIDs from the working root.
	Threshold int
	KeyIDs    []string
	// SignedBy lists the key ids whose signatures are on the published
	// metadata.
	SignedBy []string
	// Available lists the authorised key ids whose private key this Repo
	// holds.
	Available []string
	// Staged is true when a new version waits for Publish or for
	// signatures; StagedVersion, StagedExpires and StagedSignedBy
	// describe it.
	Staged         bool
	StagedVersion  int64
	StagedExpires  time.Time
	StagedSignedBy []string
}

// Status reports every role, in Roles order.
func (r *Repo) Status() []RoleStatus {
	var out []RoleStatus
	for _, role := range Roles {
		s := RoleStatus{Role: role}
		if p := r.pub[role]; p != nil {
			v, exp, sigs, _ := common(p)
			s.Version, s.Expires, s.SignedBy = *v, *exp, sigIDs(*sigs)
		}
		rl := r.root().Signed.Roles[role]
		s.Threshold = rl.Threshold
		s.KeyIDs = slices.Clone(rl.KeyIDs)
		sort.Strings(s.KeyIDs)
		for id := range r.authorized(role) {
			if _, ok := r.keys[id]; ok {
				s.Available = append(s.Available, id)
			}
		}
		sort.Strings(s.Available)
		if r.dirty[role] {
			v, exp, sigs, _ := common(r.work[role])
			s.Staged, s.StagedVersion, s.StagedExpires, s.StagedSignedBy = true, *v, *exp, sigIDs(*sigs)
		}
		out = append(out, s)
	}
	return out
}

func sigIDs(sigs []metadata.Signature) []string {
	var ids []string
	for _, s := range sigs {
		ids = append(ids, s.KeyID)
	}
	sort.Strings(ids)
	return ids
}
