// Package tuftest serves signed TUF repositories of switchback releases
// over httptest, for tests of the device side and the security suite.
//
// A Repo is built on package repository (the same code a release pipeline
// uses), kept in a t.TempDir and served on 127.0.0.1. Honest changes
// (AddTarget, RemoveTarget, key rotation, thresholds, expiry) are staged and
// made visible by Publish. Attacks are injected on top: forged metadata
// signed by chosen keys (Forge, SignWith), rollbacks (ServeTimestampVersion,
// RollbackSnapshot, RollbackTargets), replaced bytes (SetTargetBytes,
// SetFile), a stale mirror (Mirror) and HTTP faults (Wrap). After an
// attack, Publish always produces versions newer than anything served
// before, so a device can take the next honest update.
//
// A Repo is safe for concurrent use; tests usually drive it from one
// goroutine while the device fetches from the server.
package tuftest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// Option configures New.
type Option func(*options)

type options struct {
	keyType    repository.KeyType
	thresholds map[string]int
	expiry     map[string]time.Duration
	now        func() time.Time
}

// WithKeyType makes every key of the given type (default Ed25519).
func WithKeyType(t repository.KeyType) Option { return func(o *options) { o.keyType = t } }

// WithThreshold gives role n keys and a threshold of n from the start.
func WithThreshold(role string, n int) Option {
	return func(o *options) { o.thresholds[role] = n }
}

// WithExpiry sets role's expiry period (default: ten years for every role,
// so tests never meet a real expiry by accident).
func WithExpiry(role string, d time.Duration) Option {
	return func(o *options) { o.expiry[role] = d }
}

// WithClock sets the clock the repository signs with (expiry dates are
// computed from it).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Repo is a signed TUF repository served over HTTP for one test.
type Repo struct {
	t       testing.TB
	mu      sync.Mutex
	repo    *repository.Repo
	dir     string
	root1   []byte
	srv     *httptest.Server
	keyType repository.KeyType

	keys       map[string][]*repository.Key
	revoked    map[string][]*repository.Key
	overrides  map[string][]byte
	wraps      []func(http.Handler) http.Handler
	counts     map[string]int
	timestamps map[int64][]byte
	forged     map[string]int64
	// forgedFiles are served over the published files until the next
	// Publish; they never touch the repository directory, which stays
	// the honest publisher's.
	forgedFiles map[string][]byte
	done        chan struct{}
}

const longExpiry = 10 * 365 * 24 * time.Hour

// New builds a repository with one Ed25519 key per role and threshold 1
// (unless options say otherwise), consistent snapshots and long expiries,
// publishes version 1 of every role and serves it on 127.0.0.1 until the
// test ends.
func New(t testing.TB, opts ...Option) *Repo {
	t.Helper()
	o := options{thresholds: map[string]int{}, expiry: map[string]time.Duration{}}
	for _, opt := range opts {
		opt(&o)
	}
	r := &Repo{
		t:           t,
		dir:         t.TempDir(),
		keyType:     o.keyType,
		keys:        map[string][]*repository.Key{},
		revoked:     map[string][]*repository.Key{},
		overrides:   map[string][]byte{},
		counts:      map[string]int{},
		timestamps:  map[int64][]byte{},
		forged:      map[string]int64{},
		forgedFiles: map[string][]byte{},
	}
	io := repository.InitOptions{Roles: map[string]repository.RoleOptions{}, Keys: map[string][]*repository.Key{}}
	for _, role := range repository.Roles {
		n := max(o.thresholds[role], 1)
		for range n {
			r.keys[role] = append(r.keys[role], r.newKey())
		}
		io.Keys[role] = r.keys[role]
		exp := o.expiry[role]
		if exp == 0 {
			exp = longExpiry
		}
		io.Roles[role] = repository.RoleOptions{Threshold: n, Expiry: exp}
	}
	repo, err := repository.Init(context.Background(), repository.Config{Dir: r.dir, Now: o.now}, io)
	if err != nil {
		t.Fatalf("tuftest: init repository: %v", err)
	}
	r.repo = repo
	r.root1, err = os.ReadFile(filepath.Join(repo.MetadataDir(), "1.root.json"))
	if err != nil {
		t.Fatalf("tuftest: %v", err)
	}
	r.recordTimestamp()
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	// Registered after Close, so it runs before it: stalled handlers
	// return and Close does not wait for them.
	r.done = make(chan struct{})
	t.Cleanup(func() { close(r.done) })
	return r
}

