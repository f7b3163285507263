package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/slots"
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

// Component is one updatable part of the device: a root filesystem on A/B
// partitions, an application binary, a configuration directory.
type Component struct {
	// Name matches the "component" of the TUF targets that update it.
	Name string
	// Slots are the places the component's images are written, at least
	// two (A/B). Images go to a slot that is not running.
	Slots []slots.Slot
	// Boot decides which slot runs.
	Boot slots.BootControl
	// FactoryVersion is the version installed before switchback's first
	// update (the state file has none yet).
	FactoryVersion string
}

// Config configures an Updater. The zero value of every optional field is
// a sensible default.
type Config struct {
	// Hardware is the device's hardware id; only targets listing it (or
	// "*") are installed. Required.
	Hardware string
	// StateDir holds the state file and the trusted TUF metadata. Required;
	// it must be on a local filesystem that survives reboots.
	StateDir string
	// TrustedRoot is the TUF root.json embedded in the application. The
	// newest root already trusted on disk takes precedence. Required.
	TrustedRoot []byte
	// MetadataURL and TargetsURL are the base URLs of the TUF repository.
	// MetadataMirrors and TargetsMirrors are tried after them, in order.
	MetadataURL     string
	TargetsURL      string
	MetadataMirrors []string
	TargetsMirrors  []string
	// Components are what this device updates. Required.
	Components []Component

	// HealthChecks must pass before a new version is committed.
	HealthChecks []health.HealthCheck
	// SkipServerCheck removes the check, on by default, that the update
	// server is reachable (a real TUF refresh) before committing: a
	// version that cannot reach its update server can never be fixed.
	SkipServerCheck bool
	// ConfirmTimeout bounds the health checks at confirmation (default 2m).
	ConfirmTimeout time.Duration
	// Tries is how many starts a new version gets before the previous one
	// runs again (default 3).
	Tries int
	// ExternalStartCounter is set when another process (switchback guard
	// in ExecStartPre) counts the application's starts for boot controls
	// that implement slots.StartCounter; Confirm then does not count.
	ExternalStartCounter bool
	// AllowDowngrade lets a lower version be installed when it is the
	// newest one published (after a release was pulled).
	AllowDowngrade bool
	// ReadBack re-reads every slot after writing and verifies the bytes
	// again, catching storage that acknowledges writes it lost.
	ReadBack bool

	// Restart is called after a component's new version is armed, or after
	// a failed trial was rolled back, to start the version that is now
	// selected: reboot the device for A/B partitions, restart the
	// application for file and directory slots. Nil: the application
	// restarts on its own (Run returns ErrRestartRequired... see Run).
	Restart func(ctx context.Context, component string) error

	// PollInterval is the time between checks in Run (default 1h), spread
	// by up to PollJitter (default PollInterval/10) so that a fleet does
	// not call at once.
	PollInterval time.Duration
	PollJitter   time.Duration

	// HTTPClient is used for every request. Nil: a private client with
	// sane timeouts (http.DefaultClient is never used).
	HTTPClient *http.Client
	// StallTimeout drops and resumes a transfer that received no byte for
	// this long (default 30s). RateLimit caps transfers in bytes per
	// second (0: unlimited). Pause, when set, is called between chunks and
	// may block while the link is metered.
	StallTimeout time.Duration
	RateLimit    int64
	Pause        func(ctx context.Context) error
	// CAFile is a PEM bundle of the authorities trusted for the update
	// servers (empty: the system roots). CertFile and KeyFile are a client
	// certificate and key for mutual TLS, read again when either file
	// changes, so a renewed certificate is used without a restart. TLS 1.2
	// is the minimum. Not used with HTTPClient, which carries its own TLS.
	CAFile, CertFile, KeyFile string
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Events receives typed events; it is called synchronously and must not
	// block for long.
	Events func(Event)
	// Now is the clock; nil is time.Now. MinTime is a time before which
	// the clock is not trusted (e.g. the build time): TUF expiry is then
	// not evaluated and checks fail with verify.ErrClockUnset.
	Now     func() time.Time
	MinTime time.Time
	// FullRefreshInterval, when positive, opts into idle checks that skip
	// the walk of the root chain while the timestamp is unchanged (one
	// request; not the TUF workflow). Zero or negative, the default: every
	// check is the TUF workflow, an idle one two requests and no body (the
	// next root answered 404, the timestamp 304). See verify.Config.
	FullRefreshInterval time.Duration
}

