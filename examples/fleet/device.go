package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// device is one simulated device: its own verify.Client (its own trusted
// metadata in its own directory), its own virtual clock reading, its
// updater's polling schedule, its link going down and up.
type device struct {
	id     string
	client *verify.Client
	rng    *rand.Rand
	rt     http.RoundTripper

	now time.Duration // the device clock: virtual time of the event being handled
	cur *usage        // where the requests of the current check are counted

	online     bool
	nextPoll   time.Duration
	nextToggle time.Duration
	backoff    time.Duration

	downloading bool
	dlStart     time.Duration // start of the current stretch of download, while online
	dlLeft      time.Duration // download time still to go
	pending     verify.Target

	installed   string
	installedAt time.Duration // -1 until the new release is installed
	tsVersion   int64         // timestamp version seen at the last check
}

func (s *scenario) newDevice(i int, dir string, rng *rand.Rand) (*device, error) {
	d := &device{
		id:          fmt.Sprintf("sim-device-%05d", i),
		rng:         rand.New(rand.NewPCG(s.cfg.Seed, uint64(i)+1)),
		rt:          s.rt,
		online:      rng.Float64() >= s.cfg.Offline,
		installed:   oldVer,
		installedAt: -1,
	}
	d.nextPoll = time.Duration(d.rng.Int64N(int64(s.cfg.Poll))) // devices booted at random times
	d.nextToggle = d.spell(s.cfg)
	var err error
	d.client, err = verify.New(verify.Config{
		Root:        s.root,
		MetadataURL: s.metaURL,
		TargetsURL:  s.tgtURL,
		Dir:         dir,
		Now:         func() time.Time { return epoch.Add(d.now) },
		MinTime:     epoch.Add(-24 * time.Hour), // the firmware's build time
		Fetcher: func(ctx context.Context) verify.Fetcher {
			return verify.NewHTTPFetcher(ctx, &http.Client{Transport: &countingRT{base: d.rt, u: d.cur}})
		},
	})
	return d, err
}

// spell draws how long the device stays in its current state (online or
// offline) from d.now: exponential, with means such that cfg.Offline of
// the fleet is offline at any time.
func (d *device) spell(cfg Config) time.Duration {
	mean := cfg.OfflineFor
	if d.online {
		if cfg.Offline <= 0 {
			return time.Duration(1<<62 - 1)
		}
		mean = time.Duration(float64(cfg.OfflineFor) * (1 - cfg.Offline) / cfg.Offline)
	}
	return d.now + max(exp(d.rng, mean), time.Second)
}

// dlEnd is when the download under way ends if the link stays up.
func (d *device) dlEnd() time.Duration {
	if !d.downloading || !d.online {
		return 1<<63 - 1
	}
	return d.dlStart + d.dlLeft
}

// next is the time of the device's next event.
func (d *device) next() time.Duration { return min(d.nextPoll, d.nextToggle, d.dlEnd()) }

// advance handles the device's events before to, in time order.
func (d *device) advance(ctx context.Context, s *scenario, to time.Duration) error {
	for {
		t := d.next()
		if t >= to {
			return nil
		}
		d.now = t
		switch t {
		case d.dlEnd():
			d.finish(s)
		case d.nextToggle:
			d.toggle(s)
		default:
			if err := d.poll(ctx, s); err != nil {
				return fmt.Errorf("%s at %v: %w", d.id, t, err)
			}
		}
	}
}

// toggle takes the link down or up. A download pauses while the link is
// down and resumes (an HTTP Range request in a real device) when it is up.
func (d *device) toggle(s *scenario) {
	if d.online && d.downloading {
		s.st.download(d.dlStart, d.now)
		d.dlLeft -= d.now - d.dlStart
	}
	d.online = !d.online
	if d.online && d.downloading {
		d.dlStart = d.now
	}
	d.nextToggle = d.spell(s.cfg)
}

// finish installs the downloaded release.
func (d *device) finish(s *scenario) {
	s.st.download(d.dlStart, d.now)
	d.downloading = false
	d.installed = d.pending.Custom.Version
	d.installedAt = d.now
	d.pending = verify.Target{}
}

// stop ends the run for the device: a download under way is counted up to
// the end of the run.
func (d *device) stop(end time.Duration, st *stats) {
	if d.downloading && d.online {
		st.download(d.dlStart, end)
	}
}

// poll is one turn of the updater's Run loop: a check, or, with the link
// down, a failure that backs off as Run does (10 s doubling up to the poll
// interval).
func (d *device) poll(ctx context.Context, s *scenario) error {
	cfg := s.cfg
	wait := cfg.Poll
	switch {
	case !d.online:
		s.st.offlineChecks.Add(1)
		d.backoff = min(max(2*d.backoff, 10*time.Second), cfg.Poll)
		wait = d.backoff
	case d.downloading:
		// The updater is busy installing; it polls again afterwards.
	default:
		d.backoff = 0
		if err := d.check(ctx, s); err != nil {
			return err
		}
	}
	if cfg.Jitter > 0 {
		wait += time.Duration(d.rng.Int64N(int64(cfg.Jitter)))
	}
	d.nextPoll = d.now + wait
	return nil
}

// check refreshes the device's trusted metadata from nginx and, when the
// new release is offered to it (its bucket under the ramp at its trusted
// time), downloads and verifies the release's real bytes.
func (d *device) check(ctx context.Context, s *scenario) error {
	u := &usage{}
	d.cur = u
	ts, err := d.client.Refresh(ctx)
	d.cur = nil
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	t, err := verify.Select(ts.Targets, verify.Policy{
		Component: component, Hardware: hardware, Installed: d.installed,
		DeviceID: d.id, Now: epoch.Add(d.now),
	})
	switch {
	case errors.Is(err, verify.ErrNoUpdate), errors.Is(err, verify.ErrIncompatible):
		idle := ts.TimestampVersion == d.tsVersion
		d.tsVersion = ts.TimestampVersion
		s.st.check(d.now, *u, idle)
		return nil
	case err != nil:
		return err
	}
	d.tsVersion = ts.TimestampVersion
	s.st.check(d.now, *u, false)
	dl := &usage{}
	if err := fetchTarget(ctx, &http.Client{Transport: &countingRT{base: d.rt, u: dl}}, t); err != nil {
		return fmt.Errorf("download %s: %w", t.Path, err)
	}
	s.st.fetched(d.now, *dl)
	d.downloading, d.pending = true, t
	d.dlStart, d.dlLeft = d.now, s.cfg.downloadTime()
	return nil
}