func (r *Repo) newKey() *repository.Key {
	k, err := repository.GenerateKey(r.keyType)
	if err != nil {
		r.t.Fatalf("tuftest: %v", err)
	}
	return k
}

func (r *Repo) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.counts[req.URL.Path]++
	var h http.Handler = http.HandlerFunc(r.serveFiles)
	for _, wrap := range r.wraps {
		h = wrap(h)
	}
	r.mu.Unlock()
	h.ServeHTTP(w, req)
}

func (r *Repo) serveFiles(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	if !strings.HasPrefix(p, "/metadata/") && !strings.HasPrefix(p, "/targets/") {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	data, ok := r.overrides[p]
	if !ok {
		data, ok = r.forgedFiles[p]
	}
	r.mu.Unlock()
	// Strong ETags, as nginx and object stores send them, so that
	// conditional requests (the updater's idle checks) answer 304.
	if ok {
		sum := sha256.Sum256(data)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
		http.ServeContent(w, req, path.Base(p), time.Time{}, bytes.NewReader(data))
		return
	}
	// Metadata is small and rewritten in place: its ETag is a hash of
	// its bytes. Target files never change: size and time suffice.
	file := filepath.Join(r.dir, filepath.FromSlash(path.Clean(p)))
	if strings.HasPrefix(p, "/metadata/") {
		if b, err := os.ReadFile(file); err == nil {
			sum := sha256.Sum256(b)
			w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
		}
	} else if fi, err := os.Stat(file); err == nil && fi.Mode().IsRegular() {
		w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.ModTime().UnixNano(), fi.Size()))
	}
	http.FileServer(http.Dir(r.dir)).ServeHTTP(w, req)
}

// Root returns version 1 of root metadata: the trusted root a device
// embeds.
func (r *Repo) Root() []byte { return bytes.Clone(r.root1) }

// URL returns the server's base URL, without a trailing slash.
func (r *Repo) URL() string { return r.srv.URL }

// MetadataURL returns the base URL of the metadata, with a trailing slash.
func (r *Repo) MetadataURL() string { return r.srv.URL + "/metadata/" }

// TargetsURL returns the base URL of the targets, with a trailing slash.
func (r *Repo) TargetsURL() string { return r.srv.URL + "/targets/" }

// Client returns the test server's HTTP client.
func (r *Repo) Client() *http.Client { return r.srv.Client() }

// Repository returns the underlying repository, for changes this package
// has no helper for.
func (r *Repo) Repository() *repository.Repo { return r.repo }

// Dir returns the repository directory (metadata/ and targets/ are served).
func (r *Repo) Dir() string { return r.dir }

func customJSON(t testing.TB, custom any) json.RawMessage {
	t.Helper()
	switch c := custom.(type) {
	case nil:
		return nil
	case json.RawMessage:
		return c
	case []byte:
		return c
	}
	b, err := json.Marshal(custom)
	if err != nil {
		t.Fatalf("tuftest: marshal custom metadata: %v", err)
	}
	return b
}

