package attacks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// versions are the published versions of every top-level role at one
// moment.
type versions map[string]int64

func published(r *tuftest.Repo) versions {
	v := versions{}
	for _, role := range repository.Roles {
		v[role] = r.Version(role)
	}
	return v
}

// rollback runs one rollback attack: the device checks when 1.1.0 is
// published, then when 1.2.0 is (so it trusts metadata newer than the
// 1.1.0 era), the publisher ships 1.3.0, and attack serves metadata of
// the 1.1.0 era (old) to hide it.
// The refresh must fail with ErrUntrusted and go-tuf's
// ErrBadVersionNumber, nothing may be written, and once the attack stops
// the device takes 1.3.0.
func rollback(t *testing.T, setup func(r *tuftest.Repo), attack func(t *testing.T, r *tuftest.Repo, old versions)) {
	t.Helper()
	r := tuftest.New(t)
	if setup != nil {
		setup(r)
	}
	d := newDevice(t, r, nil)
	release(r, "1.1.0")
	d.trust()
	old := published(r)
	release(r, "1.2.0")
	d.trust()
	img := release(r, "1.3.0")
	before := d.snap()
	attack(t, r, old)
	err := d.update(context.Background())
	wantErr(t, "update under rollback", err, verify.ErrUntrusted, &metadata.ErrBadVersionNumber{})
	d.assertRefused(before, noWrites)
	// A device restarted meanwhile is not fooled either: the trusted
	// metadata on disk carries the versions.
	d.start()
	err = d.update(context.Background())
	wantErr(t, "update under rollback after a restart", err, verify.ErrUntrusted, &metadata.ErrBadVersionNumber{})
	d.assertRefused(before, noWrites)

	r.ClearOverrides()
	r.Publish() // supersedes anything the attack published
	d.mustUpdate("1.3.0", img)
}

// TestRollbackTimestamp: the server replays the timestamp of an earlier
// era, validly signed but older than the one the device trusts.
func TestRollbackTimestamp(t *testing.T) {
	t.Parallel()
	rollback(t, nil, func(t *testing.T, r *tuftest.Repo, old versions) {
		r.ServeTimestampVersion(old[repository.RoleTimestamp])
	})
}

// TestRollbackSnapshot: a new timestamp (signed by a stolen or online
// timestamp key) points to an old, genuine snapshot.
func TestRollbackSnapshot(t *testing.T) {
	t.Parallel()
	rollback(t, nil, func(t *testing.T, r *tuftest.Repo, old versions) {
		r.RollbackSnapshot(old[repository.RoleSnapshot])
	})
}

// TestRollbackTargets: a new snapshot lists an old, genuine targets
// version (which does not list the new release).
func TestRollbackTargets(t *testing.T) {
	t.Parallel()
	rollback(t, nil, func(t *testing.T, r *tuftest.Repo, old versions) {
		r.RollbackTargets(old[repository.RoleTargets])
	})
}

// TestRollbackRoot: the next root version the device asks for is an older
// root, validly signed by keys it still trusts.
func TestRollbackRoot(t *testing.T) {
	t.Parallel()
	bumpRoot := func(r *tuftest.Repo) {
		// Roots 2 and 3 with the same keys: an old root verifies with
		// the current keys, only its version betrays it.
		for range 2 {
			must(t, r.Repository().Bump(repository.RoleRoot))
			r.Publish()
		}
	}
	rollback(t, bumpRoot, func(t *testing.T, r *tuftest.Repo, old versions) {
		next := r.Version(repository.RoleRoot) + 1
		r.SetFile(fmt.Sprintf("metadata/%d.root.json", next), r.MetadataFile(fmt.Sprintf("%d.root.json", old[repository.RoleRoot]-1)))
	})
}

// TestRollbackAfterMetadataLoss: a device that lost its trusted metadata
// (the whole directory) cannot tell an old timestamp from the newest one,
// so TUF alone accepts a replayed repository of an earlier era. The
// installed version still holds: the release the old metadata offers is
// older than the one running, Check fails with ErrNoUpdate (not
// ErrIncompatible: nothing newer is published there at all), and nothing
// is written. Once the replay stops the device takes the next release.
func TestRollbackAfterMetadataLoss(t *testing.T) {
	t.Parallel()
	r := tuftest.New(t)
	d := newDevice(t, r, nil)
	d.honestUpdate("1.1.0")
	old := published(r)
	d.honestUpdate("1.2.0")
	must(t, os.RemoveAll(filepath.Join(d.stateDir, "tuf")))
	d.start()
	r.ServeTimestampVersion(old[repository.RoleTimestamp])
	before := d.snap()
	err := d.update(context.Background())
	wantErr(t, "update from the replayed repository", err, updater.ErrNoUpdate)
	if errors.Is(err, verify.ErrIncompatible) {
		t.Errorf("update: %v, want no release at all", err)
	}
	d.assertRefused(before, noWrites)
	r.ClearOverrides()
	d.honestUpdate("1.3.0")
}
