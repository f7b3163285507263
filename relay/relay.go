package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/verify"
)

// Defaults for the zero values of [Config].
const (
	DefaultMaxCacheBytes   = 4 << 30
	DefaultRefreshInterval = 5 * time.Minute
	DefaultMissWait        = 20 * time.Second
)

// Config configures a [Relay]. Dir, Root and MetadataURL are required; the
// zero value of every other field is a sensible default.
type Config struct {
	// Dir holds the relay's state: the trusted metadata (Dir/tuf, owned
	// by a verify.Client) and the target cache (Dir/cache); by convention
	// the gateway CA lives in Dir/tls (see [LoadCA]). It must survive
	// reboots, so that edge devices update while the uplink is down. One
	// relay uses it at a time: New takes a lock (flock on Dir/.lock) and
	// fails with [ErrLocked] while another holds it.
	Dir string
	// Root is the trusted root.json, the same one the edge devices embed.
	Root []byte
	// MetadataURL and TargetsURL are the upstream repository's base URLs,
	// as in updater.Config; TargetsURL defaults to MetadataURL + "/targets".
	MetadataURL, TargetsURL string
	// Hardware lists the hardware ids of the edge devices behind the
	// gateway: the newest image of every component for each of them, and
	// the patches and chunk indexes that produce it, are prefetched. Other
	// signed targets are fetched when an edge device asks for them.
	Hardware []string
	// MaxCacheBytes bounds the target cache; zero means
	// DefaultMaxCacheBytes.
	MaxCacheBytes int64
	// RefreshInterval is the time between refreshes in Run (with 10%
	// jitter); zero means DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MissWait is how long a request for a signed target that is not
	// cached waits for the relay to fetch it before it is answered 503
	// with Retry-After (the edge device's download client retries, then
	// tries its next mirror). Zero means DefaultMissWait; keep it below
	// the edge devices' stall timeout (30 s by default).
	MissWait time.Duration

	// HTTPClient, CAFile, CertFile, KeyFile, StallTimeout and RateLimit
	// configure the upstream connection as in updater.Config.
	HTTPClient                *http.Client
	CAFile, CertFile, KeyFile string
	StallTimeout              time.Duration
	RateLimit                 int64
	// RetryMax bounds the retries of one upstream transfer (see the
	// download client); zero means its default.
	RetryMax int

	// Now is the clock (nil: time.Now); MinTime as in verify.Config.
	Now     func() time.Time
	MinTime time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Relay is a verified TUF mirror: it refreshes the metadata from upstream
// through verify, caches the targets the edge devices need after checking
// their bytes, and serves both over HTTP ([Relay.ServeHTTP]). Its methods
// are safe for concurrent use.
type Relay struct {
	cfg        Config
	log        *slog.Logger
	now        func() time.Time
	targetsURL string
	tufDir     string
	tuf        *verify.Client
	cache      *cache

	set      atomic.Pointer[metaSet]
	metaUp   atomic.Int64 // metadata bytes read from upstream
	prefetch sync.Mutex   // one prefetch at a time
	base     context.Context
	stop     context.CancelFunc
	unlock   func()
}

// ErrLocked means another relay process uses the directory.
var ErrLocked = errors.New("relay: directory in use by another relay")

// New checks cfg, loads the verified metadata and the cache left by an
// earlier run (so the relay serves at once, uplink or not) and returns a
// Relay. It makes no network request.
func New(cfg Config) (*Relay, error) {
	if cfg.Dir == "" || len(cfg.Root) == 0 || cfg.MetadataURL == "" {
		return nil, errors.New("relay: Config.Dir, Root and MetadataURL are required")
	}
	if cfg.MaxCacheBytes == 0 {
		cfg.MaxCacheBytes = DefaultMaxCacheBytes
	}
	if cfg.MaxCacheBytes < 0 || cfg.RefreshInterval < 0 || cfg.MissWait < 0 {
		return nil, errors.New("relay: negative MaxCacheBytes, RefreshInterval or MissWait")
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.MissWait == 0 {
		cfg.MissWait = DefaultMissWait
	}
	r := &Relay{cfg: cfg, log: cfg.Logger, now: cfg.Now, tufDir: filepath.Join(cfg.Dir, "tuf")}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	r.unlock = unlock
	if err := r.init(); err != nil {
		unlock()
		return nil, err
	}
	return r, nil
}

// init builds the clients and loads the state of a locked directory.
func (r *Relay) init() error {
	cfg := r.cfg
	r.targetsURL = cfg.TargetsURL
	if r.targetsURL == "" {
		u, err := url.JoinPath(cfg.MetadataURL, "targets")
		if err != nil {
			return fmt.Errorf("relay: MetadataURL: %w", err)
		}
		r.targetsURL = u
	}
	dlcfg := download.Config{HTTPClient: cfg.HTTPClient, Logger: r.log, StallTimeout: cfg.StallTimeout,
		RateLimit: cfg.RateLimit, RetryMax: cfg.RetryMax}
	if cfg.HTTPClient == nil {
		dlcfg.TLS = download.TLSConfig{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	}
	dl, err := download.New(dlcfg)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.tuf, err = verify.New(verify.Config{
		Root: cfg.Root, MetadataURL: cfg.MetadataURL, TargetsURL: r.targetsURL, Dir: r.tufDir,
		Fetcher: func(ctx context.Context) verify.Fetcher { return &countingFetcher{f: dl.Fetcher(ctx), n: &r.metaUp} },
		Now:     r.now, MinTime: cfg.MinTime, Logger: r.log,
	})
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if r.cache, err = newCache(filepath.Join(cfg.Dir, "cache"), cfg.MaxCacheBytes, dl, r.log, r.now); err != nil {
		return err
	}
	r.base, r.stop = context.WithCancel(context.Background())
	r.load()
	r.sweep()
	return nil
}

// Close stops the downloads the relay started for edge devices that
// asked for a target it did not have, and releases the directory. Stop
// Run and the HTTP server first.
func (r *Relay) Close() error {
	r.stop()
	r.unlock()
	return nil
}

// load verifies the metadata on disk again and publishes it when it
// verifies; otherwise the set published before stays (it may hold only
// roots).
func (r *Relay) load() {
	s, err := loadTrusted(r.tufDir, r.cfg.Root, r.now())
	if err != nil {
		r.log.Info("relay: no complete verified metadata to serve", "err", err)
		if r.set.Load() == nil {
			r.set.Store(s)
		}
		return
	}
	r.set.Store(s)
	r.log.Info("relay: serving verified metadata", "timestamp", s.timestampVersion, "targets", len(s.targets), "expires", s.expires)
}

// Refresh runs a TUF refresh against upstream through verify, then
// publishes the verified metadata and evicts the cached targets it no
// longer signs. When the refresh fails the relay goes on serving the last
// verified metadata until it expires.
func (r *Relay) Refresh(ctx context.Context) error {
	if _, err := r.tuf.Refresh(ctx); err != nil {
		return fmt.Errorf("relay: refresh: %w", err)
	}
	r.load()
	r.sweep()
	return nil
}

// sweep evicts what the published metadata does not sign.
func (r *Relay) sweep() {
	s := r.set.Load()
	if s == nil || s.timestampVersion == 0 {
		return // nothing verified yet: keep the cache as it is
	}
	keep := map[string]bool{}
	for _, tf := range s.targets {
		keep[keyOf(hashesOf(tf))] = true
	}
	r.cache.sweep(keep)
}

// Prefetch downloads the targets the configured hardware ids need (see
// [Config].Hardware) that are not cached yet, verifying each. It returns
// the errors of the targets it could not fetch, joined.
func (r *Relay) Prefetch(ctx context.Context) error {
	r.prefetch.Lock()
	defer r.prefetch.Unlock()
	s := r.set.Load()
	if s == nil || !s.fresh(r.now()) {
		return errors.New("relay: prefetch: no fresh verified metadata")
	}
	wanted := r.wanted(s)
	protect := map[string]bool{}
	for _, w := range wanted {
		protect[w.key] = true
	}
	var errs []error
	for _, w := range wanted {
		if err := r.cache.fetch(ctx, ctx, w, protect); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// wanted lists the targets to prefetch, small ones first.
func (r *Relay) wanted(s *metaSet) []want {
	var ws []want
	for _, tf := range prefetchSet(s.targets, r.cfg.Hardware) {
		ws = append(ws, r.want(s, tf))
	}
	return ws
}

func (r *Relay) want(s *metaSet, tf *targetFile) want {
	hashes := hashesOf(tf)
	return want{key: keyOf(hashes), path: tf.Path, length: tf.Length, hashes: hashes,
		urls: []string{upstreamURL(r.targetsURL, tf.Path, hashes, s.consistent)}}
}

// Run refreshes and prefetches every RefreshInterval (with jitter), sooner
// after a failure, until ctx ends; it returns ctx's error.
func (r *Relay) Run(ctx context.Context) error {
	for {
		wait := r.cfg.RefreshInterval
		err := r.Refresh(ctx)
		if err == nil {
			err = r.Prefetch(ctx)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("relay: refresh or prefetch failed; serving the last verified metadata", "err", err)
			wait = min(wait, time.Minute)
		}
		wait += time.Duration(rand.Int64N(int64(wait)/10 + 1))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// Stats describes a relay's traffic and cache.
type Stats struct {
	// UplinkTargetBytes and UplinkMetadataBytes count bytes read from
	// upstream.
	UplinkTargetBytes, UplinkMetadataBytes int64
	// CacheBytes is what the cache holds (downloads in progress reserve
	// their full length).
	CacheBytes int64
	// Cached is the number of verified targets in the cache.
	Cached int
	// TimestampVersion and Expires describe the metadata served.
	TimestampVersion int64
	Expires          time.Time
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	used, up := r.cache.usage()
	st := Stats{UplinkTargetBytes: up, UplinkMetadataBytes: r.metaUp.Load(), CacheBytes: used, Cached: len(r.cache.keys())}
	if s := r.set.Load(); s != nil {
		st.TimestampVersion, st.Expires = s.timestampVersion, s.expires
	}
	return st
}

// countingFetcher counts the metadata bytes a fetcher returns.
type countingFetcher struct {
	f verify.Fetcher
	n *atomic.Int64
}

func (c *countingFetcher) DownloadFile(u string, maxLength int64, timeout time.Duration) ([]byte, error) {
	b, err := c.f.DownloadFile(u, maxLength, timeout)
	c.n.Add(int64(len(b)))
	return b, err
}

// DownloadFileConditional keeps the idle check of verify (one 304 when
// nothing changed) working through the counter.
func (c *countingFetcher) DownloadFileConditional(u string, maxLength int64, validator string) ([]byte, bool, string, error) {
	cf, ok := c.f.(verify.ConditionalFetcher)
	if !ok {
		b, err := c.f.DownloadFile(u, maxLength, 0)
		c.n.Add(int64(len(b)))
		return b, false, "", err
	}
	b, nm, v, err := cf.DownloadFileConditional(u, maxLength, validator)
	c.n.Add(int64(len(b)))
	return b, nm, v, err
}

// upstreamURL is where upstream serves a target: its path under base,
// each segment escaped, the file name prefixed with its hex sha256 (else
// the first algorithm by name) for consistent snapshots, as verify builds
// target URLs.
func upstreamURL(base, path string, hashes map[string][]byte, consistent bool) string {
	segs := strings.Split(path, "/")
	if consistent {
		segs[len(segs)-1] = hashPrefix(hashes) + "." + segs[len(segs)-1]
	}
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimSuffix(base, "/") + "/" + strings.Join(segs, "/")
}