// AddTarget stages target path with data and custom metadata: a
// verify.Custom, a map, any JSON-marshalable value, or a json.RawMessage
// taken verbatim (nil: no custom metadata). The switchback schema is not
// checked, so malformed or incomplete metadata can be published on purpose;
// only syntactically invalid JSON, which a TUF document cannot carry, fails
// the test. Publish makes it visible.
func (r *Repo) AddTarget(path string, data []byte, custom any) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.repo.AddTargetRaw(context.Background(), path, bytes.NewReader(data), customJSON(r.t, custom)); err != nil {
		r.t.Fatalf("tuftest: add target %s: %v", path, err)
	}
}

// AddCompressedTarget stages target path as data compressed into zstd
// frames of frameSize uncompressed bytes (0: the default), with custom
// completed by the compression fields, as the release tool does.
func (r *Repo) AddCompressedTarget(path string, data []byte, custom verify.Custom, frameSize int) repository.Target {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	tg, err := r.repo.AddTarget(context.Background(), path, bytes.NewReader(data), custom, repository.AddOptions{Zstd: true, FrameSize: frameSize})
	if err != nil {
		r.t.Fatalf("tuftest: add compressed target %s: %v", path, err)
	}
	return tg
}

// RemoveTarget stages the removal of target path.
func (r *Repo) RemoveTarget(path string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.repo.RemoveTarget(path); err != nil {
		r.t.Fatalf("tuftest: %v", err)
	}
}

// Target returns a staged or published target.
func (r *Repo) Target(path string) repository.Target {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	tg, err := r.repo.Target(path)
	if err != nil {
		r.t.Fatalf("tuftest: %v", err)
	}
	return tg
}

// TargetURL returns the hash-prefixed URL a device downloads target path
// from.
func (r *Repo) TargetURL(path string) string {
	return r.TargetsURL() + r.Target(path).File
}

// Publish signs and publishes the staged changes: new targets (if
// changed), snapshot and timestamp versions, each newer than any version
// served before, forged ones included. Overrides set by SetFile,
// SetTargetBytes and ServeTimestampVersion stay until ClearOverrides.
func (r *Repo) Publish() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.publish()
}

func (r *Repo) publish() {
	r.t.Helper()
	ctx := context.Background()
	for _, role := range repository.Roles {
		if r.version(role) <= r.forged[role] && !r.staged(role) {
			if err := r.repo.Bump(role); err != nil {
				r.t.Fatalf("tuftest: %v", err)
			}
		}
	}
	if err := r.repo.Publish(ctx); err != nil {
		r.t.Fatalf("tuftest: publish: %v", err)
	}
	// Versions already used by forged metadata are skipped one by one.
	for _, role := range repository.Roles {
		for r.version(role) <= r.forged[role] {
			if err := r.repo.Bump(role); err != nil {
				r.t.Fatalf("tuftest: %v", err)
			}
			if err := r.repo.Publish(ctx); err != nil {
				r.t.Fatalf("tuftest: publish: %v", err)
			}
		}
	}
	r.forgedFiles = map[string][]byte{}
	r.recordTimestamp()
}

func (r *Repo) status(role string) repository.RoleStatus {
	for _, s := range r.repo.Status() {
		if s.Role == role {
			return s
		}
	}
	r.t.Fatalf("tuftest: unknown role %q", role)
	return repository.RoleStatus{}
}

func (r *Repo) version(role string) int64 { return r.status(role).Version }
func (r *Repo) staged(role string) bool   { return r.status(role).Staged }

// Version returns the published version of role.
func (r *Repo) Version(role string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.version(role)
}

func (r *Repo) recordTimestamp() {
	b, err := os.ReadFile(filepath.Join(r.repo.MetadataDir(), "timestamp.json"))
	if err != nil {
		r.t.Fatalf("tuftest: %v", err)
	}
	r.timestamps[r.version(repository.RoleTimestamp)] = b
}

// SetExpires makes the next published version of role expire at t (in the
// past for freeze attacks). Publish applies it.
func (r *Repo) SetExpires(role string, t time.Time) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.repo.SetExpires(role, t); err != nil {
		r.t.Fatalf("tuftest: %v", err)
	}
}

