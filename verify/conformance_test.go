package verify_test

// Behaviours the official client conformance suite
// (theupdateframework/tuf-conformance) checks that no other test of this
// package covers, written from the specification. The suite itself runs
// against cmd/tuf-conformance-client (see its README for the mapping of
// every suite test to a test of ours).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// TestTimestampContentChanges: the repository re-signs timestamp.json
// with other content but the same version. The client keeps the one it
// trusts (TUF 5.4.3: a new timestamp must have a higher version; equal is
// no update).
func TestTimestampContentChanges(t *testing.T) {
	r := newTestRepo(t, true)
	dir := t.TempDir()
	c := newClient(t, r, dir)
	refresh(t, c)
	trusted, err := os.ReadFile(filepath.Join(dir, "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.timestamp.Signed.Expires = r.timestamp.Signed.Expires.Add(3600e9)
	tuftest.SignMetadata(t, r.timestamp, r.keys[metadata.TIMESTAMP]...)
	r.files["metadata/timestamp.json"] = tuftest.EncodeMetadata(t, r.timestamp)
	r.mu.Unlock()
	refresh(t, c)
	got, _ := os.ReadFile(filepath.Join(dir, "timestamp.json"))
	if !bytes.Equal(got, trusted) {
		t.Error("a timestamp of the same version replaced the trusted one")
	}
}

// TestMetadataBytesMatch: the client stores the bytes the repository
// served, not a re-serialisation (hashes of stored metadata must match).
func TestMetadataBytesMatch(t *testing.T) {
	r := newTestRepo(t, true)
	r.delegate("a", []string{"*"}, false)
	r.addTarget("a", "f", []byte("x"), customFor("f", "1.0.0", "*"))
	r.publish()
	dir := t.TempDir()
	refresh(t, newClient(t, r, dir))
	for _, name := range []string{"timestamp", "snapshot", "targets", "a"} {
		served := r.get("metadata/" + name + ".json")
		stored, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil || !bytes.Equal(stored, served) {
			t.Errorf("%s.json stored %d bytes (%v), not the %d served", name, len(stored), err, len(served))
		}
	}
}

// TestUnusualRoleNames: delegated role names are escaped in URLs and file
// names, so that none escapes the metadata directory or the URL path.
func TestUnusualRoleNames(t *testing.T) {
	for _, name := range []string{"../escape", "a/b", "?query", "%2F", "space name", "ünicode"} {
		t.Run(name, func(t *testing.T) {
			r := newTestRepo(t, false)
			r.delegate(name, []string{"*"}, false)
			r.addTarget(name, "f", []byte("x"), nil)
			r.publish()
			dir := t.TempDir()
			tr, err := newClient(t, r, dir).Update(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			before := len(r.requested())
			ti, err := tr.Target(context.Background(), "f")
			if err != nil || ti.Role != name {
				t.Fatalf("Target = %+v, %v; want found in %q", ti, err, name)
			}
			// The server sees the decoded path: one request, for that role.
			if got, want := r.requested()[before:], []string{"metadata/" + name + ".json"}; !slices.Equal(got, want) {
				t.Errorf("requested %q, want %q", got, want)
			}
			if _, err := os.Stat(filepath.Join(dir, url.PathEscape(name)+".json")); err != nil {
				t.Errorf("role not stored under its escaped name: %v", err)
			}
		})
	}
}

// TestTargetsRoleRemoval: a new snapshot that no longer lists a delegated
// role the trusted snapshot lists is refused (TUF 5.5.5).
func TestTargetsRoleRemoval(t *testing.T) {
	r := newTestRepo(t, true)
	r.delegate("a", []string{"*"}, false)
	r.publish()
	dir := t.TempDir()
	c := newClient(t, r, dir)
	refresh(t, c)
	r.mu.Lock()
	delete(r.delegated, "a")
	delete(r.snapshot.Signed.Meta, "a.json")
	r.targets.Signed.Delegations = nil
	r.publishLocked()
	r.mu.Unlock()
	_, err := c.Refresh(context.Background())
	if !errors.Is(err, verify.ErrUntrusted) || !errors.Is(err, &metadata.ErrRepository{}) {
		t.Errorf("Refresh = %v, want ErrUntrusted (a role dropped from the snapshot)", err)
	}
}

// TestExpiredLocalMetadata: trusted metadata that has expired since the
// last refresh does not block the next one when the repository has
// published fresh versions (TUF 5.3.10, 5.4: expiry is judged on the new
// metadata; an expired trusted root is still the start of the root walk).
func TestExpiredLocalMetadata(t *testing.T) {
	for _, role := range []string{metadata.TIMESTAMP, metadata.ROOT} {
		t.Run(role, func(t *testing.T) {
			r := newTestRepo(t, true)
			now := testEpoch
			c := newClientWith(t, r, t.TempDir(), func(cfg *verify.Config) { cfg.Now = func() time.Time { return now } })
			r.mu.Lock()
			week := testEpoch.AddDate(0, 0, 7)
			if role == metadata.ROOT {
				r.root.Signed.Expires = week
				r.root.Signed.Version++
				r.storeRoot()
			} else {
				r.timestamp.Signed.Expires = week
			}
			r.publishLocked()
			r.mu.Unlock()
			refresh(t, c)
			// Day 10: the trusted role has expired; the repository has
			// published a fresh one.
			now = testEpoch.AddDate(0, 0, 10)
			r.mu.Lock()
			if role == metadata.ROOT {
				r.root.Signed.Expires = testEpoch.AddDate(1, 0, 0)
				r.root.Signed.Version++
				r.storeRoot()
			} else {
				r.timestamp.Signed.Expires = testEpoch.AddDate(1, 0, 0)
			}
			r.publishLocked()
			r.mu.Unlock()
			if _, err := c.Refresh(context.Background()); err != nil {
				t.Errorf("Refresh after the local %s expired: %v", role, err)
			}
		})
	}
}

// TestExtraInvalidSignature: a signature that does not verify, beside a
// threshold of good ones, does not make metadata untrusted (TUF 5.4.2
// counts the valid signatures of distinct authorised keys).
func TestExtraInvalidSignature(t *testing.T) {
	r := newTestRepo(t, true)
	r.mu.Lock()
	tuftest.SignMetadata(t, r.timestamp, r.keys[metadata.TIMESTAMP]...)
	bad := r.timestamp.Signatures[0]
	bad.KeyID = "0000000000000000000000000000000000000000000000000000000000000000"
	r.timestamp.Signatures = append(r.timestamp.Signatures, bad)
	r.files["metadata/timestamp.json"] = tuftest.EncodeMetadata(t, r.timestamp)
	r.mu.Unlock()
	refresh(t, newClient(t, r, t.TempDir()))
}

// TestIncorrectMetadataType: snapshot metadata served as timestamp.json
// is refused.
func TestIncorrectMetadataType(t *testing.T) {
	r := newTestRepo(t, true)
	r.set("metadata/timestamp.json", r.get("metadata/snapshot.json"))
	if _, err := newClient(t, r, t.TempDir()).Refresh(context.Background()); !errors.Is(err, verify.ErrUntrusted) {
		t.Errorf("Refresh = %v, want ErrUntrusted", err)
	}
}

// TestTargetInfo: any trusted target is readable, switchback's or not:
// length, hashes, custom metadata as signed, and its URL.
func TestTargetInfo(t *testing.T) {
	r := newTestRepo(t, true)
	r.addTarget("", "oci/manifest.json", []byte("manifest"), json.RawMessage(`{"mediaType":"x"}`))
	r.addTarget("", "plain", []byte("plain"), nil)
	r.publish()
	tr, err := newClient(t, r, t.TempDir()).Update(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ti, err := tr.Target(context.Background(), "oci/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("manifest"))
	if ti.Length != 8 || !bytes.Equal(ti.Hashes["sha256"], sum[:]) || string(ti.Custom) != `{"mediaType":"x"}` || ti.Role != "targets" {
		t.Errorf("TargetInfo = %+v", ti)
	}
	if want := r.TargetsURL() + "/oci/" + hex.EncodeToString(sum[:]) + ".manifest.json"; ti.URL != want {
		t.Errorf("URL = %s, want %s", ti.URL, want)
	}
	if ti, err := tr.Target(context.Background(), "plain"); err != nil || ti.Custom != nil {
		t.Errorf("plain target: %+v, %v; want no custom metadata", ti, err)
	}
	ts, err := tr.Targets(context.Background())
	if err != nil || len(ts.Targets) != 0 || len(ts.Rejected) != 2 {
		t.Errorf("Targets (switchback's only) = %+v, %v; want both rejected", ts, err)
	}
}