func (c *Config) validate() error {
	var errs []error
	if c.Hardware == "" {
		errs = append(errs, errors.New("Hardware is required"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("StateDir is required"))
	}
	if len(c.TrustedRoot) == 0 {
		errs = append(errs, errors.New("TrustedRoot is required"))
	}
	if c.MetadataURL == "" || c.TargetsURL == "" {
		errs = append(errs, errors.New("MetadataURL and TargetsURL are required"))
	}
	if len(c.Components) == 0 {
		errs = append(errs, errors.New("at least one Component is required"))
	}
	seen := map[string]bool{}
	for i, comp := range c.Components {
		switch {
		case comp.Name == "":
			errs = append(errs, fmt.Errorf("component %d: Name is required", i))
		case seen[comp.Name]:
			errs = append(errs, fmt.Errorf("component %q listed twice", comp.Name))
		}
		seen[comp.Name] = true
		if len(comp.Slots) < 2 {
			errs = append(errs, fmt.Errorf("component %q: at least two slots are required", comp.Name))
		}
		if comp.Boot == nil {
			errs = append(errs, fmt.Errorf("component %q: Boot is required", comp.Name))
		}
		names := map[string]bool{}
		for _, s := range comp.Slots {
			if s == nil || s.Name() == "" || names[s.Name()] {
				errs = append(errs, fmt.Errorf("component %q: slots need distinct, non-empty names", comp.Name))
				break
			}
			names[s.Name()] = true
		}
	}
	if c.Tries < 0 || c.Tries > 9 {
		errs = append(errs, fmt.Errorf("Tries %d out of range 1..9", c.Tries))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("updater: invalid config: %w", err)
	}
	return nil
}

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
	dlcfg := download.Config{HTTPClient: cfg.HTTPClient, Logger: log,
		StallTimeout: cfg.StallTimeout, RateLimit: cfg.RateLimit, Pause: cfg.Pause}
	if cfg.HTTPClient == nil {
		dlcfg.TLS = download.TLSConfig{CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
	} else if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
		return nil, errors.New("updater: invalid config: CAFile, CertFile and KeyFile do not apply with HTTPClient")
	}
	dl, err := download.New(dlcfg)
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
				return fileFetcher{ctx}
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

// Update is a release that Check found for a component.
type Update struct {
	Component string
	// From is the installed version, To the release's.
	From, To string
	Target   verify.Target
}

// Check refreshes the trusted metadata and returns, for each component, the
// newest release it may install. It returns an error wrapping ErrNoUpdate
// when there is none for any component; when releases exist that the
// device may not take, the error also wraps verify.ErrIncompatible with
// the reasons.
func (u *Updater) Check(ctx context.Context) ([]Update, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.check(ctx)
}

func (u *Updater) check(ctx context.Context) ([]Update, error) {
	ts, err := u.tuf.Refresh(ctx)
	if err != nil {
		return nil, fmt.Errorf("updater: check: %w", err)
	}
	for _, r := range ts.Rejected {
		u.log.Warn("target rejected", "target", r.Path, "err", r.Err)
	}
	u.remember(ts)
	var ups []Update
	var errs []error
	for _, c := range u.cfg.Components {
		cs := u.st.component(c.Name)
		t, err := verify.Select(ts.Targets, verify.Policy{
			Component:      c.Name,
			Hardware:       u.cfg.Hardware,
			Installed:      cs.Installed,
			AllowDowngrade: u.cfg.AllowDowngrade,
			Blocked:        u.st.blocked,
		})
		switch {
		case errors.Is(err, verify.ErrNoUpdate):
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("component %s: %w", c.Name, err))
			continue
		}
		ups = append(ups, Update{Component: c.Name, From: cs.Installed, To: t.Custom.Version, Target: t})
	}
	if len(ups) > 0 {
		return ups, nil
	}
	if err := errors.Join(errs...); err != nil {
		// Releases exist that this device may not take (wrong hardware,
		// blocklisted...): nothing to install, and the reasons stay
		// reachable with errors.Is(err, verify.ErrIncompatible).
		return nil, fmt.Errorf("updater: check: %w: %w", ErrNoUpdate, err)
	}
	return nil, fmt.Errorf("updater: check: %w", ErrNoUpdate)
}