// Keys returns role's current private keys.
func (r *Repo) Keys(role string) []*repository.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*repository.Key(nil), r.keys[role]...)
}

// RevokedKeys returns the keys role had before RotateKeys replaced them,
// oldest first: an attacker who stole one still holds it.
func (r *Repo) RevokedKeys(role string) []*repository.Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*repository.Key(nil), r.revoked[role]...)
}

// RotateKeys replaces role's keys by as many new ones (same threshold).
// The new root is signed by the old and new root keys, so devices walk
// the chain. Publish applies it.
func (r *Repo) RotateKeys(role string) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var fresh []*repository.Key
	for range r.keys[role] {
		fresh = append(fresh, r.newKey())
	}
	if err := r.repo.RotateKeys(role, fresh, 0); err != nil {
		r.t.Fatalf("tuftest: rotate %s: %v", role, err)
	}
	r.revoked[role] = append(r.revoked[role], r.keys[role]...)
	r.keys[role] = fresh
}

// SetThreshold sets role's threshold to n, adding keys as needed so that
// it has at least n. Publish applies it.
func (r *Repo) SetThreshold(role string, n int) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.keys[role]) < n {
		k := r.newKey()
		r.repo.AddKeys(k)
		if err := r.repo.AddKey(role, k.Public()); err != nil {
			r.t.Fatalf("tuftest: %v", err)
		}
		r.keys[role] = append(r.keys[role], k)
	}
	if err := r.repo.SetThreshold(role, n); err != nil {
		r.t.Fatalf("tuftest: %v", err)
	}
}

// MetadataFile returns the bytes of a file under metadata/ as published or
// forged (SetFile overrides aside), e.g. "2.snapshot.json" or
// "timestamp.json".
func (r *Repo) MetadataFile(name string) []byte {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.metadataFile(name)
}

func (r *Repo) metadataFile(name string) []byte {
	r.t.Helper()
	if b, ok := r.forgedFiles["/metadata/"+name]; ok {
		return bytes.Clone(b)
	}
	b, err := os.ReadFile(filepath.Join(r.dir, "metadata", filepath.FromSlash(name)))
	if err != nil {
		r.t.Fatalf("tuftest: %v", err)
	}
	return b
}

// SetFile serves data at urlPath ("metadata/3.targets.json",
// "targets/rootfs/<sha256>.img") instead of the published file, until
// ClearOverrides. For mix-and-match, root rollback and tampering.
func (r *Repo) SetFile(urlPath string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.overrides["/"+strings.TrimPrefix(urlPath, "/")] = bytes.Clone(data)
}

// SetTargetBytes serves data instead of target path's published bytes
// (arbitrary software attack), until ClearOverrides.
func (r *Repo) SetTargetBytes(path string, data []byte) {
	r.SetFile("targets/"+r.Target(path).File, data)
}

// ServeTimestampVersion serves the timestamp.json published as version v
// instead of the current one (timestamp rollback / freeze), until
// ClearOverrides.
func (r *Repo) ServeTimestampVersion(v int64) {
	r.t.Helper()
	r.mu.Lock()
	b, ok := r.timestamps[v]
	r.mu.Unlock()
	if !ok {
		r.t.Fatalf("tuftest: no timestamp version %d was published", v)
	}
	r.SetFile("metadata/timestamp.json", b)
}

// ClearOverrides stops every SetFile, SetTargetBytes and
// ServeTimestampVersion override.
func (r *Repo) ClearOverrides() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.overrides = map[string][]byte{}
}

// Wrap adds middleware around the file server (the last added is
// outermost), to inject faults: stalls, endless or oversized bodies,
// errors. It stays for the rest of the test.
func (r *Repo) Wrap(mw func(http.Handler) http.Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wraps = append(r.wraps, mw)
}

