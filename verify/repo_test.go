package verify_test

// A minimal signed TUF repository served by httptest, built directly on
// go-tuf's metadata package, for the attacks internal/testkit/tuftest does not
// script: it lets a test re-sign, tamper with and replace any file.

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

type testRepo struct {
	t           testing.TB
	mu          sync.Mutex
	srv         *httptest.Server
	files       map[string][]byte // URL path (without leading "/") -> body
	requests    []string
	notModified int
	keys        map[string][]ed25519.PrivateKey // role -> signing keys
	root        *metadata.Metadata[metadata.RootType]
	rootFiles   [][]byte // index = version-1
	timestamp   *metadata.Metadata[metadata.TimestampType]
	snapshot    *metadata.Metadata[metadata.SnapshotType]
	targets     *metadata.Metadata[metadata.TargetsType]
	delegated   map[string]*metadata.Metadata[metadata.TargetsType]
	consistent  bool
}

var testEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testNow() time.Time { return testEpoch }

func newTestRepo(t testing.TB, consistent bool) *testRepo {
	t.Helper()
	r := &testRepo{
		t:          t,
		files:      map[string][]byte{},
		keys:       map[string][]ed25519.PrivateKey{},
		delegated:  map[string]*metadata.Metadata[metadata.TargetsType]{},
		consistent: consistent,
	}
	exp := testEpoch.AddDate(1, 0, 0)
	r.root = metadata.Root(exp)
	r.root.Signed.ConsistentSnapshot = consistent
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		r.addKey(role)
	}
	r.timestamp = metadata.Timestamp(exp)
	r.snapshot = metadata.Snapshot(exp)
	r.targets = metadata.Targets(exp)
	r.storeRoot()
	r.publish()
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *testRepo) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	p := strings.TrimPrefix(req.URL.Path, "/")
	r.requests = append(r.requests, p)
	b, ok := r.files[p]
	r.mu.Unlock()
	if !ok {
		http.NotFound(w, req)
		return
	}
	// An ETag and conditional requests, like nginx or an object store.
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	if req.Header.Get("If-None-Match") == etag {
		r.mu.Lock()
		r.notModified++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Write(b)
}

func (r *testRepo) MetadataURL() string { return r.srv.URL + "/metadata" }
func (r *testRepo) TargetsURL() string  { return r.srv.URL + "/targets" }

// Root returns root.json version 1.
func (r *testRepo) Root() []byte { return r.rootFiles[0] }

// addKey adds a fresh key to a top-level role (in the unpublished root).
func (r *testRepo) addKey(role string) {
	priv, k := tuftest.NewMetadataKey(r.t)
	if err := r.root.Signed.AddKey(k, role); err != nil {
		r.t.Fatal(err)
	}
	r.keys[role] = append(r.keys[role], priv)
}

// storeRoot signs the current root with its own keys plus extra (old keys
// during a rotation) and serves it as <version>.root.json.
func (r *testRepo) storeRoot(extra ...ed25519.PrivateKey) {
	tuftest.SignMetadata(r.t, r.root, append(extra, r.keys[metadata.ROOT]...)...)
	b := tuftest.EncodeMetadata(r.t, r.root)
	r.rootFiles = append(r.rootFiles, b)
	r.files[fmt.Sprintf("metadata/%d.root.json", r.root.Signed.Version)] = b
	r.files["metadata/root.json"] = b
}

