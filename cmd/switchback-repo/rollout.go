package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// cmdRollout sets, halts, resumes or clears the staged rollout of a
// release target (see verify.Rollout).
func cmdRollout(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("rollout", "TARGET", stderr)
	start := fs.String("start", "now", "when the ramp starts: RFC 3339 time or \"now\"")
	rampFlag := fs.String("ramp", "0s=1,24h=10,72h=100", "ramp points AFTER=PERCENT, comma-separated; the share grows linearly between points")
	salt := fs.String("salt", "", "salt of the release's cohorts (default: random)")
	halt := fs.Bool("halt", false, "halt the rollout: devices that have the release keep it, no other takes it")
	resume := fs.Bool("resume", false, "resume a halted rollout, keeping its start, ramp and salt")
	clear := fs.Bool("clear", false, "remove the rollout: every device may take the release")
	noPublish := fs.Bool("no-publish", false, "stage the change only")
	if code := parseFlags(fs, args, exactly(1)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "rollout", err)
	}
	tpath := fs.Arg(0)
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	ro, err := rolloutFor(r, tpath, rolloutFlags{start: *start, ramp: *rampFlag, salt: *salt,
		halt: *halt, resume: *resume, clear: *clear, newRamp: explicit["ramp"] || explicit["start"] || explicit["salt"]})
	if err != nil {
		return fail(stderr, "rollout", fmt.Errorf("%w: %w", errUsage, err))
	}
	if err := r.SetRollout(tpath, ro); err != nil {
		return fail(stderr, "rollout", fmt.Errorf("%w: %w", errUsage, err))
	}
	fmt.Fprintf(stdout, "%s: %s\n", tpath, describeRollout(ro))
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "rollout", stdout, stderr)
}

type rolloutFlags struct {
	start, ramp, salt   string
	halt, resume, clear bool
	newRamp             bool // -start, -ramp or -salt given
}

// rolloutFor returns the rollout the flags ask for target tpath: a new
// one, or the current one halted or resumed; nil for -clear.
func rolloutFor(r *repository.Repo, tpath string, f rolloutFlags) (*verify.Rollout, error) {
	n := 0
	for _, b := range []bool{f.halt, f.resume, f.clear} {
		if b {
			n++
		}
	}
	if n > 1 || (n == 1 && f.newRamp && !f.halt) {
		return nil, fmt.Errorf("-halt, -resume and -clear exclude each other, and -resume and -clear take no -start, -ramp or -salt")
	}
	if f.clear {
		return nil, nil
	}
	cur, err := currentRollout(r, tpath)
	if err != nil {
		return nil, err
	}
	if f.resume || (f.halt && !f.newRamp && cur != nil) {
		if cur == nil {
			return nil, fmt.Errorf("target %q has no rollout to resume", tpath)
		}
		cur.Halted = f.halt
		return cur, nil
	}
	ro, err := newRollout(f)
	if err != nil {
		return nil, err
	}
	ro.Halted = f.halt
	return ro, nil
}

func currentRollout(r *repository.Repo, tpath string) (*verify.Rollout, error) {
	tg, err := r.Target(tpath)
	if err != nil {
		return nil, err
	}
	c, err := verify.ParseCustom(tg.Custom)
	if err != nil {
		return nil, err
	}
	return c.Rollout, nil
}

func newRollout(f rolloutFlags) (*verify.Rollout, error) {
	ro := &verify.Rollout{Salt: f.salt}
	if f.start == "now" {
		ro.Start = time.Now().UTC().Truncate(time.Second)
	} else {
		t, err := time.Parse(time.RFC3339, f.start)
		if err != nil {
			return nil, fmt.Errorf("-start: %w", err)
		}
		ro.Start = t
	}
	if ro.Salt == "" {
		b := make([]byte, 8)
		rand.Read(b)
		ro.Salt = hex.EncodeToString(b)
	}
	ramp, err := parseRamp(f.ramp)
	if err != nil {
		return nil, err
	}
	ro.Ramp = ramp
	return ro, ro.Validate()
}

// parseRamp parses "0s=1,24h=10,72h=100".
func parseRamp(s string) ([]verify.RampPoint, error) {
	var pts []verify.RampPoint
	for _, el := range strings.Split(s, ",") {
		after, pct, ok := strings.Cut(strings.TrimSpace(el), "=")
		if !ok {
			return nil, fmt.Errorf("-ramp: %q is not AFTER=PERCENT", el)
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(pct, "%"), 64)
		if err != nil {
			return nil, fmt.Errorf("-ramp: %q: %w", el, err)
		}
		pts = append(pts, verify.RampPoint{After: after, Percent: p})
	}
	return pts, nil
}

func describeRollout(ro *verify.Rollout) string {
	if ro == nil {
		return "no rollout (every device may take it)"
	}
	var pts []string
	for _, p := range ro.Ramp {
		pts = append(pts, fmt.Sprintf("%g%% after %s", p.Percent, p.After))
	}
	s := fmt.Sprintf("rollout from %s, salt %s: %s", ro.Start.Format(time.RFC3339), ro.Salt, strings.Join(pts, ", "))
	if ro.Halted {
		s += " (HALTED)"
	}
	return s
}

// cmdChannels sets the channels a release target is published on.
func cmdChannels(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("channels", "TARGET [CHANNEL...]", stderr)
	noPublish := fs.Bool("no-publish", false, "stage the change only")
	if code := parseFlags(fs, args, atLeast(1)); code >= 0 {
		return code
	}
	r, err := g.open()
	if err != nil {
		return fail(stderr, "channels", err)
	}
	tpath, chans := fs.Arg(0), fs.Args()[1:]
	if err := r.SetChannels(tpath, chans); err != nil {
		return fail(stderr, "channels", fmt.Errorf("%w: %w", errUsage, err))
	}
	if len(chans) == 0 {
		fmt.Fprintf(stdout, "%s: on every channel\n", tpath)
	} else {
		fmt.Fprintf(stdout, "%s: on channels %s\n", tpath, strings.Join(chans, ", "))
	}
	if *noPublish {
		return exitOK
	}
	return publish(ctx, r, "channels", stdout, stderr)
}
