package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// powercutTimeout bounds one cycle's wait for its cut, and then its
// recovery: boots, the rest of the download, the trial boot and the commit.
// About 4 minutes on a quiet 2-core machine; TCG guests starved of CPU
// (a load of 40 on 2 cores was seen) take several times longer, and a
// timeout must mean the device is stuck, not the host busy.
const powercutTimeout = 20 * time.Minute

// powercutRequests is the range of a cut: a fresh device's update to
// v2.0.0 issues about 280-340 write and flush requests from power-on to
// the commit (172 writes and 103 flushes in one recording, 218 and 124 in
// another), so a cut at a request drawn from 1..powercutRequests lands
// anywhere in the flow; after a cut, the next boot's cut lands anywhere in
// the recovery (or not at all when the device commits first).
const powercutRequests = 300

// cutsPerCycle is how many times one device may lose power before it is
// left to finish: each boot after a cut gets a cut of its own, so the
// power also goes during resumed downloads, trial boots after a cut, and
// commits being redone.
const cutsPerCycle = 3

// powercutCut is one power cut and what the next boot showed.
type powercutCut struct {
	At      int    // the write or flush request of the boot the power went at
	Phase   string // the last thing the device said before the cut
	Dropped int    // unflushed writes the cut dropped
	UpOn    string // the version the next boot came up on; "" if the power went again first
	Fail    string // the invariant this cut broke, "" when none
}

// powercutResult is one cycle: a fresh device, its cuts, and the end.
type powercutResult struct {
	Cuts    []powercutCut
	Outcome string // "committed 2.0.0", or what went wrong
	Took    time.Duration
}

