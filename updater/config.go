package updater

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// Component is one updatable part of the device: a root filesystem on A/B
// partitions, an application binary, a configuration directory.
type Component struct {
	// Name matches the "component" of the TUF targets that update it,
	// unless Release is set. It names the component in the state, events
	// and errors, and is unique on the device.
	Name string
	// Release, when set, is the "component" of the TUF targets that update
	// it, so that several components (sensor-01 … sensor-50 behind a
	// gateway) follow one release line while their state — installed
	// version, trial, blocklist — stays their own. A target that several
	// components install is fetched from the network once (see
	// "Heterogeneous devices" in the package doc).
	Release string
	// Hardware, when set, is this component's hardware id, replacing
	// Config.Hardware in its selection: a gateway updates microcontrollers
	// of other kinds than its own.
	Hardware string
	// Slots are the places the component's images are written, at least
	// two (A/B). Images go to a slot that is not running.
	Slots []slots.Slot
	// Boot decides which slot runs.
	Boot slots.BootControl
	// FactoryVersion is the version installed before switchback's first
	// update (the state file has none yet).
	FactoryVersion string
	// Pin holds the component at one version (the operator's "hold"):
	// only the release of exactly this version is installed, none newer.
	// A pin below the installed version is installed only with
	// AllowDowngrade. "" follows the channel.
	Pin string
}

// release is the TUF component name of c's targets.
func (c *Component) release() string {
	if c.Release != "" {
		return c.Release
	}
	return c.Name
}

// hardware is the hardware id c's targets must list.
func (c *Component) hardware(cfg *Config) string {
	if c.Hardware != "" {
		return c.Hardware
	}
	return cfg.Hardware
}

// shared reports whether another component of cfg follows c's release
// line: its targets are then staged (see staging.go).
func (c *Component) shared(cfg *Config) bool {
	for i := range cfg.Components {
		o := &cfg.Components[i]
		if o.Name != c.Name && o.release() == c.release() {
			return true
		}
	}
	return false
}

// Config configures an Updater. The zero value of every optional field is
// a sensible default. New refuses negative durations and limits (except
// FullRefreshInterval, see there) and a FactoryVersion that is not a
// semantic version.
type Config struct {
	// Hardware is the device's hardware id; only targets listing it (or
	// "*") are installed, except for a Component with its own Hardware.
	// Required.
	Hardware string
	// DeviceID is the device's stable id; it decides the device's cohort
	// in staged rollouts (verify.Rollout) and is never sent anywhere. ""
	// reads DeviceIDFile. A device without an id takes a release under a
	// rollout only once the rollout reaches 100 %.
	DeviceID string
	// DeviceIDFile is read for the id when DeviceID is "" (surrounding
	// white space trimmed); default /etc/machine-id.
	DeviceIDFile string
	// Channel is the release channel the device follows ("stable",
	// "beta", a customer's name); "" is verify.DefaultChannel. Releases
	// that list no channel are on every channel.
	Channel string
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
	// ConfirmTimeout bounds the health checks at confirmation (default 2m):
	// at the deadline a check still running, even one that ignores its
	// context, counts as failed and the trial is rolled back.
	ConfirmTimeout time.Duration
	// Tries is how many starts a new version gets before the previous one
	// runs again (default 3).
	Tries int
	// ExternalStartCounter is set when another process (switchback guard
	// in ExecStartPre) counts the application's starts for boot controls
	// that implement slots.StartCounter; Confirm then does not count.
	ExternalStartCounter bool
	// AllowDowngrade lets a lower version be installed when nothing at or
	// above the installed version is published for this hardware (the
	// installed release was pulled); while it is published, the device
	// stays on it. See verify.Policy.
	AllowDowngrade bool
	// ReadBack re-reads every slot after writing and verifies the bytes
	// again, catching storage that acknowledges writes it lost.
	ReadBack bool

	// Restart is called after a component's new version is armed, or after
	// a failed trial was rolled back, to start the version that is now
	// selected: reboot the device for A/B partitions, restart the
	// application for file and directory slots. Nil, or an error: Install,
	// Confirm and Run return an error wrapping ErrRestartRequired, and the
	// caller restarts (see the package example).
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
	// second (0: unlimited). Pause, when set, is called before every
	// request and between chunks, and may block while the link is metered;
	// it may be called from several goroutines at once (a container
	// registry's requests run concurrently), so it must be safe for that.
	StallTimeout time.Duration
	RateLimit    int64
	Pause        func(ctx context.Context) error
	// LowSpeedLimit and LowSpeedTime drop and resume a transfer that
	// receives fewer than LowSpeedLimit bytes per second over LowSpeedTime
	// on the network (like curl's --speed-limit and --speed-time), so that
	// a server dripping bytes cannot hold an install; defaults 1 KiB/s
	// over 30s, a negative LowSpeedLimit turns the check off. Lower it for
	// links slower than 1 KiB/s.
	LowSpeedLimit int64
	LowSpeedTime  time.Duration
	// MetadataTimeout bounds the fetch of one TUF metadata file (or other
	// small file) from one mirror, retries included (default 5m; negative:
	// no bound but the caller's context). The next mirror is then tried.
	MetadataTimeout time.Duration
	// CAFile is a PEM bundle of the authorities trusted for the update
	// servers (empty: the system roots). CertFile and KeyFile are a client
	// certificate and key for mutual TLS, read again when either file
	// changes, so a renewed certificate is used without a restart. TLS 1.2
	// is the minimum. Not used with HTTPClient, which carries its own TLS.
	CAFile, CertFile, KeyFile string
	// LockTimeout is how long New waits for another process (or Updater)
	// to release the StateDir before it fails with ErrStateDirLocked
	// (default 0: it fails at once).
	LockTimeout time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Events receives typed events, in the order they happened, from one
	// goroutine at a time (not necessarily the caller's) and never under
	// the updater's lock: it may call any method of the Updater. The
	// events of a method are delivered before it returns, except for a
	// method called from Events itself (they follow once the callback
	// returns). A slow callback does not slow the updater: Progress events
	// not yet delivered collapse into the latest one.
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
	// TargetPrefixes, when set, limits each check to the targets whose
	// paths start with one of them, so that only the delegated roles that
	// may list such paths are fetched: with a repository laid out as
	// <component>/<hardware>/<file> and one delegated role per hardware
	// family, a device lists "rootfs/board-a/", "app/board-a/" and
	// fetches its own roles, not every vendor's (see package verify,
	// "Delegations"). Empty lists every target of the repository.
	TargetPrefixes []string
}

