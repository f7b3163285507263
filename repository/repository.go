package repository

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Errors callers branch on.
var (
	// ErrThreshold means a role has fewer valid signatures than its
	// threshold: the role is staged and waits for more signatures.
	ErrThreshold = errors.New("repository: signature threshold not met")
	// ErrNotFound means a target, staged role or repository is missing.
	ErrNotFound = errors.New("repository: not found")
	// ErrExists means Init found a repository already there.
	ErrExists = errors.New("repository: already exists")
	// ErrBadTarget means a target path, file or custom metadata is refused.
	ErrBadTarget = errors.New("repository: bad target")
	// ErrConflict means another process published to the repository since
	// it was opened: open it again and redo the change.
	ErrConflict = errors.New("repository: changed by another process")
)

// Default expiry periods: short for the online roles a cron job refreshes,
// long for the offline root.
var DefaultExpiry = map[string]time.Duration{
	RoleRoot:      365 * 24 * time.Hour,
	RoleTargets:   90 * 24 * time.Hour,
	RoleSnapshot:  7 * 24 * time.Hour,
	RoleTimestamp: 24 * time.Hour,
}

// The directories of a repository that a static server publishes as is:
// devices' MetadataURL and TargetsURL point at them.
const (
	MetadataPath = "metadata"
	TargetsPath  = "targets"
)

const (
	stagedDir    = "staged"
	settingsFile = "repository.json"
)

// Config says where a repository lives and what it may sign with.
type Config struct {
	// Dir is the repository directory. Required.
	Dir string
	// Keys are the private keys available on this machine. Each role is
	// signed with every one of them its root entry lists.
	Keys []*Key
	// Now is the clock for expiry dates; nil means time.Now.
	Now func() time.Time
	// Logger receives one line per published file; nil discards.
	Logger *slog.Logger
}

// RoleOptions configures one role at Init.
type RoleOptions struct {
	// Threshold is the number of signatures the role needs; 0 means 1.
	Threshold int
	// Keys is the number of keys to generate for the role; 0 means
	// Threshold. Ignored when InitOptions.Keys has keys for the role.
	Keys int
	// Expiry is how long each new version of the role is valid; 0 means
	// DefaultExpiry.
	Expiry time.Duration
}

// InitOptions configures a new repository.
type InitOptions struct {
	// KeyType of generated keys; "" means Ed25519.
	KeyType KeyType
	// Roles holds per-role options; missing roles get the defaults.
	Roles map[string]RoleOptions
	// Keys supplies existing keys per role instead of generating them.
	Keys map[string][]*Key
	// KeysDir receives every generated private key as a 0600 PEM file
	// named by KeyFileName. Required when keys are generated, so that no
	// key exists only in memory.
	KeysDir string
	// RootKeysDir, when set, receives the root keys instead of KeysDir:
	// a removable medium, so that the root keys are never on the release
	// machine's disk.
	RootKeysDir string
}

type settings struct {
	Format int               `json:"format"`
	Expiry map[string]string `json:"expiry"`
}

// Repo is an open repository: the published metadata and the working copy
// changes go to until Publish. Not safe for concurrent use.
type Repo struct {
	dir    string
	keys   map[string]*Key
	now    func() time.Time
	log    *slog.Logger
	expiry map[string]time.Duration

	pub   map[string]meta // latest published version of each role, nil before the first Publish
	work  map[string]meta // working copy
	dirty map[string]bool // work has a new version not yet published
}

