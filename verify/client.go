package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/switchback-ota/switchback/internal/durable"
)

// Config configures a [Client]. Root, MetadataURL and Dir are required; the
// zero value of every other field is a sensible default.
type Config struct {
	// Root is the trusted root.json the application embeds. It is the
	// anchor of trust when no newer root is stored in Dir.
	Root []byte
	// MetadataURL is the base URL of the TUF metadata
	// (".../timestamp.json", ".../1.root.json").
	MetadataURL string
	// TargetsURL is the base URL of the target files, used to build
	// [Target].URL. Empty means MetadataURL + "/targets", go-tuf's default.
	TargetsURL string
	// Dir holds the trusted metadata between runs, and in Dir/roots every
	// root version walked. It is created with mode 0700 and belongs to the
	// Client: unparsable files in it are renamed aside (".corrupt"), stray
	// temporary files removed.
	Dir string
	// Fetcher returns the metadata fetcher for one refresh, bound to ctx.
	// Nil means [NewHTTPFetcher](ctx, nil): net/http with a private client.
	Fetcher func(ctx context.Context) Fetcher
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MinTime is a time the clock is known to be past once set, such as the
	// build time. While Now() is before it, Refresh returns [ErrClockUnset]
	// rather than judge expiry with a clock stuck in 1970.
	MinTime time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger

	// MaxRootRotations bounds the root versions walked in one refresh;
	// 0 means go-tuf's default (256).
	MaxRootRotations int64

	// Prefixes, when set, limits [Client.Refresh] to the targets whose
	// paths start with one of them, so that only the delegated roles that
	// may hold such paths are fetched (see the package doc,
	// "Delegations"): for example "rootfs/board-a/". Empty lists every
	// target.
	Prefixes []string
	// MaxDelegations bounds the roles one target search visits, the
	// top-level targets role included (TUF 5.6.7.2); 0 means
	// [DefaultMaxDelegations].
	MaxDelegations int
	// MaxListedRoles bounds the roles one [Trusted.Targets] listing
	// loads; 0 means [DefaultMaxListedRoles].
	MaxListedRoles int

	// FullRefreshInterval, when positive, turns on a cheaper mode that is
	// NOT the TUF workflow: with a [ConditionalFetcher], timestamp.json is
	// asked for first, and while it is unchanged the walk of the root
	// chain is skipped for up to this long after the last refresh that
	// walked it, so an idle check is one request. A root published
	// without a new timestamp is then seen late. Zero or negative (the
	// default) is the TUF workflow: every refresh looks for a new root
	// first, then asks for timestamp.json (conditionally: two requests and
	// no body when nothing changed).
	FullRefreshInterval time.Duration
}

// Rejected is a target the repository signed that may not be used, or a
// delegated role whose metadata could not be trusted (then Path is empty
// and Role names it).
type Rejected struct {
	// Path is the TUF target path.
	Path string
	// Role is the delegated role involved, "" for the top-level targets role.
	Role string
	// Err says why, wrapping [ErrBadCustom] for bad custom metadata.
	Err error
}

// Targets is the result of a successful refresh.
type Targets struct {
	// Targets are the trusted targets with valid custom metadata, sorted by path.
	Targets []Target
	// Rejected lists signed targets that are unusable and why, sorted by path.
	Rejected []Rejected
	// ConsistentSnapshot reports whether the repository uses consistent
	// snapshots (and hash-prefixed target file names).
	ConsistentSnapshot bool
	// Expires is the earliest expiry among the trusted roles: after it a
	// refresh is needed before anything is installed.
	Expires time.Time
	// RootVersion, TimestampVersion, SnapshotVersion and TargetsVersion are
	// the versions of the trusted top-level metadata.
	RootVersion, TimestampVersion, SnapshotVersion, TargetsVersion int64
}

// Client is a TUF client for switchback repositories. It handles metadata
// only: target bytes are streamed by the caller through a [Verifier].
// Methods are safe for concurrent use; refreshes are serialised.
type Client struct {
	cfg        Config
	log        *slog.Logger
	targetsURL string

	mu          sync.Mutex
	rotated     bool   // the last refresh walked to a root with new timestamp or snapshot keys
	root        []byte // the newest root trusted by this process
	rootVersion int64
}

