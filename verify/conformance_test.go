package verify_test

// Behaviours the official client conformance suite
// (theupdateframework/tuf-conformance) checks that no other test of this
// package covers, written from the specification. The suite itself runs
// against cmd/tuf-conformance-client (see its README for the mapping of
// every suite test to a test of ours).

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

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
	sign(t, r.timestamp, r.keys[metadata.TIMESTAMP]...)
	r.files["metadata/timestamp.json"] = encode(t, r.timestamp)
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
