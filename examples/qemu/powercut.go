package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// powercutTimeout bounds one cycle's wait for its cut, and then its
// recovery: boots, the rest of the download, the trial boot and the commit.
// About 4 minutes on a quiet 2-core machine; TCG guests starved of CPU
// (a load of 40 on 2 cores was seen) take several times longer, and a
// timeout must mean the device is stuck, not the host busy.
const powercutTimeout = 20 * time.Minute

// powercutRequests is the range of the cut: a fresh device's update to
// v2.0.0 issues about 280 write and flush requests from power-on to the
// commit (172 writes and 103 flushes in a recording), so a cut at a
// request drawn from 1..powercutRequests lands anywhere in the flow.
const powercutRequests = 300

// powercutResult is one cycle: where the cut landed and what followed.
type powercutResult struct {
	At      int    // the write or flush request the power went at
	Phase   string // the last thing the device said before the cut
	Dropped int    // unflushed writes the cut dropped
	Outcome string // "committed 2.0.0", or what went wrong
	Took    time.Duration
}

// runPowercut is `go run ./examples/qemu powercut -n N -seed S`: n cycles,
// each on a fresh factory device updating to v2.0.0 over NBD, cut at a
// seeded random write or flush request (dropping the writes not flushed),
// checked offline, booted again and followed until v2.0.0 is committed.
// The cut is placed by the guest's I/O, not by the clock, so a seed gives
// the same cut points on a quiet machine and a loaded one.
func (e *env) runPowercut(ctx context.Context, n int, seed uint64) error {
	dir, s, err := e.nbdScenario(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer s.close()
	rng := rand.New(rand.NewPCG(seed, 0xc07))
	var results []powercutResult
	failed := 0
	for i := 0; i < n; i++ {
		at := 1 + rng.IntN(powercutRequests)
		start := time.Now()
		r := s.powercutCycle(ctx, at, dir)
		r.Took = time.Since(start)
		e.logf("cycle %d/%d: cut at request %d during %q (%d unflushed writes dropped): %s (%.0fs)", i+1, n, at, r.Phase, r.Dropped, r.Outcome, r.Took.Seconds())
		if r.Outcome != "committed 2.0.0" {
			failed++
		}
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprint(e.Out, powercutTable(results))
	if failed > 0 {
		return fmt.Errorf("%d of %d power-cut cycles failed", failed, len(results))
	}
	return nil
}

// phaseRE picks the console lines that say where the device stands.
var phaseRE = regexp.MustCompile(`^(agent: state: rootfs \S+ -> \S+|agent: (started|reboot|health|confirm)|grub: booting|agent: progress)`)

// powercutCycle resets the device to the factory disk, boots it, cuts the
// power at write or flush request at, and follows the recovery.
func (s *scenario) powercutCycle(ctx context.Context, at int, dir string) powercutResult {
	r := powercutResult{At: at, Phase: "before grub"}
	if err := s.resetDevice(ctx, dir); err != nil {
		r.Outcome = "reset: " + err.Error()
		return r
	}
	s.marker = ""
	cut := s.nbd.CutAt(at)
	if err := s.start(ctx); err != nil {
		r.Outcome = "start: " + err.Error()
		return r
	}
	if err := s.followToCut(ctx, cut, &r.Phase); err != nil {
		s.v.kill()
		r.Outcome = "before the cut: " + err.Error()
		return r
	}
	s.v.kill()
	r.Dropped = s.nbd.Stats().Dropped
	if err := s.checkDiskOffline(ctx, dir); err != nil {
		r.Outcome = "offline check: " + err.Error()
		return r
	}
	if err := s.start(ctx); err != nil {
		r.Outcome = "restart: " + err.Error()
		return r
	}
	r.Outcome = s.followToCommit(ctx)
	s.v.kill()
	return r
}

// followToCut reads the console, noting the phase, until the NBD server
// has cut the power.
func (s *scenario) followToCut(ctx context.Context, cut <-chan struct{}, phase *string) error {
	deadline := time.Now().Add(powercutTimeout)
	for {
		select {
		case <-cut:
			return nil
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no cut within %v", powercutTimeout)
		}
		m, err := s.v.wait(ctx, time.Second, phaseRE, nil)
		switch {
		case err == nil:
			*phase = phaseName(m[0])
		case errors.Is(err, errNoMatch):
		case errors.Is(err, errVMExited):
			// QEMU ends when the server drops its disk: the cut.
			select {
			case <-cut:
				return nil
			case <-time.After(5 * time.Second):
				return err
			}
		default:
			return err
		}
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

// followToCommit watches the device after the cut: every boot comes up on
// 1.0.0 or 2.0.0 with the data partition's marker, and it ends committed
// on 2.0.0. A kernel panic is not an end: under heavy TCG load the kernel
// sometimes panics at start ("IO-APIC + timer doesn't work"), it reboots,
// and GRUB's boot counting must cope; panics are counted in the outcome.
func (s *scenario) followToCommit(ctx context.Context) string {
	deadline := time.Now().Add(powercutTimeout)
	panics := 0
	for {
		m, err := s.expect(ctx, time.Until(deadline), followRE)
		if err != nil {
			return fmt.Sprintf("no commit (%d kernel panics): %v", panics, err)
		}
		if panicRE.MatchString(m[0]) {
			panics++
			continue
		}
		if st := agentStartedRE.FindStringSubmatch(m[0]); st != nil {
			s.booted = append(s.booted, st[1])
			if st[1] != "1.0.0" && st[1] != "2.0.0" {
				return "booted " + st[1]
			}
			continue
		}
		if d := agentDataRE.FindStringSubmatch(m[0]); d != nil {
			if s.marker != "" && d[1] != s.marker {
				return fmt.Sprintf("data marker %s, was %s: data lost", d[1], s.marker)
			}
			s.marker = d[1]
			continue
		}
		if st := agentStatusRE.FindStringSubmatch(m[0]); st[1] == "2.0.0" && st[3] == "b" && st[4] == "" {
			return "committed 2.0.0"
		}
	}
}

// followRE is what followToCommit reads: starts, markers and statuses.
var followRE = regexp.MustCompile(agentStartedRE.String() + "|" + agentDataRE.String() + "|" + agentStatusRE.String() + "|" + panicRE.String())

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
	_, err = r.invariants(ctx)
	return err
}

// powercutTable is the cut phase × outcome table.
func powercutTable(results []powercutResult) string {
	count := map[[2]string]int{}
	for _, r := range results {
		o := r.Outcome
		if o != "committed 2.0.0" {
			o = "FAILED"
		}
		count[[2]string{r.Phase, o}]++
	}
	var keys [][2]string
	for k := range count {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	var b strings.Builder
	fmt.Fprintf(&b, "power cuts: %d cycles\n  %-28s %-18s %s\n", len(results), "cut during", "outcome", "cycles")
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-28s %-18s %d\n", k[0], k[1], count[k])
	}
	return b.String()
}