// New checks cfg and returns a Client. The embedded root must be a root
// metadata file signed by its own threshold of keys. New does no I/O.
func New(cfg Config) (*Client, error) {
	if len(cfg.Root) == 0 {
		return nil, errors.New("verify: Config.Root is empty")
	}
	root, err := parseRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("verify: Config.Root: %w", err)
	}
	if cfg.MetadataURL == "" {
		return nil, errors.New("verify: Config.MetadataURL is empty")
	}
	if _, err := url.Parse(cfg.MetadataURL); err != nil {
		return nil, fmt.Errorf("verify: Config.MetadataURL: %w", err)
	}
	targetsURL := cfg.TargetsURL
	if targetsURL == "" {
		if targetsURL, err = url.JoinPath(cfg.MetadataURL, "targets"); err != nil {
			return nil, fmt.Errorf("verify: Config.MetadataURL: %w", err)
		}
	} else if _, err := url.Parse(targetsURL); err != nil {
		return nil, fmt.Errorf("verify: Config.TargetsURL: %w", err)
	}
	if cfg.Dir == "" {
		return nil, errors.New("verify: Config.Dir is empty")
	}
	if cfg.MaxRootRotations < 0 {
		return nil, fmt.Errorf("verify: Config.MaxRootRotations %d is negative", cfg.MaxRootRotations)
	}
	if cfg.MaxDelegations < 0 || cfg.MaxListedRoles < 0 {
		return nil, fmt.Errorf("verify: Config.MaxDelegations %d or MaxListedRoles %d is negative", cfg.MaxDelegations, cfg.MaxListedRoles)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		cfg:         cfg,
		log:         log,
		targetsURL:  targetsURL,
		root:        slices.Clone(cfg.Root),
		rootVersion: root.Signed.Version,
	}, nil
}

func (c *Client) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

// parseRoot decodes root metadata and checks it is signed by a threshold of
// its own root keys.
func parseRoot(b []byte) (*metadata.Metadata[metadata.RootType], error) {
	r, err := metadata.Root().FromBytes(b)
	if err != nil {
		return nil, err
	}
	if r.Signed.Type != metadata.ROOT {
		return nil, fmt.Errorf("type %q, want %q", r.Signed.Type, metadata.ROOT)
	}
	if err := r.VerifyDelegate(metadata.ROOT, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Refresh updates the trusted metadata ([Client.Update]) and lists the
// switchback targets of the repository ([Trusted.Targets]) under
// [Config].Prefixes, every one when there are none, delegated roles
// included.
//
// Errors wrap [ErrClockUnset] (clock before MinTime), [ErrFetch] (metadata
// unreachable) or [ErrUntrusted] (metadata refused, with go-tuf's error in
// the chain); local I/O errors are returned as they are.
func (c *Client) Refresh(ctx context.Context) (*Targets, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, err := c.update(ctx)
	if err != nil {
		return nil, err
	}
	return t.targets(ctx, t.f, c.cfg.Prefixes)
}

// Update runs the TUF client workflow for the top-level roles (TUF 5.3 to
// 5.5: a new root looked for first, then timestamp, snapshot and targets)
// with a fresh go-tuf updater whose reference time is Now() at the start
// of the call, then makes every file it wrote durable. Delegated roles are
// fetched later, only as the returned [Trusted] needs them.
//
// It starts from the newest root it trusts: the highest of the embedded
// Config.Root and the roots trusted earlier by this process, carried
// forward through the roots stored in Dir that chain from it. Trust never
// goes backwards, and it is rebuilt from the embedded root when Dir is
// lost or corrupt. Errors are as for [Client.Refresh].
func (c *Client) Update(ctx context.Context) (*Trusted, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.update(ctx)
}

func (c *Client) update(ctx context.Context) (*Trusted, error) {
	c.rotated = false
	ts, err := c.refreshOnce(ctx)
	if c.rotated && err != nil {
		// TUF 5.3.11: the new root rotated the timestamp or snapshot
		// keys. The trusted timestamp and snapshot may pin versions an
		// attacker fast-forwarded with the old keys, and this refresh
		// failed: drop them and refresh again. (After a refresh that
		// succeeded they were already checked against the new keys.)
		for _, name := range []string{"timestamp.json", "snapshot.json"} {
			if rerr := os.Remove(filepath.Join(c.cfg.Dir, name)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				c.log.Warn("cannot drop trusted metadata after a key rotation", "file", name, "err", rerr)
			}
		}
		_ = c.syncDir()
		c.log.Info("timestamp or snapshot keys rotated: refreshing again from a clean timestamp and snapshot")
		ts, err = c.refreshOnce(ctx)
	}
	return ts, err
}

// fetcher returns the Fetcher of one call, bound to ctx and held to the
// lengths go-tuf asks for.
func (c *Client) fetcher(ctx context.Context) Fetcher {
	var f Fetcher
	if c.cfg.Fetcher != nil {
		f = c.cfg.Fetcher(ctx)
	}
	if f == nil {
		f = NewHTTPFetcher(ctx, nil)
	}
	return f
}

// roleKeys returns the key ids and thresholds of the timestamp and snapshot
// roles of a root, as one comparable string.
func roleKeys(root *metadata.Metadata[metadata.RootType]) string {
	if root == nil {
		return ""
	}
	var b strings.Builder
	for _, name := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT} {
		r := root.Signed.Roles[name]
		if r == nil {
			continue
		}
		ids := slices.Clone(r.KeyIDs)
		slices.Sort(ids)
		fmt.Fprintf(&b, "%s:%d:%s;", name, r.Threshold, strings.Join(ids, ","))
	}
	return b.String()
}

// prepare checks the context and the clock, and readies Dir; it returns
// the reference time of the refresh.
func (c *Client) prepare(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	now := c.now()
	if now.Before(c.cfg.MinTime) {
		return time.Time{}, fmt.Errorf("%w: clock reads %s, before %s", ErrClockUnset,
			now.UTC().Format(time.RFC3339), c.cfg.MinTime.UTC().Format(time.RFC3339))
	}
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return time.Time{}, fmt.Errorf("verify: metadata dir: %w", err)
	}
	return now, c.tidyDir()
}