// rotateRoot replaces every key of role by a new one and publishes root
// version+1, signed by the old and the new root keys.
func (r *testRepo) rotateRoot(role string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.keys[metadata.ROOT]
	for _, id := range slicesClone(r.root.Signed.Roles[role].KeyIDs) {
		if err := r.root.Signed.RevokeKey(id, role); err != nil {
			r.t.Fatal(err)
		}
	}
	r.keys[role] = nil
	r.addKey(role)
	r.root.Signed.Version++
	if role == metadata.ROOT {
		r.storeRoot(old...)
	} else {
		r.storeRoot()
	}
	r.publishLocked()
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// addTarget adds a target file with custom metadata (nil for none; a
// json.RawMessage is used as is) to role ("" = top-level targets).
func (r *testRepo) addTarget(role, p string, data []byte, custom any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tf, err := metadata.TargetFile().FromBytes(p, data, "sha256")
	if err != nil {
		r.t.Fatal(err)
	}
	if custom != nil {
		raw, ok := custom.(json.RawMessage)
		if !ok {
			if raw, err = json.Marshal(custom); err != nil {
				r.t.Fatal(err)
			}
		}
		tf.Custom = &raw
	}
	m := r.targets
	if role != "" {
		m = r.delegated[role]
	}
	m.Signed.Targets[p] = tf
	sum := sha256.Sum256(data)
	dir, name := path.Split(p)
	r.files["targets/"+p] = data
	r.files["targets/"+dir+hex.EncodeToString(sum[:])+"."+name] = data
}

// delegate adds a delegated role of the top-level targets role, trusted
// for paths.
func (r *testRepo) delegate(name string, paths []string, terminating bool) {
	r.delegateFrom("", metadata.DelegatedRole{Name: name, Paths: paths, Terminating: terminating})
}

// delegateFrom adds a delegation from parent ("" = top-level targets) to
// d.Name (created if new) with a fresh key of its own; KeyIDs and
// Threshold are filled in.
func (r *testRepo) delegateFrom(parent string, d metadata.DelegatedRole) {
	r.mu.Lock()
	defer r.mu.Unlock()
	priv, k := tuftest.NewMetadataKey(r.t)
	p := r.targets
	if parent != "" {
		p = r.delegated[parent]
	}
	if p.Signed.Delegations == nil {
		p.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	id, _ := k.ID()
	p.Signed.Delegations.Keys[id] = k
	d.KeyIDs, d.Threshold = []string{id}, 1
	p.Signed.Delegations.Roles = append(p.Signed.Delegations.Roles, d)
	r.keys[d.Name] = append(r.keys[d.Name], priv)
	if r.delegated[d.Name] == nil {
		r.delegated[d.Name] = metadata.Targets(testEpoch.AddDate(1, 0, 0))
	}
}

// succinct makes parent ("" = top-level targets) delegate to 2^bits hash
// bins named prefix-<hex>, all signed by one new key.
func (r *testRepo) succinct(parent, prefix string, bits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	priv, k := tuftest.NewMetadataKey(r.t)
	p := r.targets
	if parent != "" {
		p = r.delegated[parent]
	}
	id, _ := k.ID()
	s := &metadata.SuccinctRoles{KeyIDs: []string{id}, Threshold: 1, BitLength: bits, NamePrefix: prefix}
	p.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{id: k}, SuccinctRoles: s}
	for _, name := range s.GetRoles() {
		r.keys[name] = []ed25519.PrivateKey{priv}
		r.delegated[name] = metadata.Targets(testEpoch.AddDate(1, 0, 0))
	}
}

// publish bumps and re-signs targets (and delegated roles), snapshot and
// timestamp.
func (r *testRepo) publish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.publishLocked()
}

func (r *testRepo) publishLocked() {
	put := func(name string, version int64, b []byte) {
		r.files["metadata/"+name+".json"] = b
		r.files[fmt.Sprintf("metadata/%d.%s.json", version, name)] = b
	}
	for name, d := range r.delegated {
		d.Signed.Version++
		tuftest.SignMetadata(r.t, d, r.keys[name]...)
		put(name, d.Signed.Version, tuftest.EncodeMetadata(r.t, d))
		r.snapshot.Signed.Meta[name+".json"] = metadata.MetaFile(d.Signed.Version)
	}
	r.targets.Signed.Version++
	tuftest.SignMetadata(r.t, r.targets, r.keys[metadata.TARGETS]...)
	put(metadata.TARGETS, r.targets.Signed.Version, tuftest.EncodeMetadata(r.t, r.targets))
	r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.targets.Signed.Version)
	r.snapshot.Signed.Version++
	tuftest.SignMetadata(r.t, r.snapshot, r.keys[metadata.SNAPSHOT]...)
	put(metadata.SNAPSHOT, r.snapshot.Signed.Version, tuftest.EncodeMetadata(r.t, r.snapshot))
	r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snapshot.Signed.Version)
	r.timestamp.Signed.Version++
	tuftest.SignMetadata(r.t, r.timestamp, r.keys[metadata.TIMESTAMP]...)
	r.files["metadata/timestamp.json"] = tuftest.EncodeMetadata(r.t, r.timestamp)
}

// set replaces a served file.
func (r *testRepo) set(p string, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[p] = b
}

func (r *testRepo) get(p string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[p]
}

func (r *testRepo) requested() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

func customFor(component, version string, hw ...string) map[string]any {
	return map[string]any{"component": component, "version": version, "hardware": hw}
}
