// Command fleet simulates a fleet of devices updating from one real nginx:
// N devices (default 10,000), each with its own verify.Client and trusted
// metadata, check a TUF repository made with package repository, on a
// virtual clock, so that a simulated day takes minutes. A release is
// published mid-run, once with a 72 h staged rollout and once without, and
// the program prints what the server sees (requests per device-hour, bytes
// per idle check, bytes per hour, peak concurrent downloads) and the share
// of the fleet on the new release by hour, and draws the download and
// adoption curves as a PNG. See README.md for the model.
//
// Usage:
//
//	go run ./examples/fleet [-devices 10000] [-hours 84] [-png fleet.png]
//
// It needs nginx (Debian package nginx); everything it serves and the
// devices' state live in a temporary directory (in /dev/shm when present)
// removed at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// options are the command line.
type options struct {
	base        Config
	ramp        string        // the staged rollout's ramp, "0s=1,24h=10,72h=100"
	noRampHours time.Duration // length of the run without a ramp
	png         string
	work        string
	keep        bool
	cpuProfile  string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if _, err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		pprof.StopCPUProfile()
		stop()
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	c := &o.base
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Devices, "devices", 10000, "devices in the fleet")
	fs.DurationVar(&c.Duration, "hours", 84*time.Hour, "virtual length of the run with the ramp")
	fs.DurationVar(&o.noRampHours, "noramp-hours", 30*time.Hour, "virtual length of the run without a ramp")
	fs.DurationVar(&c.ReleaseAt, "release-at", 6*time.Hour, "virtual time the new release is published")
	fs.StringVar(&o.ramp, "ramp", "0s=1,24h=10,72h=100", "staged rollout ramp AFTER=PERCENT,...")
	fs.DurationVar(&c.Poll, "poll", time.Hour, "updater PollInterval")
	fs.DurationVar(&c.Jitter, "jitter", -1, "updater PollJitter (default: a tenth of -poll, as the updater)")
	fs.Float64Var(&c.Offline, "offline", 0.1, "share of the fleet offline at any time")
	fs.DurationVar(&c.OfflineFor, "offline-for", time.Hour, "mean length of an offline spell")
	targetKiB := fs.Int("target-kib", 64, "real size of the release nginx serves, KiB")
	imageMiB := fs.Float64("image-mib", 256, "modelled size of the release: how long a download lasts, MiB")
	linkMbit := fs.Float64("link-mbit", 2, "modelled link speed of each device, Mbit/s")
	fs.DurationVar(&c.Refresh, "refresh", 12*time.Hour, "the publisher re-signs snapshot and timestamp this often")
	fs.DurationVar(&c.Window, "window", time.Minute, "virtual time between two publisher steps")
	fs.IntVar(&c.Workers, "workers", 8, "devices checked in parallel")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed")
	fs.StringVar(&o.png, "png", "fleet.png", "where to draw the curves")
	fs.StringVar(&o.work, "work", "", "work directory (default: a new one in /dev/shm or $TMPDIR)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the simulator's CPU profile here")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if c.Jitter < 0 {
		c.Jitter = c.Poll / 10
	}
	c.TargetSize = *targetKiB << 10
	c.ImageSize = int64(*imageMiB * (1 << 20))
	c.LinkRate = *linkMbit * 1e6
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "fleet:", err)
		return o, err
	}
	return o, nil
}

func (o options) validate() error {
	c := o.base
	switch {
	case c.Devices <= 0, c.Workers <= 0, c.TargetSize <= 0, c.ImageSize <= 0, c.LinkRate <= 0:
		return fmt.Errorf("-devices, -workers, -target-kib, -image-mib and -link-mbit must be positive")
	case c.Poll <= 0, c.Jitter < 0, c.Window <= 0, c.Refresh <= 0:
		return fmt.Errorf("-poll, -window and -refresh must be positive, -jitter not negative")
	case c.Offline < 0 || c.Offline >= 1, c.OfflineFor <= 0:
		return fmt.Errorf("-offline must be in [0, 1), -offline-for positive")
	case c.ReleaseAt >= c.Duration, c.ReleaseAt >= o.noRampHours:
		return fmt.Errorf("-release-at must be within -hours and -noramp-hours")
	}
	_, err := parseRamp(o.ramp)
	return err
}

// parseRamp reads "AFTER=PERCENT,..." into a ramp and validates it.
func parseRamp(s string) ([]verify.RampPoint, error) {
	var ramp []verify.RampPoint
	for el := range strings.SplitSeq(s, ",") {
		after, pct, ok := strings.Cut(el, "=")
		p, err := strconv.ParseFloat(pct, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("-ramp: %q is not AFTER=PERCENT", el)
		}
		ramp = append(ramp, verify.RampPoint{After: after, Percent: p})
	}
	ro := verify.Rollout{Start: epoch, Salt: "check", Ramp: ramp}
	if err := ro.Validate(); err != nil {
		return nil, fmt.Errorf("-ramp: %w", err)
	}
	return ramp, nil
}
