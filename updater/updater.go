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
// concurrent use; they run one at a time.
type Updater struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	dl   *download.Client
	tuf  *verify.Client
	mu   sync.Mutex
	st   *store
	comp map[string]*Component
	// trusted maps the target paths of the last refresh to their sha256:
	// Install takes only targets the trusted metadata lists.
	trusted map[string]string
	targets []verify.Target
}

// New makes an Updater and loads its state. A corrupt state file is moved
// aside and logged; the device starts from a safe state.
func New(cfg Config) (*Updater, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.ConfirmTimeout == 0 {
		cfg.ConfirmTimeout = 2 * time.Minute
	}
	if cfg.Tries == 0 {
		cfg.Tries = 3
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Hour
	}
	if cfg.PollJitter == 0 {
		cfg.PollJitter = cfg.PollInterval / 10
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	if cfg.HTTPClient != nil && (cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "") {
		return nil, errors.New("updater: invalid config: CAFile, CertFile and KeyFile do not apply with HTTPClient")
	}
	dl, err := download.New(cfg.downloadConfig(log))
	if err != nil {
		return nil, fmt.Errorf("updater: %w", err)
	}
	st, warnings, err := loadStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		log.Error(w)
	}
	mirrors := append([]string{cfg.MetadataURL}, cfg.MetadataMirrors...)
	tuf, err := verify.New(verify.Config{
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
	})
	if err != nil {
		return nil, fmt.Errorf("updater: %w", err)
	}
	u := &Updater{cfg: cfg, log: log, now: now, dl: dl, tuf: tuf, st: st, comp: map[string]*Component{}}
	for i := range cfg.Components {
		c := &u.cfg.Components[i]
		u.comp[c.Name] = c
		cs := st.component(c.Name)
		if cs.Installed == "" {
			cs.Installed = c.FactoryVersion
		}
	}
	return u, nil
}

func (u *Updater) emit(e Event) {
	if u.cfg.Events != nil {
		u.cfg.Events(e)
	}
}

func (u *Updater) changed(comp string, from, to State, version, target, reason string) {
	u.log.Info("state", "component", comp, "from", from, "to", to, "version", version, "target", target, "reason", reason)
	u.emit(StateChanged{Component: comp, From: from, To: to, Version: version, Target: target, Reason: reason})
}