func (c *Client) refreshOnce(ctx context.Context) (*Trusted, error) {
	now, err := c.prepare(ctx)
	if err != nil {
		return nil, err
	}
	root, err := c.startRoot()
	if err != nil {
		return nil, err
	}
	var startKeys string
	var startVersion int64
	if m, perr := metadata.Root().FromBytes(root); perr == nil {
		startKeys, startVersion = roleKeys(m), m.Signed.Version
	}

	ucfg, err := c.tufConfig(root)
	if err != nil {
		return nil, err
	}
	f := c.fetcher(ctx)
	idle := c.newIdleFetcher(f, startVersion)
	if err := idle.prefetch(ucfg.TimestampMaxLength); err != nil {
		idle.done(err, 0)
		return nil, c.refreshErr(ctx, err)
	}
	walked := &rootRecorder{f: limitFetcher{idle}}
	ucfg.Fetcher = walked

	up, err := updater.New(ucfg)
	if err != nil {
		return nil, c.refreshErr(ctx, err)
	}
	up.UnsafeSetRefTime(now.UTC())
	trusted, err := c.keepWalked(up.Refresh(), up, startKeys, walked)
	// go-tuf renames its files into place without fsync: make them durable
	// before anyone acts on them, whatever the outcome.
	if serr := c.syncDir(); serr != nil && err == nil {
		return nil, serr
	}
	if err == nil {
		err = ctx.Err()
	}
	var rootVersion int64
	if trusted.Root != nil {
		rootVersion = trusted.Root.Signed.Version
	}
	idle.done(err, rootVersion)
	if err != nil {
		return nil, c.refreshErr(ctx, err)
	}
	t := newTrusted(c, &trusted, limitFetcher{f}, ucfg.TargetsMaxLength)
	c.log.Info("tuf metadata refreshed", "root", t.RootVersion, "timestamp", t.TimestampVersion,
		"snapshot", t.SnapshotVersion, "targets", t.TargetsVersion, "expires", t.Expires)
	return t, nil
}

// tufConfig is go-tuf's configuration for a refresh that starts from the
// trusted root.
func (c *Client) tufConfig(root []byte) (*config.UpdaterConfig, error) {
	ucfg, err := config.New(c.cfg.MetadataURL, root)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	ucfg.LocalMetadataDir = c.cfg.Dir
	ucfg.LocalTargetsDir = c.cfg.Dir // required by go-tuf, never written: targets are not downloaded through it
	ucfg.RemoteTargetsURL = c.targetsURL
	if c.cfg.MaxRootRotations > 0 {
		ucfg.MaxRootRotations = c.cfg.MaxRootRotations
	}
	return ucfg, nil
}

// keepWalked keeps what go-tuf's refresh (which ended in err) learnt of
// the root, whatever its outcome: whether the root's keys rotated since
// startKeys, and the root chain it walked. It returns the metadata go-tuf
// trusts and the refresh's error, or else keepRoot's.
func (c *Client) keepWalked(err error, up *updater.Updater, startKeys string, walked *rootRecorder) (trustedmetadata.TrustedMetadata, error) {
	trusted := up.GetTrustedMetadataSet()
	if trusted.Root != nil && startKeys != "" && roleKeys(trusted.Root) != startKeys {
		c.rotated = true
	}
	// A walked root chain counts even if a later step failed.
	if kerr := c.keepRoot(trusted.Root, walked); kerr != nil && err == nil {
		err = kerr
	}
	return trusted, err
}