func newRepo(cfg Config) (*Repo, error) {
	if cfg.Dir == "" {
		return nil, errors.New("repository: Config.Dir is empty")
	}
	r := &Repo{
		dir:    cfg.Dir,
		keys:   map[string]*Key{},
		now:    cfg.Now,
		log:    cfg.Logger,
		expiry: map[string]time.Duration{},
		pub:    map[string]meta{},
		work:   map[string]meta{},
		dirty:  map[string]bool{},
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for k, v := range DefaultExpiry {
		r.expiry[k] = v
	}
	r.AddKeys(cfg.Keys...)
	return r, nil
}

// AddKeys makes more private keys available for signing.
func (r *Repo) AddKeys(keys ...*Key) {
	for _, k := range keys {
		r.keys[k.ID()] = k
	}
}

// Dir returns the repository directory.
func (r *Repo) Dir() string { return r.dir }

// MetadataDir returns the directory to serve as the TUF metadata URL.
func (r *Repo) MetadataDir() string { return filepath.Join(r.dir, MetadataPath) }

// TargetsDir returns the directory to serve as the TUF targets URL.
func (r *Repo) TargetsDir() string { return filepath.Join(r.dir, TargetsPath) }

// Init creates a repository in cfg.Dir with keys for the four roles and
// publishes version 1 of each. The directory may exist but must not hold a
// repository.
func Init(ctx context.Context, cfg Config, opts InitOptions) (*Repo, error) {
	r, err := newRepo(cfg)
	if err != nil {
		return nil, err
	}
	if err := r.checkInit(opts); err != nil {
		return nil, err
	}
	root := metadata.Root()
	root.Signed.ConsistentSnapshot = true
	for _, role := range Roles {
		if err := r.initRole(root, role, opts); err != nil {
			return nil, err
		}
	}
	now := r.now()
	root.Signed.Expires = r.expires(RoleRoot, now)
	targets := metadata.Targets(r.expires(RoleTargets, now))
	snapshot := metadata.Snapshot(r.expires(RoleSnapshot, now))
	timestamp := metadata.Timestamp(r.expires(RoleTimestamp, now))
	r.work = map[string]meta{RoleRoot: root, RoleTargets: targets, RoleSnapshot: snapshot, RoleTimestamp: timestamp}
	for _, role := range Roles {
		r.dirty[role] = true
	}
	for _, d := range []string{MetadataPath, TargetsPath} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("repository: %w", err)
		}
	}
	if err := r.saveSettings(); err != nil {
		return nil, err
	}
	if err := r.Publish(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// checkInit refuses to initialise a directory that holds a repository, and
// options naming unknown roles.
func (r *Repo) checkInit(opts InitOptions) error {
	for _, p := range []string{settingsFile, MetadataPath} {
		if _, err := os.Stat(filepath.Join(r.dir, p)); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, filepath.Join(r.dir, p))
		}
	}
	for role := range opts.Roles {
		if err := validRole(role); err != nil {
			return err
		}
	}
	for role := range opts.Keys {
		if err := validRole(role); err != nil {
			return err
		}
	}
	return nil
}

// initRole sets up one top-level role for Init: its expiry, its keys
// (given or generated) and its threshold in root.
func (r *Repo) initRole(root *metadata.Metadata[metadata.RootType], role string, opts InitOptions) error {
	o := opts.Roles[role]
	if o.Threshold < 0 || o.Keys < 0 || o.Expiry < 0 {
		return fmt.Errorf("repository: %s: negative threshold, key count or expiry", role)
	}
	if o.Threshold == 0 {
		o.Threshold = 1
	}
	if o.Expiry != 0 {
		r.expiry[role] = o.Expiry
	}
	keys := opts.Keys[role]
	if len(keys) == 0 {
		var err error
		if keys, err = generateRoleKeys(role, o, opts); err != nil {
			return err
		}
	}
	if len(keys) < o.Threshold {
		return fmt.Errorf("repository: %s: threshold %d with only %d keys", role, o.Threshold, len(keys))
	}
	for _, k := range keys {
		if err := root.Signed.AddKey(k.Public(), role); err != nil {
			return fmt.Errorf("repository: %w", err)
		}
	}
	root.Signed.Roles[role].Threshold = o.Threshold
	r.AddKeys(keys...)
	return nil
}