// remember records the targets of a refresh: Install takes only these.
func (u *Updater) remember(ts *verify.Targets) {
	u.targets = ts.Targets
	u.trusted = map[string]string{}
	for _, t := range ts.Targets {
		u.trusted[t.Path] = t.SHA256()
	}
}

// inactive picks the slot to write: one that is not running, preferring one
// that is neither the running nor the primary slot.
func inactive(c *Component, bs slots.BootStatus) (slots.Slot, error) {
	var fallback slots.Slot
	for _, s := range c.Slots {
		if s.Name() == bs.Booted {
			continue
		}
		if s.Name() != bs.Primary {
			return s, nil
		}
		if fallback == nil {
			fallback = s
		}
	}
	if fallback == nil {
		return nil, fmt.Errorf("component %s: no slot other than the running %q: %w", c.Name, bs.Booted, slots.ErrSlotActive)
	}
	return fallback, nil
}

// Install downloads up into a slot that is not running, verifies every
// byte against the signed target, and arms a trial of it. Nothing is
// activated unless verification passed. An interrupted Install of the same
// release resumes where it stopped. After a successful Install the new
// version starts on the next restart (Config.Restart is called), and
// Confirm decides there whether it stays.
func (u *Updater) Install(ctx context.Context, up Update) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if err := u.install(ctx, up); err != nil {
		return err
	}
	return u.restart(ctx, up.Component)
}

func (u *Updater) restart(ctx context.Context, comp string) error {
	if u.cfg.Restart == nil {
		u.log.Info("restart required", "component", comp)
		return nil
	}
	if err := u.cfg.Restart(ctx, comp); err != nil {
		return fmt.Errorf("updater: restart %s: %w", comp, err)
	}
	return nil
}

