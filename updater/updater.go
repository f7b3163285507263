package updater

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/verify"
)

// Errors callers branch on. Errors from verify (ErrVerification,
// ErrUntrusted, ErrIncompatible, ErrClockUnset) and slots pass through
// wrapped, reachable with errors.Is.
var (
	// ErrNoUpdate is returned by Check when every component is up to date.
	ErrNoUpdate = verify.ErrNoUpdate
	// ErrTrialPending is returned by Install while a component has an armed
	// trial that has not been confirmed or rolled back: restart first.
	ErrTrialPending = errors.New("updater: a trial is armed and not yet confirmed")
	// ErrHealth is wrapped by the error of a confirmation whose health
	// checks failed.
	ErrHealth = errors.New("updater: health checks failed")
	// ErrRolledBack is returned by Confirm when a trial failed and the
	// previous version runs (or will run after the restart it requested).
	ErrRolledBack = errors.New("updater: update rolled back")
)

// Updater keeps a device's components up to date. Its methods are safe for
// concurrent use; they run one at a time, except Status, which does not
// wait.
type Updater struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
	// deviceID is the device's stable id for staged rollouts.
	deviceID string
	dl       *download.Client
	tuf      *verify.Client
	// mu makes the methods that act run one at a time. Status does not
	// take it: it reads the state as last saved (store.snapshot).
	mu     sync.Mutex
	closed bool // Close was called: the StateDir is no longer ours
	// stateLock makes this Updater the one writer of its StateDir.
	stateLock *StateDirLock
	events    *eventQueue
	st        *store
	comp      map[string]*Component
	// trusted maps the target paths of the last refresh to their sha256:
	// Install takes only targets the trusted metadata lists.
	trusted map[string]string
	targets []verify.Target
	// targetsVersion is the version of the signed targets metadata of the
	// last refresh, recorded with a transit backoff.
	targetsVersion int64
	// readOnly reports whether the StateDir's file system is read-only
	// (readOnlyFS; tests replace it).
	readOnly func(dir string) (bool, error)
	// mirrorSkip is the server a full transfer starts with (0: the
	// TargetsURL): a retry after a verification failure takes the next.
	mirrorSkip int
}

// New makes an Updater and loads its state. A corrupt state file is moved
// aside and logged; the device starts from a safe state.
//
// The Updater is the one writer of cfg.StateDir: New takes an exclusive
// lock on it (see LockStateDir), waiting up to cfg.LockTimeout, and holds
// it until Close. Another process, or another Updater, on the same
// StateDir gets an error wrapping ErrStateDirLocked.
func New(cfg Config) (u *Updater, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	lock, err := lockForWriting(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Unlock()
		}
	}()
	cfg.setDefaults()
	log, now := loggerOf(cfg), clockOf(cfg)
	if cfg.HTTPClient != nil && (cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "") {
		return nil, errors.New("updater: invalid config: CAFile, CertFile and KeyFile do not apply with HTTPClient")
	}
	dl, err := download.New(cfg.downloadConfig(log))
	if err != nil {
		return nil, fmt.Errorf("updater: %w", err)
	}
	st, err := prepareStore(cfg, log)
	if err != nil {
		return nil, err
	}
	tuf, err := newTUFClient(cfg, dl, log, now)
	if err != nil {
		return nil, fmt.Errorf("updater: %w", err)
	}
	u = &Updater{cfg: cfg, log: log, now: now, dl: dl, tuf: tuf, st: st, comp: map[string]*Component{}, deviceID: deviceID(cfg, log),
		events: newEventQueue(cfg.Events), stateLock: lock, readOnly: readOnlyFS}
	for i := range u.cfg.Components {
		c := &u.cfg.Components[i]
		u.comp[c.Name] = c
	}
	if err := st.publish(); err != nil {
		return nil, err
	}
	return u, nil
}

// lockForWriting takes the lock of cfg.StateDir (see LockStateDir). An
// error other than ErrStateDirLocked means that the lock file cannot be
// opened for writing: a read-only or failing file system, reported as a
// storage error.
func lockForWriting(cfg Config) (*StateDirLock, error) {
	lock, err := LockStateDir(cfg.StateDir, cfg.LockTimeout)
	switch {
	case errors.Is(err, ErrStateDirLocked):
		return nil, err
	case err != nil:
		return nil, storageError(err)
	}
	return lock, nil
}

// loggerOf returns cfg.Logger, or a logger that discards when it is nil.
func loggerOf(cfg Config) *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger
}

// clockOf returns cfg.Now, or time.Now when it is nil.
func clockOf(cfg Config) func() time.Time {
	if cfg.Now == nil {
		return time.Now
	}
	return cfg.Now
}

// prepareStore loads the state of cfg.StateDir, repairs what would wedge
// the configured components (logging both), and gives the components that
// never committed a release their FactoryVersion.
func prepareStore(cfg Config, log *slog.Logger) (*store, error) {
	st, warnings, err := loadStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		log.Error(w)
	}
	for _, w := range st.reconcile(cfg.Components) {
		log.Warn(w)
	}
	st.setFactoryVersions(cfg.Components)
	return st, nil
}

// newTUFClient makes the TUF client that keeps the device's trusted
// metadata in cfg.StateDir/tuf. It fetches through dl from the metadata
// URL and its mirrors, or reads a file:// repository directly.
func newTUFClient(cfg Config, dl *download.Client, log *slog.Logger, now func() time.Time) (*verify.Client, error) {
	mirrors := append([]string{cfg.MetadataURL}, cfg.MetadataMirrors...)
	return verify.New(verify.Config{
		Root:        cfg.TrustedRoot,
		MetadataURL: cfg.MetadataURL,
		TargetsURL:  cfg.TargetsURL,
		Dir:         cfg.StateDir + "/tuf",
		Fetcher: func(ctx context.Context) verify.Fetcher {
			if isFileURL(cfg.MetadataURL) {
				return verify.NewFileFetcher(ctx)
			}
			return dl.Fetcher(ctx, mirrors...)
		},
		Now:                 now,
		MinTime:             cfg.MinTime,
		Logger:              log,
		FullRefreshInterval: cfg.FullRefreshInterval,
		Prefixes:            cfg.TargetPrefixes,
	})
}

// lock takes the updater's lock for one method; the function it returns
// releases it and then waits until the events the method emitted are
// delivered — unless the method was called from the Events callback,
// which cannot wait for its own return. After Close it fails.
func (u *Updater) lock() (unlock func(), err error) {
	fromCallback := u.events.delivering()
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil, ErrClosed
	}
	return func() {
		n := u.events.mark()
		u.mu.Unlock()
		if !fromCallback {
			u.events.wait(n)
		}
	}, nil
}

// locked runs fn under the lock and returns once the lock is released and
// the events fn queued are delivered (see lock).
func (u *Updater) locked(fn func() error) error {
	unlock, err := u.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// emit queues e for Config.Events; it never blocks.
func (u *Updater) emit(e Event) {
	u.events.push(e)
}

func (u *Updater) changed(comp string, from, to State, version, targetPath, reason string) {
	u.log.Info("state", "component", comp, "from", from, "to", to, "version", version, "target", targetPath, "reason", reason)
	u.emit(StateChanged{Component: comp, From: from, To: to, Version: version, TargetPath: targetPath, Reason: reason})
}
