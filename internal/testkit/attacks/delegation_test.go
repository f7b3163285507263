package attacks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/updater"
)

// delegate makes parent delegate paths to role name, signed by a new key
// the repository may use, and returns the key.
func delegate(t *testing.T, r *tuftest.Repo, parent, name string, paths ...string) *repository.Key {
	t.Helper()
	k, err := repository.GenerateKey(repository.Ed25519)
	must(t, err)
	r.Repository().AddKeys(k)
	must(t, r.Repository().Delegate(parent, repository.Delegation{Name: name, Paths: paths, Keys: []*metadata.Key{k.Public()}}))
	return k
}

// signRelease has role list release version for this device, whatever
// paths the role was delegated (the repository tool would refuse a path
// outside them; the holder of the role's key does not ask it).
func signRelease(t *testing.T, r *tuftest.Repo, role, version string) []byte {
	t.Helper()
	img := image(version)
	raw, err := json.Marshal(custom(version))
	must(t, err)
	_, err = r.Repository().AddTargetRawIn(context.Background(), role, targetPath(version), bytes.NewReader(img), raw)
	must(t, err)
	return img
}

// delegatedFile is the URL path of a release a delegated role lists.
func delegatedFile(version string) string {
	return "/targets/rootfs/" + tuftest.SHA256(image(version)) + "." + version + ".img"
}

// metadataRequests counts the requests for a delegated role's metadata.
func metadataRequests(r *tuftest.Repo, roles ...string) int {
	n := 0
	for _, role := range roles {
		for v := 1; v <= 3; v++ {
			n += r.Requests(fmt.Sprintf("/metadata/%d.%s.json", v, role))
		}
	}
	return n
}

// TestDelegationPathNotDelegated: a vendor's role, delegated only
// rootfs/vendor-b/*, signs a release at rootfs/6.6.6.img for this device.
// The device never trusts it (TUF 5.6.7: a role answers only for the
// paths it is delegated): no update, the bytes are never requested, and
// the next honest release installs.
func TestDelegationPathNotDelegated(t *testing.T) {
	t.Parallel()
	r, d := trustingDevice(t)
	delegate(t, r, repository.RoleTargets, "vendor-b", "rootfs/vendor-b/*")
	signRelease(t, r, "vendor-b", "6.6.6")
	r.Publish()
	wantDelegatedRefused(t, r, d, "the release signed outside the role's paths")
}

// wantDelegatedRefused checks that the device takes no update from the
// release 6.6.6 a delegated role signed (what describes it): nothing
// changes, its bytes are never requested, and the next honest release
// installs.
func wantDelegatedRefused(t *testing.T, r *tuftest.Repo, d *device, what string) {
	t.Helper()
	d.updateRefused("update", updater.ErrNoUpdate)
	if n := r.Requests(delegatedFile("6.6.6")); n != 0 {
		t.Errorf("%s was requested %d times", what, n)
	}
	d.honestUpdate("1.3.0")
}

// TestDelegationTwoDelegators: role "release" is delegated by parent-a
// (other/*, key A) and by parent-b (rootfs/*, key B), and is signed with
// key A only. Reached through parent-a it is valid, but it lists a
// rootfs release, which only parent-b's delegation covers: the device
// verifies the role against parent-b, the delegator of that search, and
// refuses it (go-tuf issue #759).
func TestDelegationTwoDelegators(t *testing.T) {
	t.Parallel()
	r, d := trustingDevice(t)
	delegate(t, r, repository.RoleTargets, "parent-a", "other/*")
	delegate(t, r, "parent-a", "release", "other/*")
	signRelease(t, r, "release", "6.6.6")
	r.Publish()
	// parent-b delegates rootfs/* to the same role name with another key;
	// the release role is not re-signed.
	delegate(t, r, repository.RoleTargets, "parent-b", "rootfs/*")
	delegate(t, r, "parent-b", "release", "rootfs/*")
	r.Publish()
	wantDelegatedRefused(t, r, d, "the release of a role not signed for its delegator")
}

