package relay

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/internal/durable"
	"github.com/switchback-ota/switchback/verify"
)

// ErrCacheFull means a target does not fit in the cache even after
// evicting every file not in use.
var ErrCacheFull = errors.New("relay: cache full")

// cache holds verified targets as files named by their content hash
// (<dir>/<key>), downloads in progress as <key>.part with the validator of
// their bytes in <key>.validator. A file is renamed from .part to its key
// only once its length and every hash matched the signed metadata; only
// such files are served. It is safe for concurrent use.
type cache struct {
	dir   string
	limit int64
	dl    *download.Client
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
	used    int64 // bytes of every entry, reservations of downloads included
	flights map[string]*flight
	uplink  int64 // target bytes read from upstream
}

type entry struct {
	size     int64 // on disk, or reserved for a download in progress
	lastUsed time.Time
	users    int  // open readers and downloads: never evicted while > 0
	complete bool // verified and renamed into place
}

type flight struct {
	done chan struct{}
	err  error
}

// want is one target to cache: its key, trusted length and hashes, and the
// upstream URLs to fetch it from.
type want struct {
	key    string
	path   string
	length int64
	hashes map[string][]byte
	urls   []string
}

func newCache(dir string, limit int64, dl *download.Client, log *slog.Logger, now func() time.Time) (*cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("relay: cache dir: %w", err)
	}
	c := &cache{dir: dir, limit: limit, dl: dl, log: log, now: now, entries: map[string]*entry{}, flights: map[string]*flight{}}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("relay: cache dir: %w", err)
	}
	for _, de := range des {
		fi, err := de.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		name := de.Name()
		key, part := strings.CutSuffix(name, ".part")
		if !validKey(key) {
			if !strings.HasSuffix(name, ".validator") {
				c.log.Warn("relay: stray file in cache", "file", name)
			}
			continue
		}
		c.entries[key] = &entry{size: fi.Size(), lastUsed: fi.ModTime(), complete: !part}
		c.used += fi.Size()
	}
	return c, nil
}

// keyOf names a target in the cache: its hex sha256, or "<alg>-<hex>" of
// the first algorithm by name when it has no sha256.
func keyOf(hashes map[string][]byte) string {
	if d, ok := hashes[verify.SHA256]; ok {
		return hex.EncodeToString(d)
	}
	algs := slices.Sorted(maps.Keys(hashes))
	if len(algs) == 0 {
		return ""
	}
	return algs[0] + "-" + hex.EncodeToString(hashes[algs[0]])
}

// validKey reports whether name can be a key made by keyOf: no path
// separator, no dot, not empty.
func validKey(name string) bool {
	return name != "" && !strings.ContainsAny(name, "./\\") && len(name) <= 200
}

func (c *cache) path(key string) string { return filepath.Join(c.dir, key) }

// open returns the verified file of key, marked in use until release is
// called, or ok false when it is not cached.
func (c *cache) open(key string) (f *os.File, release func(), ok bool) {
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || !e.complete {
		c.mu.Unlock()
		return nil, nil, false
	}
	e.users++
	e.lastUsed = c.now()
	c.mu.Unlock()
	unuse := func() {
		c.mu.Lock()
		e.users--
		c.mu.Unlock()
	}
	f, err := os.Open(c.path(key))
	if err != nil {
		unuse()
		c.log.Warn("relay: cached target unreadable", "key", key, "err", err)
		return nil, nil, false
	}
	return f, func() { f.Close(); unuse() }, true
}

// has reports whether key is cached and verified.
func (c *cache) has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	return e != nil && e.complete
}

// fetch makes sure w is cached, downloading it if needed, and waits for
// it until ctx ends. Concurrent calls for one key share one download,
// which runs under dlCtx: it goes on when a waiting client gives up.
// protect names keys the space for w may not be taken from.
func (c *cache) fetch(ctx, dlCtx context.Context, w want, protect map[string]bool) error {
	c.mu.Lock()
	if e := c.entries[w.key]; e != nil && e.complete {
		c.mu.Unlock()
		return nil
	}
	fl := c.flights[w.key]
	if fl == nil {
		fl = &flight{done: make(chan struct{})}
		c.flights[w.key] = fl
		c.mu.Unlock()
		go func() {
			fl.err = c.download(dlCtx, w, protect)
			c.mu.Lock()
			delete(c.flights, w.key)
			c.mu.Unlock()
			close(fl.done)
		}()
	} else {
		c.mu.Unlock()
	}
	select {
	case <-fl.done:
		return fl.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reserve makes room for a download of w and marks its entry in use;
// download releases it when it ends.
func (c *cache) reserve(w want, protect map[string]bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[w.key]
	if e == nil {
		e = &entry{}
		c.entries[w.key] = e
	}
	e.users++
	e.lastUsed = c.now()
	need := w.length - e.size
	if err := c.evictLocked(need, protect); err != nil {
		e.users--
		if e.size == 0 {
			delete(c.entries, w.key)
		}
		return fmt.Errorf("%w: %s needs %d bytes, the limit is %d", ErrCacheFull, w.path, w.length, c.limit)
	}
	c.used += need
	e.size = w.length
	return nil
}

// evictLocked removes least recently used entries not in use nor
// protected until need more bytes fit under the limit.
func (c *cache) evictLocked(need int64, protect map[string]bool) error {
	if c.used+need <= c.limit {
		return nil
	}
	var victims []string
	for k, e := range c.entries {
		if e.users == 0 && !protect[k] {
			victims = append(victims, k)
		}
	}
	slices.SortFunc(victims, func(a, b string) int { return c.entries[a].lastUsed.Compare(c.entries[b].lastUsed) })
	var room int64
	for _, k := range victims {
		room += c.entries[k].size
	}
	if c.used+need-room > c.limit {
		return ErrCacheFull
	}
	for _, k := range victims {
		if c.used+need <= c.limit {
			break
		}
		c.removeLocked(k, "least recently used")
	}
	return nil
}

func (c *cache) removeLocked(key, why string) {
	e := c.entries[key]
	for _, p := range []string{c.path(key), c.path(key) + ".part", c.path(key) + ".validator"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("relay: evict", "file", p, "err", err)
		}
	}
	c.used -= e.size
	delete(c.entries, key)
	c.log.Info("relay: evicted", "key", key, "bytes", e.size, "why", why)
}

// drop evicts key now if nothing else uses it (the caller may hold one
// use), else marks it incomplete so that it is no longer served and goes
// at the next sweep or download.
func (c *cache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		return
	}
	if e.users <= 1 {
		c.removeLocked(key, "does not match its signed metadata")
		return
	}
	e.complete = false
}