// Requests returns how many requests reached urlPath
// ("metadata/timestamp.json"); an empty urlPath counts every request.
func (r *Repo) Requests(urlPath string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if urlPath == "" {
		n := 0
		for _, c := range r.counts {
			n += c
		}
		return n
	}
	return r.counts["/"+strings.TrimPrefix(urlPath, "/")]
}

// ResetRequests zeroes the request counters.
func (r *Repo) ResetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = map[string]int{}
}

// Mirror copies the repository as it is now to a second server and
// returns it: publishing later changes only the first one, so the mirror
// becomes stale (malicious mirror attack). Its URLs follow the same
// layout: mirror.URL + "/metadata/".
func (r *Repo) Mirror() *httptest.Server {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	dst := r.t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(r.dir)); err != nil {
		r.t.Fatalf("tuftest: mirror: %v", err)
	}
	for p, b := range r.forgedFiles {
		if err := os.WriteFile(filepath.Join(dst, filepath.FromSlash(p)), b, 0o644); err != nil {
			r.t.Fatalf("tuftest: mirror: %v", err)
		}
	}
	fsrv := http.FileServer(http.Dir(dst))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !strings.HasPrefix(req.URL.Path, "/metadata/") && !strings.HasPrefix(req.URL.Path, "/targets/") {
			http.NotFound(w, req)
			return
		}
		fsrv.ServeHTTP(w, req)
	}))
	r.t.Cleanup(srv.Close)
	return srv
}

// Forge publishes a new version of role that the repository would never
// sign: the published metadata of role, with a version above every version
// served so far, changed by edit (which gets *metadata.RootType,
// *metadata.TargetsType, *metadata.SnapshotType or *metadata.TimestampType;
// nil changes nothing) and signed by keys only (none: unsigned). For
// targets and snapshot, a new snapshot and timestamp referencing the forgery
// are published too, validly signed, so that the forgery is what a device
// must catch. A forged root is published as the next N.root.json. The
// next Publish supersedes all of it. It returns the forged version.
func (r *Repo) Forge(role string, edit func(signed any), keys ...*repository.Key) int64 {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forge(role, edit, keys)
}

// SignWith publishes a new version of role, otherwise unchanged, signed
// only by keys (a revoked key, fewer keys than the threshold). See Forge.
func (r *Repo) SignWith(role string, keys ...*repository.Key) int64 {
	r.t.Helper()
	return r.Forge(role, nil, keys...)
}

// RollbackTargets publishes a validly signed new snapshot (and timestamp)
// that lists targets version v, older than the current one.
func (r *Repo) RollbackTargets(v int64) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forge(repository.RoleSnapshot, func(s any) {
		s.(*metadata.SnapshotType).Meta["targets.json"] = metadata.MetaFile(v)
	}, r.keys[repository.RoleSnapshot])
}

// RollbackSnapshot publishes a validly signed new timestamp that points to
// the snapshot published as version v, older than the current one.
func (r *Repo) RollbackSnapshot(v int64) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	mf := r.metaFile(fmt.Sprintf("%d.snapshot.json", v), v)
	r.forge(repository.RoleTimestamp, func(s any) {
		s.(*metadata.TimestampType).Meta["snapshot.json"] = mf
	}, r.keys[repository.RoleTimestamp])
}

func (r *Repo) metaFile(name string, v int64) *metadata.MetaFiles {
	b := r.metadataFile(name)
	sum := sha256.Sum256(b)
	mf := metadata.MetaFile(v)
	mf.Length = int64(len(b))
	mf.Hashes = metadata.Hashes{"sha256": sum[:]}
	return mf
}

func (r *Repo) nextForged(role string) int64 {
	v := max(r.version(role), r.forged[role]) + 1
	r.forged[role] = v
	return v
}