// refreshErr classifies an error of go-tuf's workflow.
func (c *Client) refreshErr(ctx context.Context, err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ErrFetch, errors.Join(ctx.Err(), err))
	case isFetchFailure(err):
		return fmt.Errorf("%w: %w", ErrFetch, err)
	case errors.As(err, &pe), errors.As(err, &le):
		return fmt.Errorf("verify: metadata dir: %w", err)
	default:
		c.log.Warn("tuf metadata refused", "err", err)
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
}

// rootsDir, under Dir, keeps every root version walked ("<N>.root.json"),
// so that a stored root is trusted only if it chains, version by version,
// from a root the process already trusts.
const rootsDir = "roots"

// startRoot returns the root the refresh starts from: the root trusted in
// memory (at least the embedded one), carried forward through the root
// history in Dir and then root.json, each step verified as go-tuf verifies a
// root update (signed by the previous root's threshold and its own, version
// +1). A stored root that does not chain (lost history, a root of another
// repository after the device was re-provisioned, tampering) is ignored:
// go-tuf then walks the chain again from the repository. A stored file
// that does not parse or verify is moved aside.
func (c *Client) startRoot() ([]byte, error) {
	tm, err := trustedmetadata.New(c.root)
	if err != nil { // cannot happen: c.root was verified before it was kept
		return nil, fmt.Errorf("verify: trusted root: %w", err)
	}
	tip := c.root
	for v := c.rootVersion + 1; ; v++ {
		p := filepath.Join(c.cfg.Dir, rootsDir, fmt.Sprintf("%d.root.json", v))
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("verify: read stored root: %w", err)
		}
		if _, err := tm.UpdateRoot(b); err != nil {
			if qerr := c.quarantine(p, err); qerr != nil {
				return nil, qerr
			}
			break
		}
		tip = b
	}
	path := filepath.Join(c.cfg.Dir, metadata.ROOT+".json")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.log.Info("no stored tuf root", "trusted", tm.Root.Signed.Version)
	case err != nil:
		return nil, fmt.Errorf("verify: read stored root: %w", err)
	default:
		r, err := parseRoot(b)
		switch {
		case err != nil:
			if qerr := c.quarantine(path, err); qerr != nil {
				return nil, qerr
			}
		case r.Signed.Version == tm.Root.Signed.Version+1:
			if _, err := tm.UpdateRoot(b); err != nil {
				c.log.Warn("stored tuf root does not chain from the trusted root: ignoring it",
					"stored", r.Signed.Version, "trusted", tm.Root.Signed.Version, "err", err)
				break
			}
			tip = b
			if err := c.storeRoots(map[int64][]byte{r.Signed.Version: b}); err != nil {
				return nil, err
			}
		case r.Signed.Version > tm.Root.Signed.Version:
			c.log.Warn("stored tuf root does not chain from the trusted root: ignoring it, the root chain is walked again",
				"stored", r.Signed.Version, "trusted", tm.Root.Signed.Version)
		case r.Signed.Version < tm.Root.Signed.Version:
			c.log.Warn("stored tuf root is older than the trusted one: ignoring it",
				"stored", r.Signed.Version, "trusted", tm.Root.Signed.Version)
		}
	}
	c.root, c.rootVersion = tip, tm.Root.Signed.Version
	return tip, nil
}

// storeRoots durably adds root versions to the history.
func (c *Client) storeRoots(roots map[int64][]byte) error {
	if len(roots) == 0 {
		return nil
	}
	dir := filepath.Join(c.cfg.Dir, rootsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("verify: root history: %w", err)
	}
	for v, b := range roots {
		if err := durable.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.root.json", v)), b, 0o644); err != nil {
			return fmt.Errorf("verify: root history: %w", err)
		}
	}
	if err := durable.SyncDir(c.cfg.Dir); err != nil {
		return fmt.Errorf("verify: root history: %w", err)
	}
	return nil
}