// sweep evicts every entry whose key keep does not name and that is not
// in use: what no signed targets metadata names any more.
func (c *cache) sweep(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if !keep[k] && e.users == 0 {
			c.removeLocked(k, "no longer signed")
		}
	}
}

// usage returns the bytes the cache holds and the target bytes read from
// upstream so far.
func (c *cache) usage() (used, uplink int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.uplink
}

// download fetches w into <key>.part, resuming what an earlier attempt
// left, verifies it while it streams and renames it into place.
func (c *cache) download(ctx context.Context, w want, protect map[string]bool) (err error) {
	if err := c.reserve(w, protect); err != nil {
		return err
	}
	complete := false
	defer func() {
		c.mu.Lock()
		e := c.entries[w.key]
		e.users--
		e.complete = complete
		if !complete {
			// What is on disk, for the next attempt to resume.
			size := int64(0)
			if fi, serr := os.Stat(c.path(w.key) + ".part"); serr == nil {
				size = fi.Size()
			}
			c.used += size - e.size
			e.size = size
		}
		c.mu.Unlock()
	}()
	sink, err := c.openPart(w)
	if err != nil {
		return err
	}
	defer sink.f.Close()
	c.log.Info("relay: fetching target", "path", w.path, "offset", sink.off, "length", w.length)
	res, ferr := c.dl.Fetch(ctx, download.Request{URLs: w.urls, Offset: sink.off, Length: w.length, Validator: sink.validator}, sink, nil)
	c.mu.Lock()
	c.uplink += res.Transferred
	c.mu.Unlock()
	if ferr != nil {
		return fmt.Errorf("relay: fetch %s: %w", w.path, ferr)
	}
	if err := sink.v.Verify(); err != nil {
		// Bytes that do not match the signed metadata are dropped: the
		// next attempt starts from nothing.
		sink.f.Close()
		os.Remove(c.path(w.key) + ".part")
		os.Remove(c.path(w.key) + ".validator")
		return fmt.Errorf("relay: %s: %w", w.path, err)
	}
	if err := sink.f.Sync(); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	if err := os.Rename(c.path(w.key)+".part", c.path(w.key)); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	os.Remove(c.path(w.key) + ".validator")
	if err := durable.SyncDir(c.dir); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	complete = true
	c.log.Info("relay: target cached", "path", w.path, "bytes", w.length, "transferred", res.Transferred)
	return nil
}

// openPart opens the partial file of w and hashes the bytes it already
// holds, so that the download resumes after them.
func (c *cache) openPart(w want) (*partSink, error) {
	v, err := verify.NewVerifier(w.length, w.hashes)
	if err != nil {
		return nil, err
	}
	p := c.path(w.key) + ".part"
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	s := &partSink{f: f, v: v, w: w, validatorPath: c.path(w.key) + ".validator"}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	validator, verr := os.ReadFile(s.validatorPath)
	if fi.Size() > 0 && fi.Size() <= w.length && verr == nil {
		if _, err := io.Copy(v, io.NewSectionReader(f, 0, fi.Size())); err != nil {
			f.Close()
			return nil, fmt.Errorf("relay: %w", err)
		}
		s.off, s.validator = fi.Size(), string(validator)
		return s, nil
	}
	if err := s.Restart(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// partSink is the download.Sink of one target: bytes go to the verifier
// and the partial file.
type partSink struct {
	f             *os.File
	v             *verify.Verifier
	w             want
	off           int64
	validator     string
	validatorPath string
}

func (s *partSink) Write(p []byte) (int, error) {
	if _, err := s.v.Write(p); err != nil {
		return 0, err
	}
	n, err := s.f.WriteAt(p, s.off)
	s.off += int64(n)
	return n, err
}

func (s *partSink) Restart() error {
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	v, err := verify.NewVerifier(s.w.length, s.w.hashes)
	if err != nil {
		return err
	}
	s.v, s.off = v, 0
	return nil
}

// SetValidator records the validator of the bytes that follow, for a
// resume after the relay restarts.
func (s *partSink) SetValidator(v string) error {
	s.validator = v
	return os.WriteFile(s.validatorPath, []byte(v), 0o600)
}

// keys returns the keys of complete entries, least recently used first.
func (c *cache) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ks []string
	for k, e := range c.entries {
		if e.complete {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, func(a, b string) int {
		return cmp.Or(c.entries[a].lastUsed.Compare(c.entries[b].lastUsed), strings.Compare(a, b))
	})
	return ks
}