// downloadConfig is the configuration of the one download client every
// byte the updater fetches goes through.
func (c *Config) downloadConfig(log *slog.Logger) download.Config {
	dc := download.Config{HTTPClient: c.HTTPClient, Logger: log,
		StallTimeout: c.StallTimeout, RateLimit: c.RateLimit, Pause: c.Pause,
		LowSpeedLimit: c.LowSpeedLimit, LowSpeedTime: c.LowSpeedTime, MetadataTimeout: c.MetadataTimeout}
	if c.HTTPClient == nil {
		dc.TLS = download.TLSConfig{CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
	}
	return dc
}

func (c *Config) validate() error {
	var errs []error
	if c.Hardware == "" {
		errs = append(errs, errors.New("Config.Hardware is required"))
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
	if c.Channel != "" && !verify.ValidChannel(c.Channel) {
		errs = append(errs, fmt.Errorf("Config.Channel %q must be 1 to 64 of [a-z0-9._-]", c.Channel))
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
		if comp.Pin != "" && !verify.ValidVersion(comp.Pin) {
			errs = append(errs, fmt.Errorf("component %q: Pin %q is not a semantic version", comp.Name, comp.Pin))
		}
		if comp.Boot == nil {
			errs = append(errs, fmt.Errorf("component %q: Boot is required", comp.Name))
		}
		if comp.FactoryVersion != "" && !verify.ValidVersion(comp.FactoryVersion) {
			errs = append(errs, fmt.Errorf("component %q: FactoryVersion %q is not a semantic version", comp.Name, comp.FactoryVersion))
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
		errs = append(errs, fmt.Errorf("Config.Tries %d out of range 1..9", c.Tries))
	}
	errs = append(errs, c.validateDurations()...)
	if c.RateLimit < 0 {
		errs = append(errs, fmt.Errorf("RateLimit %d is negative (0 means unlimited)", c.RateLimit))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("updater: invalid config: %w", err)
	}
	return nil
}

// setDefaults fills in the defaults of the zero values.
func (c *Config) setDefaults() {
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = 2 * time.Minute
	}
	if c.Tries == 0 {
		c.Tries = 3
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Hour
	}
	if c.PollJitter == 0 {
		c.PollJitter = c.PollInterval / 10
	}
}

// validateDurations refuses negative durations, whose zero value is the
// default: a negative PollInterval polled in a busy loop, a negative
// ConfirmTimeout rolled back every healthy release. FullRefreshInterval is
// not among them: a negative one is documented (every check is full).
func (c *Config) validateDurations() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"PollInterval", c.PollInterval},
		{"PollJitter", c.PollJitter},
		{"ConfirmTimeout", c.ConfirmTimeout},
		{"StallTimeout", c.StallTimeout},
		{"LockTimeout", c.LockTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative (0 means the default)", d.name, d.v))
		}
	}
	return errs
}