func (u *Updater) install(ctx context.Context, up Update) (err error) {
	c, ok := u.comp[up.Component]
	if !ok {
		return fmt.Errorf("updater: install: unknown component %q", up.Component)
	}
	t := up.Target
	sha := t.SHA256()
	if sha == "" {
		return fmt.Errorf("updater: install %s: target %s lists no sha256: %w", c.Name, t.Path, verify.ErrVerification)
	}
	if u.st.blocked(sha) {
		return fmt.Errorf("updater: install %s %s: release is blocklisted after an earlier failure", c.Name, up.To)
	}
	if u.trusted[t.Path] != sha {
		// Not from the last refresh (or none yet): ask the trusted
		// metadata again rather than take the caller's word for it.
		if _, err := u.check(ctx); err != nil && !errors.Is(err, ErrNoUpdate) && !errors.Is(err, verify.ErrIncompatible) {
			return fmt.Errorf("updater: install %s: %w", c.Name, err)
		}
		if u.trusted[t.Path] != sha {
			return fmt.Errorf("updater: install %s: target %s (sha256 %s) is not in the trusted metadata: %w", c.Name, t.Path, sha, verify.ErrVerification)
		}
	}
	// Use the trusted target itself, never the caller's copy of its
	// custom metadata, and apply the selection rules again: hardware,
	// version order, minimum installed version, blocklist.
	for _, tt := range u.targets {
		if tt.Path == t.Path && tt.SHA256() == sha {
			t = tt
			break
		}
	}
	// A local file (InstallFile) keeps its file:// URL.
	if up.Target.URL != "" && strings.HasPrefix(up.Target.URL, "file://") {
		t.URL = up.Target.URL
	}
	if t.Custom.Component != c.Name {
		return fmt.Errorf("updater: install %s: target %s is for component %q: %w", c.Name, t.Path, t.Custom.Component, verify.ErrIncompatible)
	}
	if _, err := verify.Select([]verify.Target{t}, verify.Policy{Component: c.Name, Hardware: u.cfg.Hardware,
		Installed: u.st.component(c.Name).Installed, AllowDowngrade: u.cfg.AllowDowngrade, Blocked: u.st.blocked}); err != nil {
		return fmt.Errorf("updater: install %s %s: %w", c.Name, t.Custom.Version, err)
	}
	up.To = t.Custom.Version
	cs := u.st.component(c.Name)
	pd0 := cs.Pending
	if pd := cs.Pending; pd != nil && pd.Phase == PhaseArmed {
		return fmt.Errorf("updater: install %s: %w (%s in slot %s)", c.Name, ErrTrialPending, pd.Version, pd.Slot)
	}
	bs, err := c.Boot.Status(ctx)
	if err != nil {
		return fmt.Errorf("updater: install %s: boot status: %w", c.Name, err)
	}
	if bs.Trial != "" && bs.TriesLeft > 0 && !(pd0 != nil && pd0.Phase == PhaseVerified && pd0.Slot == bs.Trial) {
		return fmt.Errorf("updater: install %s: %w (boot control has slot %s armed)", c.Name, ErrTrialPending, bs.Trial)
	}
	slot, err := inactive(c, bs)
	if err != nil {
		return fmt.Errorf("updater: install: %w", err)
	}

	imageLen := t.Length
	if t.Custom.Uncompressed != nil {
		imageLen = t.Custom.Uncompressed.Length
	}
	pd := cs.Pending
	if pd == nil || pd.Target != sha || pd.Slot != slot.Name() {
		pd = &pending{Phase: PhaseDownloading, Slot: slot.Name(), TargetPath: t.Path, Target: sha,
			Version: t.Custom.Version, Length: imageLen, Started: u.now()}
	}
	// Record first that the slot's content is about to change: a crash
	// from here on never leaves the state claiming the old content.
	cs.Pending = pd
	imageSHA := ""
	if d, ok := t.ImageDigest(); ok {
		imageSHA = d.SHA256
	}
	prev := cs.Slots[slot.Name()]
	was := prev.Was
	if prev.Complete {
		was = prev.Image
	}
	cs.Slots[slot.Name()] = slotContent{Target: sha, Version: t.Custom.Version, Length: imageLen, Image: imageSHA, Was: was}
	if err := u.st.save(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			u.emit(ErrorEvent{Component: c.Name, Op: "install", Err: err})
		}
	}()

	if pd.Phase == PhaseDownloading {
		u.changed(c.Name, StateIdle, StateDownloading, up.To, t.Path, "")
		if err := u.transferBest(ctx, c, slot, t, pd, bs); err != nil {
			if errors.Is(err, verify.ErrVerification) {
				u.verificationFailed(c, t, pd, err)
			}
			return fmt.Errorf("updater: install %s %s: %w", c.Name, up.To, err)
		}
		if pd.Method == methodFull {
			u.storeIndex(ctx, t)
		}
		pd.Phase = PhaseVerified
		pd.Offset, pd.HashState = pd.Length, nil
		cs.Slots[slot.Name()] = slotContent{Target: sha, Version: t.Custom.Version, Length: imageLen, Complete: true, Image: imageSHA}
		if err := u.st.save(); err != nil {
			return err
		}
		u.pruneIndexes()
		u.changed(c.Name, StateDownloading, StateVerified, up.To, t.Path, "")
	}

	// Arm. The state says "armed" only after the boot control does; a crash
	// between the two is resolved by Confirm, which asks the boot control.
	if err := c.Boot.Arm(ctx, slot.Name(), u.cfg.Tries); err != nil {
		return fmt.Errorf("updater: install %s %s: arm slot %s: %w", c.Name, up.To, slot.Name(), err)
	}
	pd.Phase = PhaseArmed
	pd.ArmedAt = u.now()
	if err := u.st.save(); err != nil {
		return err
	}
	u.changed(c.Name, StateVerified, StateArmed, up.To, t.Path, "")
	return nil
}