// keepRoot remembers r, the root go-tuf ended on, if it is newer than the
// root trusted so far, and stores the versions walked to reach it.
func (c *Client) keepRoot(r *metadata.Metadata[metadata.RootType], walked *rootRecorder) error {
	if r == nil || r.Signed.Version <= c.rootVersion {
		return nil
	}
	from := c.rootVersion
	// Replay the walk: store only versions that chain from the root
	// trusted before, up to the one go-tuf ended on.
	tm, err := trustedmetadata.New(c.root)
	if err != nil {
		return fmt.Errorf("verify: trusted root: %w", err)
	}
	walkedRoots := walked.roots()
	roots := map[int64][]byte{}
	var b []byte
	for v := from + 1; v <= r.Signed.Version; v++ {
		if _, err := tm.UpdateRoot(walkedRoots[v]); err != nil {
			c.log.Warn("walked tuf root chain cannot be replayed: not storing it", "version", v, "err", err)
			return nil
		}
		b = walkedRoots[v]
		roots[v] = b
	}
	c.log.Info("tuf root rotated", "from", from, "to", r.Signed.Version)
	c.root, c.rootVersion = b, r.Signed.Version
	return c.storeRoots(roots)
}

// quarantine renames an unusable metadata file aside (keeping it for
// inspection) so that go-tuf fetches a fresh copy.
func (c *Client) quarantine(path string, cause error) error {
	aside := path + ".corrupt"
	c.log.Warn("stored tuf metadata is corrupt: moving it aside", "file", path, "to", aside, "err", cause)
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("verify: move corrupt metadata aside: %w", err)
	}
	return durable.SyncDir(c.cfg.Dir)
}

// tidyDir removes temporary files a crash left behind and moves aside
// metadata files that do not even parse: go-tuf treats a badly signed or
// stale local file as absent, but fails the whole refresh on one it cannot
// decode, which would block updates for good.
func (c *Client) tidyDir() error {
	entries, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return fmt.Errorf("verify: metadata dir: %w", err)
	}
	history := filepath.Join(c.cfg.Dir, rootsDir)
	hist, err := os.ReadDir(history)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("verify: root history: %w", err)
	}
	for _, e := range hist {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), ".") {
			c.log.Info("removing stale temporary file", "file", filepath.Join(history, e.Name()))
			if err := os.Remove(filepath.Join(history, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("verify: remove stale temporary file: %w", err)
			}
		}
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(c.cfg.Dir, name)
		if !e.Type().IsRegular() {
			continue
		}
		if strings.HasPrefix(name, "tuf_tmp") || (strings.HasPrefix(name, ".") && strings.Contains(name, ".json")) {
			c.log.Info("removing stale temporary file", "file", path)
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("verify: remove stale temporary file: %w", err)
			}
			continue
		}
		role, ok := strings.CutSuffix(name, ".json")
		if !ok || role == metadata.ROOT {
			continue // the root is checked by startRoot
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("verify: read stored metadata: %w", err)
		}
		switch role {
		case metadata.TIMESTAMP:
			_, err = metadata.Timestamp().FromBytes(b)
		case metadata.SNAPSHOT:
			_, err = metadata.Snapshot().FromBytes(b)
		default:
			_, err = metadata.Targets().FromBytes(b)
		}
		if err != nil {
			if err := c.quarantine(path, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncDir fsyncs every metadata file in Dir and Dir itself.
func (c *Client) syncDir() error {
	entries, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return fmt.Errorf("verify: metadata dir: %w", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			if err := durable.SyncFile(filepath.Join(c.cfg.Dir, e.Name())); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
		}
	}
	if err := durable.SyncDir(c.cfg.Dir); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// target checks one trusted target's switchback metadata and builds its
// Target.
func (c *Client) target(ti TargetInfo) (Target, error) {
	custom, err := ParseCustom(ti.Custom)
	if err != nil {
		return Target{}, err
	}
	if _, err := ti.Verifier(); err != nil {
		return Target{}, err
	}
	return Target{
		Path:   ti.Path,
		Length: ti.Length,
		Hashes: ti.Hashes,
		Custom: custom,
		URL:    ti.URL,
	}, nil
}

// TargetURL returns where the bytes of a target are fetched from: base
// (the targets URL) joined with the target path, each segment escaped, and
// for consistent snapshots the file name prefixed with its hex digest
// ("dir/<hex>.name", TUF 5.7.3) — sha256 when listed, else the first
// algorithm by name, so the choice is deterministic where go-tuf's is not.
// Without hashes the file name is not prefixed.
func TargetURL(base, path string, hashes map[string][]byte, consistent bool) string {
	segs := strings.Split(path, "/")
	if consistent && len(hashes) > 0 {
		algs := slices.Sorted(maps.Keys(hashes))
		alg := algs[0]
		if _, ok := hashes[SHA256]; ok {
			alg = SHA256
		}
		last := len(segs) - 1
		segs[last] = fmt.Sprintf("%x.%s", hashes[alg], segs[last])
	}
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimSuffix(base, "/") + "/" + strings.Join(segs, "/")
}
