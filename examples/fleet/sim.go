package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// Config is one simulation. Durations are virtual time.
type Config struct {
	Devices    int
	Duration   time.Duration      // length of the run
	ReleaseAt  time.Duration      // when the new release is published
	Ramp       []verify.RampPoint // the release's rollout ramp; nil publishes it to everyone at once
	Poll       time.Duration      // the updater's PollInterval
	Jitter     time.Duration      // the updater's PollJitter
	Offline    float64            // share of the fleet offline at any time
	OfflineFor time.Duration      // mean length of an offline spell
	TargetSize int                // real bytes of the release served by nginx
	ImageSize  int64              // modelled bytes of the release: a download lasts ImageSize/LinkRate
	LinkRate   float64            // modelled bits per second of each device's link
	Refresh    time.Duration      // the publisher re-signs snapshot and timestamp this often (cron)
	Window     time.Duration      // virtual time processed between two publisher steps
	Workers    int                // devices checked in parallel
	Seed       uint64
}

// downloadTime is how long a download lasts in virtual time.
func (c Config) downloadTime() time.Duration {
	return time.Duration(float64(c.ImageSize) * 8 / c.LinkRate * float64(time.Second))
}

const (
	component = "rootfs"
	hardware  = "sim-board"
	oldVer    = "1.0.0"
	newVer    = "1.1.0"
)

// epoch is virtual time zero: fixed, so that runs are reproducible.
var epoch = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

// scenario is one run: a repository served by nginx, a fleet, the
// publisher's virtual clock and what was measured.
type scenario struct {
	name    string
	cfg     Config
	repo    *repository.Repo
	root    []byte
	metaURL string
	tgtURL  string
	rt      http.RoundTripper
	pubNow  time.Duration // the publisher's virtual clock
	devices []*device
	st      *stats
}

// newScenario creates the repository (release 1.0.0, which every device
// runs) under www/name, served by nginx at base, and the fleet.
func newScenario(ctx context.Context, name string, cfg Config, www, stateDir, base string, rt http.RoundTripper) (*scenario, error) {
	s := &scenario{name: name, cfg: cfg, rt: rt, st: newStats(cfg)}
	repoDir := filepath.Join(www, name)
	var err error
	s.repo, err = repository.Init(ctx, repository.Config{Dir: repoDir, Now: s.now},
		repository.InitOptions{KeysDir: filepath.Join(stateDir, name+"-keys")})
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	if _, err := s.repo.AddTarget(ctx, "rootfs/rootfs-"+oldVer+".img", bytes.NewReader(image(oldVer, cfg.TargetSize)),
		verify.Custom{Component: component, Version: oldVer, Hardware: []string{hardware}}, repository.AddOptions{}); err != nil {
		return nil, err
	}
	if err := s.repo.Publish(ctx); err != nil {
		return nil, err
	}
	if s.root, err = os.ReadFile(filepath.Join(s.repo.MetadataDir(), "1.root.json")); err != nil {
		return nil, err
	}
	s.metaURL = base + "/" + name + "/" + repository.MetadataPath
	s.tgtURL = base + "/" + name + "/" + repository.TargetsPath
	rng := rand.New(rand.NewPCG(cfg.Seed, 0))
	s.devices = make([]*device, cfg.Devices)
	for i := range s.devices {
		if s.devices[i], err = s.newDevice(i, filepath.Join(stateDir, name, fmt.Sprintf("d%05d", i)), rng); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *scenario) now() time.Time { return epoch.Add(s.pubNow) }

// image returns the deterministic bytes of a release.
func image(version string, size int) []byte {
	b := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte([]byte(fmt.Sprintf("%-32s", version)))).Read(b)
	return b
}

// release publishes the new release, with the configured ramp if any.
func (s *scenario) release(ctx context.Context) error {
	p := "rootfs/rootfs-" + newVer + ".img"
	if _, err := s.repo.AddTarget(ctx, p, bytes.NewReader(image(newVer, s.cfg.TargetSize)),
		verify.Custom{Component: component, Version: newVer, Hardware: []string{hardware}}, repository.AddOptions{}); err != nil {
		return err
	}
	if s.cfg.Ramp != nil {
		ro := &verify.Rollout{Start: s.now(), Salt: "sim-" + newVer, Ramp: s.cfg.Ramp}
		if err := s.repo.SetRollout(p, ro); err != nil {
			return err
		}
	}
	return s.repo.Publish(ctx)
}

// run advances virtual time window by window: the publisher acts at the
// start of a window (release, the cron's re-signing), then every device
// event inside the window runs, devices in parallel, each at its own
// exact virtual time.
func (s *scenario) run(ctx context.Context, progress func(string)) error {
	w := s.cfg.Window
	released := false
	nextRefresh := s.cfg.Refresh
	lastReport := time.Duration(0)
	for t := time.Duration(0); t < s.cfg.Duration; t += w {
		s.pubNow = t
		if !released && t >= s.cfg.ReleaseAt {
			if err := s.release(ctx); err != nil {
				return fmt.Errorf("publish %s at %v: %w", newVer, t, err)
			}
			released = true
		}
		if t >= nextRefresh {
			if err := s.repo.Refresh(ctx); err != nil {
				return fmt.Errorf("re-sign at %v: %w", t, err)
			}
			nextRefresh += s.cfg.Refresh
		}
		if err := s.window(ctx, t, min(t+w, s.cfg.Duration)); err != nil {
			return err
		}
		if progress != nil && t-lastReport >= 6*time.Hour {
			lastReport = t
			progress(fmt.Sprintf("%s: virtual %v, %d checks", s.name, t, s.st.checks.Load()))
		}
	}
	for _, d := range s.devices { // downloads still under way end with the run
		d.stop(s.cfg.Duration, s.st)
	}
	return nil
}

// window runs every device event in [from, to) with cfg.Workers workers.
func (s *scenario) window(ctx context.Context, from, to time.Duration) error {
	work := make(chan *device)
	errc := make(chan error, s.cfg.Workers)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Go(func() {
			for d := range work {
				if err := d.advance(ctx, s, to); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		})
	}
	for _, d := range s.devices {
		if d.next() < to {
			work <- d
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}

// exp draws an exponentially distributed duration of the given mean.
func exp(r *rand.Rand, mean time.Duration) time.Duration {
	return time.Duration(r.ExpFloat64() * float64(mean))
}

// fetchTarget downloads a target's real bytes from nginx and checks them
// against the trusted length and hashes, as a device does before it
// writes a slot.
func fetchTarget(ctx context.Context, hc *http.Client, t verify.Target) error {
	v, err := t.Verifier()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", t.URL, resp.Status)
	}
	if _, err := io.Copy(v, io.LimitReader(resp.Body, t.Length+1)); err != nil {
		return err
	}
	return v.Verify()
}

// clampHour is the virtual hour of t, within [0, hours).
func clampHour(t time.Duration, hours int) int {
	h := int(t / time.Hour)
	return max(0, min(h, hours-1))
}

func ceilHours(d time.Duration) int { return int(math.Ceil(d.Hours())) }
