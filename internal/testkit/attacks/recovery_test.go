package attacks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// damage changes the device's trusted metadata directory (dir is
// <StateDir>/tuf) while the device is off.
type damage func(t *testing.T, dir string, r *tuftest.Repo)

// exists fails the test unless the file to damage is there: a damage
// that misses its file would test nothing.
func exists(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("file to damage: %v", err)
	}
}

func garbage(name string) damage {
	return func(t *testing.T, dir string, _ *tuftest.Repo) {
		exists(t, filepath.Join(dir, name))
		must(t, os.WriteFile(filepath.Join(dir, name), []byte("{\"signed\": garbage"), 0o644))
	}
}

func truncate(name string) damage {
	return func(t *testing.T, dir string, _ *tuftest.Repo) {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		must(t, err)
		must(t, os.WriteFile(p, b[:len(b)/2], 0o644))
	}
}

func replace(name string, data func(t *testing.T, r *tuftest.Repo) []byte) damage {
	return func(t *testing.T, dir string, r *tuftest.Repo) {
		exists(t, filepath.Join(dir, name))
		must(t, os.WriteFile(filepath.Join(dir, name), data(t, r), 0o644))
	}
}

func remove(name string) damage {
	return func(t *testing.T, dir string, _ *tuftest.Repo) {
		exists(t, filepath.Join(dir, name))
		must(t, os.RemoveAll(filepath.Join(dir, name)))
	}
}

// every applies d to every regular file in the directory and its root
// history.
func every(d func(name string) damage) damage {
	return func(t *testing.T, dir string, r *tuftest.Repo) {
		for _, sub := range []string{".", "roots"} {
			entries, err := os.ReadDir(filepath.Join(dir, sub))
			must(t, err)
			for _, e := range entries {
				if e.Type().IsRegular() {
					d(filepath.Join(sub, e.Name()))(t, dir, r)
				}
			}
		}
	}
}

// recovery is a device that trusts a rotated root: it refreshed, the
// publisher rotated every key (root 2, signed by the old and new root
// keys, revokes the old ones), and it refreshed again. Damage cases run
// one after the other on it, each ending with the device recovered.
type recovery struct {
	r *tuftest.Repo
	d *device
	n int
}

func newRecovery(t *testing.T) *recovery {
	r, d := trustingDevice(t)
	for _, role := range repository.Roles {
		r.RotateKeys(role)
	}
	r.Publish()
	d.trust()
	if got, want := d.trustedRootVersion(), r.Version(repository.RoleRoot); got != want {
		t.Fatalf("trusted root %d after the rotation, want %d", got, want)
	}
	return &recovery{r: r, d: d}
}

// run damages the trusted metadata while the device is off and restarts
// it. An attacker holding every revoked key publishes a next root, then a
// targets role listing its own release, signed by the old keys only: the
// device must refuse both with ErrUntrusted and go-tuf's
// ErrUnsignedMetadata, write nothing, take the next honest release, and
// end up trusting the publisher's newest root again.
func (rc *recovery) run(t *testing.T, dmg damage) {
	r, d := rc.r, rc.d
	parent := d.t
	d.t = t
	defer func() { d.t = parent }()
	rc.n++

	dmg(t, filepath.Join(d.stateDir, "tuf"), r)
	d.start()
	before := d.snap()
	// Served, not published: the chain of genuine roots stays short.
	next := r.Version(repository.RoleRoot) + 1
	r.SetFile(fmt.Sprintf("metadata/%d.root.json", next), forgeRoot(t, r, next, r.RevokedKeys(repository.RoleRoot)...))
	err := d.update(context.Background())
	wantErr(t, "update with a root signed by the revoked root keys", err, verify.ErrUntrusted, &metadata.ErrUnsignedMetadata{})
	d.assertRefused(before, noWrites)
	r.ClearOverrides()

	d.start()
	forgeWith(r, repository.RoleTargets, r.RevokedKeys(repository.RoleTargets)...)
	err = d.update(context.Background())
	wantErr(t, "update with targets signed by the revoked targets key", err, verify.ErrUntrusted, &metadata.ErrUnsignedMetadata{})
	d.assertRefused(before, noWrites)

	r.ClearOverrides()
	d.honestUpdate(fmt.Sprintf("1.%d.0", rc.n))
	if got, want := d.trustedRootVersion(), r.Version(repository.RoleRoot); got != want {
		t.Errorf("trusted root %d after recovery, want %d", got, want)
	}
}

// TestTrustRecoveryCorruptMetadata: the trusted metadata on disk is
// corrupt (garbage, cut short, an older root, another repository's root).
// The device falls back to what still chains from its embedded root,
// walks the root chain again, and never trusts less: keys revoked by a
// rotation stay revoked.
func TestTrustRecoveryCorruptMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dmg  damage
	}{
		{"root garbage", garbage("root.json")},
		{"root cut short", truncate("root.json")},
		{"root replaced by the older root 1", replace("root.json", func(_ *testing.T, r *tuftest.Repo) []byte { return r.Root() })},
		{"root replaced by another repository's root", replace("root.json", func(t *testing.T, _ *tuftest.Repo) []byte { return tuftest.New(t).Root() })},
		{"root history garbage", garbage("roots/2.root.json")},
		{"timestamp garbage", garbage("timestamp.json")},
		{"snapshot cut short", truncate("snapshot.json")},
		{"targets garbage", garbage("targets.json")},
		{"every file garbage", every(garbage)},
		{"every file cut short", every(truncate)},
	}
	rc := newRecovery(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { rc.run(t, tt.dmg) })
	}
}

// TestTrustRecoveryDeletedMetadata: trusted metadata files, the root
// history, or the whole directory are gone. The device falls back to the
// embedded root, walks the chain again from the repository, and refuses
// what the revoked keys sign.
func TestTrustRecoveryDeletedMetadata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dmg  damage
	}{
		{"root deleted", remove("root.json")},
		{"root history deleted", remove("roots")},
		{"root and history deleted", func(t *testing.T, dir string, r *tuftest.Repo) {
			remove("root.json")(t, dir, r)
			remove("roots")(t, dir, r)
		}},
		{"timestamp deleted", remove("timestamp.json")},
		{"snapshot and targets deleted", func(t *testing.T, dir string, r *tuftest.Repo) {
			remove("snapshot.json")(t, dir, r)
			remove("targets.json")(t, dir, r)
		}},
		{"whole directory deleted", remove(".")},
	}
	rc := newRecovery(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { rc.run(t, tt.dmg) })
	}
}

// forgeRoot returns the current root as version v, signed by keys only.
func forgeRoot(t *testing.T, r *tuftest.Repo, v int64, keys ...*repository.Key) []byte {
	t.Helper()
	m, err := metadata.Root().FromBytes(r.MetadataFile(fmt.Sprintf("%d.root.json", r.Version(repository.RoleRoot))))
	must(t, err)
	m.Signed.Version = v
	m.ClearSignatures()
	for _, k := range keys {
		_, err := m.Sign(k.Signer())
		must(t, err)
	}
	b, err := m.ToBytes(true)
	must(t, err)
	return b
}