// runPowercut is `go run ./examples/qemu powercut -n N -seed S`: at least
// n power cuts, on fresh factory devices updating to v2.0.0 over NBD. Each
// boot of a device is cut at a seeded random write or flush request
// (dropping the writes not flushed), up to perCycle times; after each
// cut the disk is checked offline and the device booted again, which must
// come up on v1.0.0 or v2.0.0 with its data; the last boot must commit
// v2.0.0 by itself. A cut is placed by the guest's I/O, not by the clock,
// so a seed gives the same cut points on a quiet machine and a loaded one.
func (e *env) runPowercut(ctx context.Context, n, perCycle int, seed uint64) error {
	dir, s, err := e.nbdScenario(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer s.close()
	rng := rand.New(rand.NewPCG(seed, 0xc07))
	var results []powercutResult
	cuts, failed := 0, 0
	for i := 1; cuts < n && ctx.Err() == nil; i++ {
		ats := make([]int, perCycle)
		for j := range ats {
			ats[j] = 1 + rng.IntN(powercutRequests)
		}
		start := time.Now()
		r := s.powercutCycle(ctx, ats, dir)
		r.Took = time.Since(start)
		for _, c := range r.Cuts {
			cuts++
			e.logf("cycle %d, cut %d: at request %d during %q (%d unflushed writes dropped): next boot up on %q%s", i, cuts, c.At, c.Phase, c.Dropped, c.UpOn, failNote(c.Fail))
		}
		e.logf("cycle %d: %d cuts, %s (%.0fs)", i, len(r.Cuts), r.Outcome, r.Took.Seconds())
		if r.Outcome != "committed 2.0.0" {
			failed++
		}
		results = append(results, r)
	}
	fmt.Fprint(e.Out, powercutTable(results))
	if failed > 0 {
		return fmt.Errorf("%d of %d power-cut cycles failed", failed, len(results))
	}
	return nil
}

func failNote(fail string) string {
	if fail == "" {
		return ""
	}
	return ": FAILED: " + fail
}

// phaseRE picks the console lines that say where the device stands.
var phaseRE = regexp.MustCompile(`^(agent: state: rootfs \S+ -> \S+|agent: (started|reboot|health|confirm)|grub: booting|agent: progress)`)

// powercutCycle resets the device to the factory disk and boots it; the
// boot is cut at write or flush request ats[0], the next at ats[1], and so
// on; the boot after the last cut is followed to the commit.
func (s *scenario) powercutCycle(ctx context.Context, ats []int, dir string) powercutResult {
	var r powercutResult
	if err := s.resetDevice(ctx, dir); err != nil {
		r.Outcome = "reset: " + err.Error()
		return r
	}
	s.marker = ""
	dropped := 0
	for i := 0; ; i++ {
		var cut <-chan struct{}
		if i < len(ats) {
			cut = s.nbd.CutAt(ats[i])
		}
		s.booted = nil
		phase := "before grub"
		if err := s.start(ctx); err != nil {
			r.Outcome = "start: " + err.Error()
			return r
		}
		out := s.follow(ctx, cut, &phase)
		s.v.kill()
		if i > 0 && len(s.booted) > 0 {
			r.Cuts[i-1].UpOn = s.booted[0]
		}
		if out != "cut" {
			r.Outcome = out
			return r
		}
		c := powercutCut{At: ats[i], Phase: phase, Dropped: s.nbd.Stats().Dropped - dropped}
		dropped += c.Dropped
		if err := s.checkDiskOffline(ctx, dir); err != nil {
			c.Fail = "offline check: " + err.Error()
			r.Cuts = append(r.Cuts, c)
			r.Outcome = c.Fail
			return r
		}
		r.Cuts = append(r.Cuts, c)
	}
}

// phaseName shortens a console line to a phase for the table.
func phaseName(line string) string {
	switch {
	case strings.HasPrefix(line, "agent: state: rootfs"):
		f := strings.Fields(line)
		return "state " + f[5]
	case strings.HasPrefix(line, "agent: progress"):
		return "state downloading"
	case strings.HasPrefix(line, "grub: booting"):
		return "boot"
	}
	return strings.TrimSuffix(strings.Fields(line)[1], ":")
}

// followToCommit watches the device until it commits v2.0.0 (see follow).
func (s *scenario) followToCommit(ctx context.Context) string {
	return s.follow(ctx, nil, nil)
}

// follow watches the device: every boot comes up on 1.0.0 or 2.0.0 with
// the data partition's marker, and it ends committed on 2.0.0 — or, when
// cut is not nil, with "cut" once the NBD server has cut the power. phase,
// when not nil, is set to the last phase the device reported. A kernel
// panic is not an end: under heavy TCG load the kernel sometimes panics at
// start ("IO-APIC + timer doesn't work"), it reboots, and GRUB's boot
// counting must cope; panics are counted in the outcome.
func (s *scenario) follow(ctx context.Context, cut <-chan struct{}, phase *string) string {
	deadline := time.Now().Add(powercutTimeout)
	panics := 0
	for {
		select {
		case <-cut:
			return "cut"
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("no commit within %v (%d kernel panics)", powercutTimeout, panics)
		}
		m, err := s.expect(ctx, time.Second, followRE)
		if errors.Is(err, errNoMatch) {
			continue
		}
		if errors.Is(err, errVMExited) && cut != nil {
			// QEMU may end when the server drops its disk: the cut.
			select {
			case <-cut:
				return "cut"
			case <-time.After(5 * time.Second):
			}
		}
		if err != nil {
			// After a cut the guest's disk answers EIO: what it prints
			// then (an agent's fatal read error) is the cut, not a fault.
			select {
			case <-cut:
				return "cut"
			default:
			}
			return fmt.Sprintf("no commit (%d kernel panics): %v", panics, err)
		}
		if phase != nil && phaseRE.MatchString(m[0]) {
			*phase = phaseName(m[0])
		}
		if out := s.followLine(m[0], &panics); out != "" {
			return out
		}
	}
}

// followLine checks one line follow read; it returns the end it shows
// ("committed 2.0.0", or what went wrong), or "".
func (s *scenario) followLine(line string, panics *int) string {
	if panicRE.MatchString(line) {
		*panics++
		return ""
	}
	if st := agentStartedRE.FindStringSubmatch(line); st != nil {
		s.booted = append(s.booted, st[1])
		if st[1] != "1.0.0" && st[1] != "2.0.0" {
			return "booted " + st[1]
		}
		return ""
	}
	if d := agentDataRE.FindStringSubmatch(line); d != nil {
		if s.marker != "" && d[1] != s.marker {
			return fmt.Sprintf("data marker %s, was %s: data lost", d[1], s.marker)
		}
		s.marker = d[1]
		return ""
	}
	if st := agentStatusRE.FindStringSubmatch(line); st != nil && st[1] == "2.0.0" && st[3] == "b" && st[4] == "" {
		return "committed 2.0.0"
	}
	return ""
}

// followRE is what follow reads: starts, markers, statuses, panics and
// phases.
var followRE = regexp.MustCompile(strings.Join([]string{agentStartedRE.String(), agentDataRE.String(), agentStatusRE.String(), panicRE.String(), phaseRE.String()}, "|"))

// resetDevice puts the factory disk back under the NBD server.
func (s *scenario) resetDevice(ctx context.Context, dir string) error {
	return s.serveDisk(func() error {
		_, err := run(ctx, "", nil, "cp", "--sparse=always", s.e.Record+".base", s.raw)
		return err
	})
}

// checkDiskOffline runs the crash replay's invariants on the disk as the
// cut left it.
func (s *scenario) checkDiskOffline(ctx context.Context, dir string) error {
	disk, err := os.ReadFile(s.raw)
	if err != nil {
		return err
	}
	rel, err := readReleases(s.e.Record)
	if err != nil {
		return err
	}
	r, err := newReplay(replayConfig{Releases: rel, WorkDir: dir}, disk)
	if err != nil {
		return err
	}
	// The marker the agent printed was durable (it prints after fsync).
	r.marker = s.marker
	_, err = r.invariants(ctx)
	return err
}

// powercutTable is the cut phase × next boot table, and the cycles'
// outcomes.
func powercutTable(results []powercutResult) string {
	count := map[string]int{}
	ends := map[string]int{}
	cuts := 0
	for _, r := range results {
		for _, c := range r.Cuts {
			cuts++
			next := "up on " + c.UpOn
			switch {
			case c.Fail != "":
				next = "FAILED"
			case c.UpOn == "":
				next = "cut again before the agent"
			}
			count[fmt.Sprintf("  %-24s %-28s", c.Phase, next)]++
		}
		end := "committed 2.0.0"
		if r.Outcome != end {
			end = "FAILED"
		}
		ends[fmt.Sprintf("  %d cuts, %-20s", len(r.Cuts), end)]++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "power cuts: %d in %d cycles\n  %-24s %-28s %s\n", cuts, len(results), "cut during", "next boot", "cuts")
	for _, k := range slices.Sorted(maps.Keys(count)) {
		fmt.Fprintf(&b, "%s %d\n", k, count[k])
	}
	fmt.Fprintf(&b, "cycles:\n")
	for _, k := range slices.Sorted(maps.Keys(ends)) {
		fmt.Fprintf(&b, "%s %d\n", k, ends[k])
	}
	return b.String()
}
