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
	// FullRefreshInterval is how long checks that find the repository's
	// timestamp unchanged may skip the walk of the root chain: such an idle
	// check is one request (a 304 with no body from servers that send
	// ETags). Zero means verify.DefaultFullRefreshInterval (24h); negative
	// makes every check a full TUF refresh. See verify.Config.
	FullRefreshInterval time.Duration
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