// verificationFailed records a failed verification. Three failures of the
// same target blocklist it: once may be a byte flipped in transit, three
// times is the release.
func (u *Updater) verificationFailed(c *Component, t verify.Target, pd *pending, err error) {
	sha := t.SHA256()
	cs := u.st.component(c.Name)
	cs.Pending = nil
	u.st.p.Failures[sha]++
	reason := err.Error()
	if u.st.p.Failures[sha] >= 3 {
		u.st.block(sha, BlockedRelease{Component: c.Name, Version: t.Custom.Version, Reason: reason, At: u.now()})
		cs.LastResult = fmt.Sprintf("%s failed verification three times; blocklisted", t.Custom.Version)
	}
	if serr := u.st.save(); serr != nil {
		u.log.Error("save state after verification failure", "err", serr)
	}
	u.changed(c.Name, StateDownloading, StateFailed, t.Custom.Version, t.Path, reason)
}

// transfer streams the target into the slot, verifying as it goes, with a
// durable checkpoint every checkpointEvery bytes so that a restart resumes.
func (u *Updater) transfer(ctx context.Context, c *Component, slot slots.Slot, t verify.Target, pd *pending) error {
	w, err := slot.Writer(ctx, pd.Length)
	if err != nil {
		return fmt.Errorf("open slot %s: %w", slot.Name(), err)
	}
	defer w.Close()
	blockSize := 1
	if bs, ok := slot.(slots.BlockSizer); ok {
		blockSize = bs.BlockSize()
	}
	p, err := newPipeline(t, w, blockSize, pd, u.st, u.log, func(done, total int64) {
		u.emit(Progress{Component: c.Name, Done: done, Total: total})
	})
	if err != nil {
		return err
	}
	urls := []string{t.URL}
	for _, m := range u.cfg.TargetsMirrors {
		urls = append(urls, joinURL(m, relativeURL(u.cfg.TargetsURL, t.URL)))
	}
	req := download.Request{URLs: urls, Offset: p.resumeOffset(), Length: t.Length, Validator: p.resumeValidator()}
	res, err := u.fetch(ctx, req, p)
	if cerr := p.close(); err == nil {
		err = cerr
	}
	if errors.Is(err, download.ErrLength) {
		// The server sent more or less than the signed length.
		err = fmt.Errorf("%w: %w", verify.ErrVerification, err)
	}
	if err != nil {
		return err
	}
	pd.Validator = res.Validator
	if err := p.verify(); err != nil {
		return err
	}
	if err := w.Sync(); err != nil {
		return fmt.Errorf("sync slot %s: %w", slot.Name(), err)
	}
	if u.cfg.ReadBack {
		if err := readBack(ctx, slot, t, pd.Length); err != nil {
			return err
		}
	}
	return nil
}