func (r *Repo) forge(role string, edit func(any), keys []*repository.Key) int64 {
	r.t.Helper()
	name := "timestamp.json"
	if role != repository.RoleTimestamp {
		name = fmt.Sprintf("%d.%s.json", r.version(role), role)
	}
	cur := r.metadataFile(name)
	v := r.nextForged(role)
	out := forgeBytes(r.t, role, cur, v, edit, keys)
	outName := "timestamp.json"
	if role != repository.RoleTimestamp {
		outName = fmt.Sprintf("%d.%s.json", v, role)
	}
	r.writeMetadata(outName, out)
	switch role {
	case repository.RoleTargets:
		r.forgeChain(repository.RoleSnapshot, func(s any) {
			s.(*metadata.SnapshotType).Meta["targets.json"] = metadata.MetaFile(v)
		})
	case repository.RoleSnapshot:
		r.forgeChain(repository.RoleTimestamp, func(s any) {
			mf := metadata.MetaFile(v)
			sum := sha256.Sum256(out)
			mf.Length = int64(len(out))
			mf.Hashes = metadata.Hashes{"sha256": sum[:]}
			s.(*metadata.TimestampType).Meta["snapshot.json"] = mf
		})
	}
	return v
}

// forgeChain forges the next snapshot or timestamp, validly signed, and
// continues the chain up to the timestamp.
func (r *Repo) forgeChain(role string, edit func(any)) {
	r.forge(role, edit, r.keys[role])
}

func (r *Repo) writeMetadata(name string, data []byte) {
	r.forgedFiles["/metadata/"+name] = data
	// A forged file replaces any override of the same path.
	delete(r.overrides, "/metadata/"+name)
}

// forgeBytes re-signs metadata bytes as version v, edited, with keys only.
func forgeBytes(t testing.TB, role string, data []byte, v int64, edit func(any), keys []*repository.Key) []byte {
	t.Helper()
	var out []byte
	var err error
	switch role {
	case repository.RoleRoot:
		out, err = forgeTyped(&metadata.Metadata[metadata.RootType]{}, data, v, edit, keys, func(m *metadata.Metadata[metadata.RootType]) (*int64, any) { return &m.Signed.Version, &m.Signed })
	case repository.RoleTargets:
		out, err = forgeTyped(&metadata.Metadata[metadata.TargetsType]{}, data, v, edit, keys, func(m *metadata.Metadata[metadata.TargetsType]) (*int64, any) { return &m.Signed.Version, &m.Signed })
	case repository.RoleSnapshot:
		out, err = forgeTyped(&metadata.Metadata[metadata.SnapshotType]{}, data, v, edit, keys, func(m *metadata.Metadata[metadata.SnapshotType]) (*int64, any) { return &m.Signed.Version, &m.Signed })
	case repository.RoleTimestamp:
		out, err = forgeTyped(&metadata.Metadata[metadata.TimestampType]{}, data, v, edit, keys, func(m *metadata.Metadata[metadata.TimestampType]) (*int64, any) { return &m.Signed.Version, &m.Signed })
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		t.Fatalf("tuftest: forge %s: %v", role, err)
	}
	return out
}

func forgeTyped[T metadata.Roles](zero *metadata.Metadata[T], data []byte, v int64, edit func(any), keys []*repository.Key, fields func(*metadata.Metadata[T]) (*int64, any)) ([]byte, error) {
	m, err := zero.FromBytes(data)
	if err != nil {
		return nil, err
	}
	ver, signed := fields(m)
	*ver = v
	if edit != nil {
		edit(signed)
	}
	m.ClearSignatures()
	for _, k := range keys {
		if _, err := m.Sign(k.Signer()); err != nil {
			return nil, err
		}
	}
	return m.ToBytes(true)
}

// Image returns a release image of n bytes for tests: "image " and
// version, then pseudo-random (incompressible) bytes; the same arguments
// always give the same bytes.
func Image(version string, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(len(version)), uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "image "+version)
	return b
}

// SHA256 returns the hex sha256 of data, as target metadata lists it.
func SHA256(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