// generateRoleKeys generates o.Keys keys for role (o.Threshold when 0)
// and writes them to the keys directory of opts.
func generateRoleKeys(role string, o RoleOptions, opts InitOptions) ([]*Key, error) {
	n := o.Keys
	if n == 0 {
		n = o.Threshold
	}
	kdir := opts.KeysDir
	if role == RoleRoot && opts.RootKeysDir != "" {
		kdir = opts.RootKeysDir
	}
	if kdir == "" {
		return nil, errors.New("repository: InitOptions.KeysDir is empty, generated keys would be lost")
	}
	var keys []*Key
	for range n {
		k, err := GenerateKey(opts.KeyType)
		if err != nil {
			return nil, err
		}
		if err := k.WriteFile(filepath.Join(kdir, KeyFileName(role, k))); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (r *Repo) expires(role string, now time.Time) time.Time {
	d, ok := r.expiry[role]
	if !ok {
		d = r.expiry[RoleTargets] // delegated roles
	}
	return now.UTC().Add(d).Truncate(time.Second)
}

func (r *Repo) saveSettings() error {
	s := settings{Format: 1, Expiry: map[string]string{}}
	for role, d := range r.expiry {
		s.Expiry[role] = d.String()
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	return writeFileDurable(filepath.Join(r.dir, settingsFile), append(b, '\n'), 0o644)
}

func (r *Repo) loadSettings() error {
	b, err := os.ReadFile(filepath.Join(r.dir, settingsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: no repository in %s (no %s)", ErrNotFound, r.dir, settingsFile)
	}
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	var s settings
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("repository: %s: %w", settingsFile, err)
	}
	if s.Format != 1 {
		return fmt.Errorf("repository: %s: unknown format %d", settingsFile, s.Format)
	}
	for role, v := range s.Expiry {
		if err := validRole(role); err != nil {
			return fmt.Errorf("repository: %s: %w", settingsFile, err)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("repository: %s: bad expiry %q for %s", settingsFile, v, role)
		}
		r.expiry[role] = d
	}
	return nil
}

// Open loads the repository in cfg.Dir: the newest published version of
// each role and any staged changes.
func Open(cfg Config) (*Repo, error) {
	r, err := newRepo(cfg)
	if err != nil {
		return nil, err
	}
	if err := r.loadSettings(); err != nil {
		return nil, err
	}
	mdir := r.MetadataDir()
	for _, role := range Roles {
		name := "timestamp.json"
		if role != RoleTimestamp {
			v, err := highestVersion(mdir, role)
			if err != nil {
				return nil, err
			}
			if v == 0 {
				return nil, fmt.Errorf("%w: no %s metadata in %s", ErrNotFound, role, mdir)
			}
			name = fmt.Sprintf("%d.%s.json", v, role)
		}
		b, err := os.ReadFile(filepath.Join(mdir, name))
		if err != nil {
			return nil, fmt.Errorf("repository: %w", err)
		}
		m, err := parse(role, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r.pub[role] = m
		r.work[role] = clone(role, m)
	}
	for _, role := range Roles {
		if err := r.loadStaged(role); err != nil {
			return nil, err
		}
	}
	if err := r.loadDelegated(); err != nil {
		return nil, err
	}
	return r, nil
}

// loadStaged loads the staged change of role, if any.
func (r *Repo) loadStaged(role string) error {
	b, err := os.ReadFile(r.stagedPath(role))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	m, err := parse(role, b)
	if err != nil {
		return fmt.Errorf("staged %s: %w", role, err)
	}
	if pub := r.pub[role]; pub != nil && versionOf(m) <= versionOf(pub) {
		same, err := sameSigned(m, pub)
		if err != nil {
			return err
		}
		if !same {
			return fmt.Errorf("%w: staged %s v%d was made against an older repository (published v%d); "+
				"remove %s and redo the change", ErrConflict, role, versionOf(m), versionOf(pub), r.stagedPath(role))
		}
		// Left behind by a publish that wrote it but stopped before
		// tidying up: the published copy is the same.
		r.log.Warn("dropping staged metadata already published", "role", role, "version", versionOf(m))
		if err := os.Remove(r.stagedPath(role)); err != nil {
			return fmt.Errorf("repository: %w", err)
		}
		return nil
	}
	r.work[role] = m
	r.dirty[role] = true
	return nil
}

// highestVersion finds the largest N of N.<role>.json in dir (0 if none).
func highestVersion(dir, role string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("repository: %w", err)
	}
	var max int64
	suffix := "." + role + ".json"
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v < 1 {
			continue
		}
		max = maxInt(max, v)
	}
	return max, nil
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func (r *Repo) stagedPath(role string) string {
	return filepath.Join(r.dir, stagedDir, role+".json")
}

func (r *Repo) root() *metadata.Metadata[metadata.RootType] {
	return r.work[RoleRoot].(*metadata.Metadata[metadata.RootType])
}

func (r *Repo) pubRoot() *metadata.Metadata[metadata.RootType] {
	m, _ := r.pub[RoleRoot].(*metadata.Metadata[metadata.RootType])
	return m
}

func (r *Repo) targets() *metadata.Metadata[metadata.TargetsType] {
	return r.work[RoleTargets].(*metadata.Metadata[metadata.TargetsType])
}

func (r *Repo) snapshot() *metadata.Metadata[metadata.SnapshotType] {
	return r.work[RoleSnapshot].(*metadata.Metadata[metadata.SnapshotType])
}

func (r *Repo) timestamp() *metadata.Metadata[metadata.TimestampType] {
	return r.work[RoleTimestamp].(*metadata.Metadata[metadata.TimestampType])
}

// touch starts a new version of role, or keeps the pending one, and drops
// its signatures: its content is about to change.
func (r *Repo) touch(role string) {
	v, exp, sigs, _ := common(r.work[role])
	if !r.dirty[role] {
		*v++
		*exp = r.expires(role, r.now())
		r.dirty[role] = true
	}
	*sigs = []metadata.Signature{}
}

// stage writes the working copy of role to staged/, so a pending change
// survives the process.
func (r *Repo) stage(role string) error {
	b, err := toBytes(r.work[role])
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(r.dir, stagedDir), 0o700); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	return writeFileDurable(r.stagedPath(role), b, 0o600)
}

func (r *Repo) stageDirty() error {
	for _, role := range r.allRoles() {
		if r.dirty[role] {
			if err := r.stage(role); err != nil {
				return err
			}
		}
	}
	return nil
}

// authorized returns the key ids allowed to sign role: for root, those of
// the published root and of the new one.
func (r *Repo) authorized(role string) map[string]bool {
	if !slices.Contains(Roles, role) {
		return r.authorizedDelegated(role)
	}
	ids := map[string]bool{}
	for _, id := range r.root().Signed.Roles[role].KeyIDs {
		ids[id] = true
	}
	if pr := r.pubRoot(); role == RoleRoot && pr != nil {
		for _, id := range pr.Signed.Roles[RoleRoot].KeyIDs {
			ids[id] = true
		}
	}
	return ids
}

// signAvailable adds a signature of every available authorised key that
// has not signed yet.
func (r *Repo) signAvailable(role string) error {
	ids := r.authorized(role)
	var sorted []string
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Strings(sorted)
	for _, id := range sorted {
		k, ok := r.keys[id]
		if !ok || hasSig(r.work[role], id) {
			continue
		}
		if err := signWith(r.work[role], k); err != nil {
			return err
		}
	}
	return nil
}

// checkSigned reports whether the working copy of role meets its
// threshold(s).
func (r *Repo) checkSigned(role string) error {
	if !slices.Contains(Roles, role) {
		return r.checkDelegated(role)
	}
	m := r.work[role]
	if role == RoleRoot {
		// A new root must satisfy the root it replaces and itself, so a
		// device holding the old one can walk to it.
		if pr := r.pubRoot(); pr != nil && versionOf(pr) != versionOf(m) {
			if err := verifyRole(pr, RoleRoot, m); err != nil {
				return fmt.Errorf("by the keys of root v%d: %w", versionOf(pr), err)
			}
		}
	}
	return verifyRole(r.root(), role, m)
}

// Publish signs every changed role with the available keys and writes new
// versions of root and targets (when changed), then snapshot and
// timestamp. If a role cannot be signed to its threshold, nothing is
// published: the changed roles are staged and the error wraps
// ErrThreshold. Publishing with nothing changed does nothing.
func (r *Repo) Publish(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	unlock, err := lockDir(r.dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.checkUnchanged(); err != nil {
		return err
	}
	if err := r.signChangedTargets(); err != nil {
		return err
	}
	snapBytes, err := r.signSnapshot()
	if err != nil {
		return err
	}
	if err := r.signTimestamp(snapBytes); err != nil {
		return err
	}
	if err := r.writeChanged(snapBytes); err != nil {
		return err
	}
	return r.markPublished()
}

// signChangedTargets signs root, targets and the delegated roles that
// changed; if any falls short of its threshold, they are staged and the
// error wraps ErrThreshold.
func (r *Repo) signChangedTargets() error {
	var errs []error
	for _, role := range append([]string{RoleRoot, RoleTargets}, r.delegatedNames()...) {
		if !r.dirty[role] {
			continue
		}
		if err := r.signAvailable(role); err != nil {
			return err
		}
		if err := r.checkSigned(role); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return r.stageFail(errs)
	}
	return nil
}

// signIfChanged signs role when it changed, staging it if it falls short
// of its threshold.
func (r *Repo) signIfChanged(role string) error {
	if !r.dirty[role] {
		return nil
	}
	if err := r.signAvailable(role); err != nil {
		return err
	}
	if err := r.checkSigned(role); err != nil {
		return r.stageFail([]error{err})
	}
	return nil
}

// signSnapshot updates and signs snapshot when the versions it lists
// changed, and returns its bytes: the new ones, or the published ones.
func (r *Repo) signSnapshot() ([]byte, error) {
	// Snapshot lists the targets version; consistent snapshots make the
	// hashes unnecessary, as the version is in the file name.
	snap := r.snapshot()
	if want := r.snapshotMeta(); !sameVersions(snap.Signed.Meta, want) {
		r.touch(RoleSnapshot)
		snap.Signed.Meta = want
	}
	if err := r.signIfChanged(RoleSnapshot); err != nil {
		return nil, err
	}
	if r.dirty[RoleSnapshot] {
		return toBytes(snap)
	}
	b, err := os.ReadFile(filepath.Join(r.MetadataDir(), fmt.Sprintf("%d.snapshot.json", versionOf(snap))))
	if err != nil {
		return nil, fmt.Errorf("repository: published snapshot: %w", err)
	}
	return b, nil
}

// signTimestamp updates and signs timestamp when the snapshot it pins
// changed.
func (r *Repo) signTimestamp(snapBytes []byte) error {
	// Timestamp pins the snapshot's length and hash too, so a snapshot
	// swapped on the server is caught before it is parsed.
	ts := r.timestamp()
	want := metadata.MetaFile(versionOf(r.snapshot()))
	want.Length = int64(len(snapBytes))
	want.Hashes = metadata.Hashes{"sha256": sha256Sum(snapBytes)}
	if cur := ts.Signed.Meta["snapshot.json"]; cur == nil || !sameMetaFile(cur, want) {
		r.touch(RoleTimestamp)
		ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": want}
	}
	return r.signIfChanged(RoleTimestamp)
}

// writeChanged writes the metadata files of the changed roles, the files a
// device reads last, last.
func (r *Repo) writeChanged(snapBytes []byte) error {
	for _, role := range append(r.delegatedNames(), RoleTargets, RoleSnapshot, RoleRoot, RoleTimestamp) {
		if !r.dirty[role] {
			continue
		}
		b, err := toBytes(r.work[role])
		if err != nil {
			return err
		}
		if role == RoleSnapshot {
			b = snapBytes
		}
		names := []string{fmt.Sprintf("%d.%s.json", versionOf(r.work[role]), role)}
		switch role {
		case RoleTimestamp:
			names = []string{"timestamp.json"}
		case RoleRoot:
			names = append(names, "root.json")
		}
		for _, n := range names {
			if err := writeFileDurable(filepath.Join(r.MetadataDir(), n), b, 0o644); err != nil {
				return err
			}
			r.log.Info("published", "file", n)
		}
	}
	return nil
}

// markPublished records the changed roles as published and removes their
// staged copies.
func (r *Repo) markPublished() error {
	for _, role := range r.allRoles() {
		if !r.dirty[role] {
			continue
		}
		r.pub[role] = clone(role, r.work[role])
		r.dirty[role] = false
		if err := os.Remove(r.stagedPath(role)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("repository: %w", err)
		}
	}
	return nil
}

// checkUnchanged makes sure the published files are still the ones this
// Repo loaded or wrote, so that two processes (a cron refresh and a release
// engineer) never publish the same version twice.
func (r *Repo) checkUnchanged() error {
	if len(r.pub) == 0 {
		return nil // Init: nothing published yet
	}
	for _, role := range []string{RoleRoot, RoleTargets, RoleSnapshot} {
		v, err := highestVersion(r.MetadataDir(), role)
		if err != nil {
			return err
		}
		if want := versionOf(r.pub[role]); v != want {
			return fmt.Errorf("%w: %s is at version %d on disk, %d when opened", ErrConflict, role, v, want)
		}
	}
	b, err := os.ReadFile(filepath.Join(r.MetadataDir(), "timestamp.json"))
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	ts, err := parse(RoleTimestamp, b)
	if err != nil {
		return err
	}
	if v, want := versionOf(ts), versionOf(r.pub[RoleTimestamp]); v != want {
		return fmt.Errorf("%w: timestamp is at version %d on disk, %d when opened", ErrConflict, v, want)
	}
	return nil
}

func (r *Repo) stageFail(errs []error) error {
	if err := r.stageDirty(); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w (staged in %s: export, sign and merge the missing signatures)",
		ErrThreshold, errors.Join(errs...), filepath.Join(r.dir, stagedDir))
}

// snapshotMeta is what the snapshot lists: the version of every targets
// role (consistent snapshots make hashes unnecessary).
func (r *Repo) snapshotMeta() map[string]*metadata.MetaFiles {
	m := map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(versionOf(r.work[RoleTargets]))}
	for _, name := range r.delegatedNames() {
		m[name+".json"] = metadata.MetaFile(versionOf(r.work[name]))
	}
	return m
}

func sameVersions(a, b map[string]*metadata.MetaFiles) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w := b[k]; w == nil || w.Version != v.Version {
			return false
		}
	}
	return true
}

func sha256Sum(b []byte) metadata.HexBytes {
	h := sha256.Sum256(b)
	return h[:]
}

func sameMetaFile(a, b *metadata.MetaFiles) bool {
	return a.Version == b.Version && a.Length == b.Length && a.Hashes.Equal(b.Hashes)
}