// readBack re-reads the slot and verifies the image again.
func readBack(ctx context.Context, slot slots.Slot, t verify.Target, length int64) error {
	r, err := slot.Reader(ctx)
	if err != nil {
		return fmt.Errorf("read back slot %s: %w", slot.Name(), err)
	}
	defer r.Close()
	var v *verify.Verifier
	if d := t.Custom.Uncompressed; d != nil {
		v, err = verify.NewVerifier(d.Length, map[string][]byte{"sha256": mustHex(d.SHA256)})
	} else {
		v, err = verify.NewVerifier(t.Length, t.Hashes)
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(v, io.NewSectionReader(r, 0, length)); err != nil {
		return fmt.Errorf("read back slot %s: %w", slot.Name(), err)
	}
	if err := v.Verify(); err != nil {
		return fmt.Errorf("read back slot %s: %w", slot.Name(), err)
	}
	return nil
}

// Confirm runs at every start, before the application relies on an update.
// For each component with an armed trial it finds out where the device
// runs: on the trial slot, the health checks decide within ConfirmTimeout —
// pass commits, fail marks the slot bad, blocklists the release and
// restarts into the previous version; on the previous slot, the bootloader
// (or the start counter) fell back: the rollback is recorded and the
// release blocklisted. It returns an error wrapping ErrRolledBack when a
// trial failed.
func (u *Updater) Confirm(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	var restarts []string
	for i := range u.cfg.Components {
		c := &u.cfg.Components[i]
		restart, err := u.confirm(ctx, c)
		if err != nil {
			errs = append(errs, err)
		}
		if restart {
			restarts = append(restarts, c.Name)
		}
	}
	for _, name := range restarts {
		if err := u.restart(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (u *Updater) confirm(ctx context.Context, c *Component) (restart bool, err error) {
	cs := u.st.component(c.Name)
	var bs slots.BootStatus
	if sc, ok := c.Boot.(slots.StartCounter); ok && !u.cfg.ExternalStartCounter {
		bs, err = sc.CountStart(ctx)
	} else {
		bs, err = c.Boot.Status(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("updater: confirm %s: boot status: %w", c.Name, err)
	}
	if cc, ok := c.Boot.(slots.CanaryChecker); ok {
		if err := cc.CheckCanary(ctx); err != nil {
			return false, fmt.Errorf("updater: confirm %s: %w", c.Name, err)
		}
	}
	pd := cs.Pending
	if pd == nil {
		if bs.Trial != "" && bs.Booted == bs.Trial {
			// The boot control runs a trial the state knows nothing of (the
			// state file was lost). Judge it by health like any trial.
			pd = &pending{Phase: PhaseArmed, Slot: bs.Trial, Version: "unknown"}
			cs.Pending = pd
		} else {
			return false, nil
		}
	}
	if pd.Phase != PhaseArmed {
		// Crashed between Arm and saving "armed"? Only a boot of the
		// trial proves the Arm took: an Arm torn by a power cut can leave
		// a trial with no tries, which is not a fallback. Otherwise
		// Install redoes the Arm (or resumes the download).
		if bs.Booted == pd.Slot && bs.Primary != pd.Slot {
			pd.Phase = PhaseArmed
		} else {
			return false, nil
		}
	}
	version := pd.Version
	if bs.Booted != pd.Slot && bs.Trial == pd.Slot && bs.TriesLeft > 0 {
		// Armed, and not started yet: this process restarted before the
		// reboot (or application restart) that tries the new version.
		return false, nil
	}
	if bs.Booted != pd.Slot {
		// The trial never confirmed: the bootloader ran out of tries (or the
		// start counter swapped back) and the previous version runs.
		reason := fmt.Sprintf("slot %s never confirmed; fell back to slot %s", pd.Slot, bs.Booted)
		if err := c.Boot.MarkBad(ctx, pd.Slot); err != nil {
			return false, fmt.Errorf("updater: confirm %s: mark slot %s bad: %w", c.Name, pd.Slot, err)
		}
		u.rolledBack(c, cs, pd, StateArmed, reason)
		return false, fmt.Errorf("updater: confirm %s %s: %s: %w", c.Name, version, reason, ErrRolledBack)
	}

	u.changed(c.Name, StateArmed, StateConfirming, version, pd.TargetPath, "")
	if herr := u.runHealth(ctx, c); herr != nil {
		reason := herr.Error()
		if err := c.Boot.MarkBad(ctx, pd.Slot); err != nil {
			return false, fmt.Errorf("updater: confirm %s: health failed (%v) and mark bad failed: %w", c.Name, herr, err)
		}
		u.rolledBack(c, cs, pd, StateConfirming, reason)
		return true, fmt.Errorf("updater: confirm %s %s: %w: %w", c.Name, version, ErrRolledBack, herr)
	}
	if err := c.Boot.Commit(ctx, pd.Slot); err != nil {
		return false, fmt.Errorf("updater: confirm %s: commit slot %s: %w", c.Name, pd.Slot, err)
	}
	cs.Installed = pd.Version
	cs.InstalledTarget = pd.Target
	cs.Pending = nil
	cs.LastResult = fmt.Sprintf("%s committed", pd.Version)
	if err := u.st.save(); err != nil {
		return false, err
	}
	u.changed(c.Name, StateConfirming, StateCommitted, version, pd.TargetPath, "")
	return false, nil
}

func (u *Updater) rolledBack(c *Component, cs *componentState, pd *pending, from State, reason string) {
	u.st.block(pd.Target, BlockedRelease{Component: c.Name, Version: pd.Version, Reason: reason, At: u.now()})
	cs.Pending = nil
	cs.LastResult = fmt.Sprintf("%s rolled back: %s", pd.Version, reason)
	if err := u.st.save(); err != nil {
		u.log.Error("save state after rollback", "err", err)
		u.emit(ErrorEvent{Component: c.Name, Op: "save", Err: err})
	}
	u.changed(c.Name, from, StateRolledBack, pd.Version, pd.TargetPath, reason)
}

// healthChecks is the configured checks plus, unless skipped, the update
// server reachability check.
func (u *Updater) healthChecks() []health.HealthCheck {
	checks := slices.Clone(u.cfg.HealthChecks)
	if !u.cfg.SkipServerCheck {
		checks = append(checks, health.UpdateServerReachable(func(ctx context.Context) error {
			_, err := u.tuf.Refresh(ctx)
			return err
		}))
	}
	return checks
}

func (u *Updater) runHealth(ctx context.Context, c *Component) error {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.ConfirmTimeout)
	defer cancel()
	err := health.Run(ctx, u.healthChecks(), func(r health.Result) {
		u.emit(HealthResult{Component: c.Name, Check: r.Name, Err: r.Err, Duration: r.Duration})
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHealth, err)
	}
	return nil
}

// Run confirms any pending trial, then checks and installs updates every
// PollInterval (spread by PollJitter) until ctx is done. Errors back off
// exponentially, up to PollInterval, and are reported as events.
func (u *Updater) Run(ctx context.Context) error {
	if err := u.Confirm(ctx); err != nil {
		u.log.Warn("confirm", "err", err)
	}
	backoff := time.Duration(0)
	for {
		err := u.RunOnce(ctx)
		wait := u.cfg.PollInterval
		switch {
		case err == nil, errors.Is(err, ErrNoUpdate):
			backoff = 0
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			u.emit(ErrorEvent{Op: "run", Err: err})
			u.log.Warn("update cycle failed", "err", err)
			backoff = min(max(2*backoff, 10*time.Second), u.cfg.PollInterval)
			wait = backoff
		}
		if u.cfg.PollJitter > 0 {
			wait += rand.N(u.cfg.PollJitter)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RunOnce checks for updates and installs each one found.
func (u *Updater) RunOnce(ctx context.Context) error {
	ups, err := u.Check(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, up := range ups {
		if err := u.Install(ctx, up); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Status is a snapshot of what the updater knows, for display and support.
type Status struct {
	Components []ComponentStatus
	// Blocklist lists releases that failed, oldest first.
	Blocklist []BlockedRelease
}

// ComponentStatus is one component's part of a Status.
type ComponentStatus struct {
	Name string
	// Installed is the committed version.
	Installed string
	// Boot is what the boot control reports (BootErr when it failed).
	Boot    slots.BootStatus
	BootErr error
	// Pending describes an install in progress or a trial awaiting
	// confirmation; nil when there is none.
	Pending *PendingStatus
	// Slots maps slot names to the version each holds ("" when unknown,
	// with Complete false while an image is being written).
	Slots map[string]SlotStatus
	// LastResult summarises the last finished update.
	LastResult string
}

// PendingStatus describes an install that has not finished.
type PendingStatus struct {
	Phase   Phase
	Slot    string
	Version string
	Target  string
	Done    int64
	Total   int64
}

// SlotStatus is what the updater knows a slot holds.
type SlotStatus struct {
	Version  string
	Target   string
	Complete bool
}

// Status reports each component's installed version, boot state, pending
// install and slot contents, and the blocklist. It does no network I/O.
func (u *Updater) Status(ctx context.Context) (Status, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var st Status
	for _, c := range u.cfg.Components {
		cs := u.st.component(c.Name)
		s := ComponentStatus{Name: c.Name, Installed: cs.Installed, LastResult: cs.LastResult, Slots: map[string]SlotStatus{}}
		s.Boot, s.BootErr = c.Boot.Status(ctx)
		if pd := cs.Pending; pd != nil {
			s.Pending = &PendingStatus{Phase: pd.Phase, Slot: pd.Slot, Version: pd.Version, Target: pd.TargetPath, Done: pd.Offset, Total: pd.Length}
		}
		for name, sc := range cs.Slots {
			s.Slots[name] = SlotStatus{Version: sc.Version, Target: sc.Target, Complete: sc.Complete}
		}
		st.Components = append(st.Components, s)
	}
	st.Blocklist = u.st.blocklist()
	return st, nil
}
