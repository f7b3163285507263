package repository

import (
	"fmt"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Export returns the staged (unpublished) metadata of role, with the
// signatures it has so far, for signing on another machine with
// SignExported.
func (r *Repo) Export(role string) ([]byte, error) {
	if err := validRole(role); err != nil {
		return nil, err
	}
	if !r.dirty[role] {
		return nil, fmt.Errorf("%w: nothing staged for %s", ErrNotFound, role)
	}
	return toBytes(r.work[role])
}

// SignExported adds a signature by each key to exported metadata and
// returns the result, for MergeSignatures. It runs where the keys are (an
// offline machine) and needs no repository. A key that already signed is
// skipped.
func SignExported(data []byte, keys ...*Key) ([]byte, error) {
	_, m, err := parseAny(data)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if hasSig(m, k.ID()) {
			continue
		}
		if err := signWith(m, k); err != nil {
			return nil, err
		}
	}
	return toBytes(m)
}

// MergeSignatures adds to the staged metadata of its role the valid
// signatures found in data, which must sign exactly the staged content.
// Signatures by keys the role does not list, or that do not verify, are
// refused. It returns the role and the number of signatures added; call
// Publish next.
func (r *Repo) MergeSignatures(data []byte) (role string, added int, err error) {
	role, m, err := parseAny(data)
	if err != nil {
		return "", 0, err
	}
	if !r.dirty[role] {
		return role, 0, fmt.Errorf("%w: nothing staged for %s", ErrNotFound, role)
	}
	same, err := sameSigned(m, r.work[role])
	if err != nil {
		return role, 0, err
	}
	if !same {
		return role, 0, fmt.Errorf("repository: signed %s v%d differs from staged v%d: export again", role, versionOf(m), versionOf(r.work[role]))
	}
	payload, err := canonicalSigned(m)
	if err != nil {
		return role, 0, err
	}
	ids := r.authorized(role)
	keys := map[string]bool{}
	_, _, sigs, _ := common(m)
	_, _, have, _ := common(r.work[role])
	var add []metadata.Signature
	for _, s := range *sigs {
		if !ids[s.KeyID] {
			return role, 0, fmt.Errorf("repository: %s signed by key %s, which the role does not list", role, s.KeyID)
		}
		if hasSig(r.work[role], s.KeyID) || keys[s.KeyID] {
			continue
		}
		key := r.root().Signed.Keys[s.KeyID]
		if pr := r.pubRoot(); key == nil && pr != nil {
			key = pr.Signed.Keys[s.KeyID]
		}
		if key == nil {
			return role, 0, fmt.Errorf("repository: %s: key %s not in root", role, s.KeyID)
		}
		if err := verifySignature(key, payload, s.Signature); err != nil {
			return role, 0, fmt.Errorf("repository: %s: signature of key %s does not verify: %w", role, s.KeyID, err)
		}
		keys[s.KeyID] = true
		add = append(add, s)
	}
	*have = append(slices.Clip(*have), add...)
	return role, len(add), r.stage(role)
}