// TestDelegationCycle: a delegates rootfs/* to b, which delegates it back
// to a. The search visits each role once: the release b lists installs,
// and each role's metadata is fetched once.
func TestDelegationCycle(t *testing.T) {
	t.Parallel()
	r, d := trustingDevice(t)
	delegate(t, r, repository.RoleTargets, "a", "rootfs/*")
	delegate(t, r, "a", "b", "rootfs/*")
	delegate(t, r, "b", "a", "rootfs/*")
	img := signRelease(t, r, "b", "1.2.0")
	r.Publish()
	r.ResetRequests()
	d.mustUpdate("1.2.0", img)
	if n := metadataRequests(r, "a", "b"); n != 2 {
		t.Errorf("delegated metadata requested %d times, want 2 (a and b once)", n)
	}
}

// TestDelegationThousandRoleChain: a chain of a thousand roles, each
// delegating rootfs/* to the next, validly signed, the last one listing a
// release for this device (the top-level targets and snapshot publish the
// chain). The device stops at the bound on visited roles (32, as
// python-tuf): no update, at most 32 delegated roles fetched, the release
// never requested; the next check fetches no role again (the stored ones
// are reused). No honest release follows here: the snapshot the device
// now trusts lists the chain, and TUF 5.5.5 refuses a later snapshot that
// drops it, so an honest repository keeps listing it.
func TestDelegationThousandRoleChain(t *testing.T) {
	t.Parallel()
	r, d := trustingDevice(t)
	names, first := forgeChain(t, r, 1000, "6.6.6")
	top := r.Forge(repository.RoleTargets, func(s any) {
		s.(*metadata.TargetsType).Delegations = delegationTo(names[0], first)
	}, r.Keys(repository.RoleTargets)...)
	r.Forge(repository.RoleSnapshot, func(s any) {
		meta := s.(*metadata.SnapshotType).Meta
		meta["targets.json"] = metadata.MetaFile(top)
		for _, n := range names {
			meta[n+".json"] = metadata.MetaFile(1)
		}
	}, r.Keys(repository.RoleSnapshot)...)
	r.ResetRequests()
	before := d.snap()
	err := d.update(context.Background())
	wantErr(t, "update", err, updater.ErrNoUpdate)
	d.assertRefused(before, noWrites)
	if n := metadataRequests(r, names...); n == 0 || n > 32 {
		t.Errorf("%d delegated roles fetched, want 1 to 32", n)
	}
	if n := r.Requests(delegatedFile("6.6.6")); n != 0 {
		t.Errorf("the release at the end of the chain was requested %d times", n)
	}
	r.ResetRequests()
	err = d.update(context.Background())
	wantErr(t, "second update", err, updater.ErrNoUpdate)
	d.assertRefused(before, noWrites)
	if n := metadataRequests(r, names...); n != 0 {
		t.Errorf("second check fetched %d delegated roles again, want 0", n)
	}
}

// forgeChain serves n delegated roles (version 1), each delegating rootfs/*
// to the next with a key of its own, the last listing release version. It
// returns the role names and the first role's key.
func forgeChain(t *testing.T, r *tuftest.Repo, n int, version string) ([]string, *repository.Key) {
	t.Helper()
	names := make([]string, n)
	keys := make([]*repository.Key, n)
	for i := range n {
		names[i] = fmt.Sprintf("link-%04d", i)
		k, err := repository.GenerateKey(repository.Ed25519)
		must(t, err)
		keys[i] = k
	}
	img := image(version)
	r.SetFile(delegatedFile(version), img)
	for i := range n {
		m := metadata.Targets(time.Now().AddDate(1, 0, 0))
		if i+1 < n {
			m.Signed.Delegations = delegationTo(names[i+1], keys[i+1])
		} else {
			tf, err := metadata.TargetFile().FromBytes(targetPath(version), img, "sha256")
			must(t, err)
			raw, err := json.Marshal(custom(version))
			must(t, err)
			c := json.RawMessage(raw)
			tf.Custom = &c
			m.Signed.Targets[targetPath(version)] = tf
		}
		_, err := m.Sign(keys[i].Signer())
		must(t, err)
		b, err := m.ToBytes(false)
		must(t, err)
		r.SetFile("/metadata/1."+names[i]+".json", b)
	}
	return names, keys[0]
}

// delegationTo delegates rootfs/* to name, signed by k.
func delegationTo(name string, k *repository.Key) *metadata.Delegations {
	return &metadata.Delegations{
		Keys:  map[string]*metadata.Key{k.ID(): k.Public()},
		Roles: []metadata.DelegatedRole{{Name: name, KeyIDs: []string{k.ID()}, Threshold: 1, Paths: []string{"rootfs/*"}}},
	}
}
