package relay_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/verify"
)

// miniRepo is a signed TUF repository built on go-tuf's metadata package,
// for what internal/testkit/tuftest does not publish: repositories without
// consistent snapshots, and delegated roles.
type miniRepo struct {
	t         testing.TB
	mu        sync.Mutex
	files     map[string][]byte
	keys      map[string]ed25519.PrivateKey
	root      []byte
	targets   *metadata.Metadata[metadata.TargetsType]
	delegated map[string]*metadata.Metadata[metadata.TargetsType]
	srv       *httptest.Server
}

func newMiniRepo(t testing.TB, consistent bool, roles map[string][]string) *miniRepo {
	exp := time.Now().AddDate(1, 0, 0)
	r := &miniRepo{t: t, files: map[string][]byte{}, keys: map[string]ed25519.PrivateKey{}, delegated: map[string]*metadata.Metadata[metadata.TargetsType]{}}
	root := metadata.Root(exp)
	root.Signed.ConsistentSnapshot = consistent
	for _, role := range metadata.TOP_LEVEL_ROLE_NAMES {
		if err := root.Signed.AddKey(r.newKey(role), role); err != nil {
			t.Fatal(err)
		}
	}
	r.root = signEncode(t, root, r.keys[metadata.ROOT])
	r.files["metadata/1.root.json"] = r.root
	r.targets = metadata.Targets(exp)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range roles {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		k := r.newKey(name)
		id, _ := k.ID()
		if r.targets.Signed.Delegations == nil {
			r.targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
		}
		r.targets.Signed.Delegations.Keys[id] = k
		r.targets.Signed.Delegations.Roles = append(r.targets.Signed.Delegations.Roles, metadata.DelegatedRole{
			Name: name, KeyIDs: []string{id}, Threshold: 1, Paths: roles[name], Terminating: true})
		r.delegated[name] = metadata.Targets(exp)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		b, ok := r.files[strings.TrimPrefix(req.URL.Path, "/")]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// newKey makes the key of role.
func (r *miniRepo) newKey(role string) *metadata.Key {
	priv, k := tuftest.NewMetadataKey(r.t)
	r.keys[role] = priv
	return k
}

// signEncode signs m with key and encodes it.
func signEncode[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], key ed25519.PrivateKey) []byte {
	t.Helper()
	tuftest.SignMetadata(t, m, key)
	return tuftest.EncodeMetadata(t, m)
}

// add lists a target in role ("" for the top-level targets) and serves
// its bytes under both names.
func (r *miniRepo) add(role, p string, data []byte, custom any) {
	tf, err := metadata.TargetFile().FromBytes(p, data, "sha256")
	if err != nil {
		r.t.Fatal(err)
	}
	if custom != nil {
		raw, _ := json.Marshal(custom)
		tf.Custom = (*json.RawMessage)(&raw)
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

// publish signs version 1 of targets, the delegated roles, snapshot and
// timestamp, under both plain and versioned names.
func (r *miniRepo) publish() {
	exp := time.Now().AddDate(1, 0, 0)
	snap, ts := metadata.Snapshot(exp), metadata.Timestamp(exp)
	put := func(name string, b []byte) {
		r.files["metadata/"+name+".json"] = b
		r.files["metadata/1."+name+".json"] = b
	}
	for name, d := range r.delegated {
		put(name, signEncode(r.t, d, r.keys[name]))
		snap.Signed.Meta[name+".json"] = metadata.MetaFile(1)
	}
	put(metadata.TARGETS, signEncode(r.t, r.targets, r.keys[metadata.TARGETS]))
	put(metadata.SNAPSHOT, signEncode(r.t, snap, r.keys[metadata.SNAPSHOT]))
	r.files["metadata/timestamp.json"] = signEncode(r.t, ts, r.keys[metadata.TIMESTAMP])
}

// An edge device's verify client sees, through the relay, exactly the
// targets it sees upstream, with or without consistent snapshots and with
// delegated roles; the relay serves every one of them under the name
// verify asks for, and nothing a delegation does not trust.
func TestMirrorsDelegationsAndPlainNames(t *testing.T) {
	for _, consistent := range []bool{true, false} {
		t.Run(fmt.Sprintf("consistent=%v", consistent), func(t *testing.T) {
			repo := newMiniRepo(t, consistent, map[string][]string{"apps": {"app/*"}})
			custom := func(c, v string) verify.Custom {
				return verify.Custom{Component: c, Version: v, Hardware: []string{hw}}
			}
			repo.add("", "rootfs/1.0.0.img", []byte("rootfs"), custom("rootfs", "1.0.0"))
			repo.add("apps", "app/2.0.0", []byte("app two"), custom("app", "2.0.0"))
			repo.add("apps", "fw/sneaky", []byte("outside its paths"), custom("fw", "9.0.0"))
			repo.add("", "raw.bin", []byte("no switchback custom"), nil)
			repo.publish()
			r, _ := newRelay(t, nil, func(c *relay.Config) {
				c.Root, c.MetadataURL, c.TargetsURL = repo.root, repo.srv.URL+"/metadata/", repo.srv.URL+"/targets/"
			})
			syncRelay(t, r)
			srv := httptest.NewServer(r)
			t.Cleanup(srv.Close)

			direct := edgeView(t, repo.root, repo.srv.URL)
			via := edgeView(t, repo.root, srv.URL)
			if !slices.Equal(targetPaths(direct), targetPaths(via)) || len(via.Targets) != 2 {
				t.Fatalf("through the relay %q, upstream %q", targetPaths(via), targetPaths(direct))
			}
			for _, tg := range via.Targets {
				res, b := get(t, srv.Client(), tg.URL, nil)
				if res.StatusCode != http.StatusOK || !bytes.Equal(b, repo.files["targets/"+tg.Path]) {
					t.Errorf("GET %s: %d", tg.URL, res.StatusCode)
				}
			}
			for p, want := range map[string]int{"raw.bin": 200, "fw/sneaky": 404} {
				u := srv.URL + "/targets/" + p
				if consistent {
					sum := sha256.Sum256(repo.files["targets/"+p])
					dir, name := path.Split(p)
					u = srv.URL + "/targets/" + dir + hex.EncodeToString(sum[:]) + "." + name
				}
				if res, _ := get(t, srv.Client(), u, nil); res.StatusCode != want {
					t.Errorf("GET %s: %d, want %d", u, res.StatusCode, want)
				}
			}
		})
	}
}

// edgeView refreshes a fresh verify client against base.
func edgeView(t *testing.T, root []byte, base string) *verify.Targets {
	t.Helper()
	c, err := verify.New(verify.Config{Root: root, MetadataURL: base + "/metadata/", TargetsURL: base + "/targets/", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatalf("refresh from %s: %v", base, err)
	}
	return ts
}

func targetPaths(ts *verify.Targets) []string {
	var ps []string
	for _, tg := range ts.Targets {
		ps = append(ps, tg.Path)
	}
	return ps
}
