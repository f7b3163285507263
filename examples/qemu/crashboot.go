package main

// Booting crash states: the replay checks thousands of states offline; a
// seeded sample of them is booted in QEMU to show that the device comes up
// on the old or the new version and finishes the update by itself.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
)

// crashBootResult is one booted crash state.
type crashBootResult struct {
	Index   int    // the state's index in the replay
	Kind    string // the state as the offline check saw it
	UpOn    string // the version the first boot came up on ("" if none did)
	Outcome string // "committed 2.0.0", or what went wrong
}

// runCrashBoot is `go run ./examples/qemu -n K -seed S crashboot`: a fresh
// device's update from v1.0.0 to v2.0.0 is recorded over NBD, every crash
// state of the log is checked offline (as replay does), and k of them,
// picked with the seed across the kinds of state, are booted: each must
// come up on v1.0.0 or v2.0.0 with the data partition's marker and end
// with v2.0.0 committed.
func (e *env) runCrashBoot(ctx context.Context, k int, seed uint64) error {
	dir, s, err := e.nbdScenario(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer s.close()
	if err := s.recordUpdate(ctx); err != nil {
		return err
	}
	rel, err := readReleases(e.Record)
	if err != nil {
		return err
	}
	cfg := replayConfig{Log: e.Record, Releases: rel, PerEpoch: 3, Seed: seed, WorkDir: dir, Logf: e.logf}
	res, err := runReplay(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(e.Out, res.summary())
	if len(res.Failures) > 0 {
		return fmt.Errorf("%d of %d crash states failed their invariants offline: not booting them", len(res.Failures), res.Checked)
	}
	chosen := map[int]bool{}
	for _, n := range sampleStates(res.States, k, seed) {
		chosen[n] = true
	}
	var results []crashBootResult
	cfg.NoCheck, cfg.Logf = true, nil
	cfg.Visit = func(ctx context.Context, n int, disk []byte) error {
		if !chosen[n] {
			return nil
		}
		r := s.bootCrashState(ctx, disk, res.States[n].Marker)
		r.Index, r.Kind = n, res.States[n].Kind
		e.logf("crash state %d (%s): came up on %q: %s", n, r.Kind, r.UpOn, r.Outcome)
		results = append(results, r)
		return ctx.Err()
	}
	if _, err := runReplay(ctx, cfg); err != nil {
		return err
	}
	fmt.Fprint(e.Out, crashBootTable(results))
	if failed := countFailed(results); failed > 0 {
		return fmt.Errorf("%d of %d booted crash states failed", failed, len(results))
	}
	return nil
}

// recordUpdate runs one whole update cycle of a fresh device with the
// NBD server logging (factory boot, download, verify, arm, trial boot,
// health, commit) and closes the log.
func (s *scenario) recordUpdate(ctx context.Context) error {
	s.marker = ""
	if err := s.start(ctx); err != nil {
		return err
	}
	out := s.followToCommit(ctx)
	s.v.kill()
	st := s.nbd.Stats()
	s.e.logf("recorded: %d writes (%d FUA, %d MiB), %d flushes", st.Writes, st.FUAs, st.Bytes>>20, st.Flushes)
	if err := s.nbd.Close(); err != nil {
		return err
	}
	if out != "committed 2.0.0" {
		return fmt.Errorf("the recorded update did not finish: %s", out)
	}
	return nil
}

// bootCrashState serves disk (a crash state) to a new QEMU and follows it
// to v2.0.0's commit. marker is the data partition's marker in that state
// ("": none yet, the boot makes one).
func (s *scenario) bootCrashState(ctx context.Context, disk []byte, marker string) crashBootResult {
	var r crashBootResult
	if err := s.serveDisk(func() error { return os.WriteFile(s.raw, disk, 0o644) }); err != nil {
		r.Outcome = "serve: " + err.Error()
		return r
	}
	s.marker, s.booted = marker, nil
	if err := s.start(ctx); err != nil {
		r.Outcome = "start: " + err.Error()
		return r
	}
	r.Outcome = s.followToCommit(ctx)
	s.v.kill()
	if len(s.booted) > 0 {
		r.UpOn = s.booted[0]
	}
	return r
}

// serveDisk stops the NBD server, lets fill rewrite the raw disk, and
// serves it again without a log.
func (s *scenario) serveDisk(fill func() error) error {
	s.nbd.Close() // a second Close (after recordUpdate's) only reports closed files
	if err := fill(); err != nil {
		return err
	}
	n, err := startNBD(s.raw, "")
	if err != nil {
		return err
	}
	s.nbd, s.disk = n, n.URL()
	return nil
}

// sampleStates picks k of the checked crash states, seeded: the kinds of
// state in turn (so that the rare ones — armed, confirming, committed
// before the state file says so — are booted as well as the many states of
// the download), a random state of each kind, in index order.
func sampleStates(states map[int]stateInfo, k int, seed uint64) []int {
	byKind := map[string][]int{}
	for n, st := range states {
		if st.Kind != "FAIL" {
			byKind[st.Kind] = append(byKind[st.Kind], n)
		}
	}
	kinds := make([]string, 0, len(byKind))
	for kind, ns := range byKind {
		kinds = append(kinds, kind)
		sort.Ints(ns)
	}
	sort.Strings(kinds)
	rng := rand.New(rand.NewPCG(seed, 0xb007))
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	var out []int
	for left := len(states); len(out) < k && left > 0; {
		left = 0
		for _, kind := range kinds {
			ns := byKind[kind]
			if len(ns) == 0 || len(out) == k {
				continue
			}
			i := rng.IntN(len(ns))
			out = append(out, ns[i])
			byKind[kind] = append(ns[:i:i], ns[i+1:]...)
			left += len(ns) - 1
		}
	}
	sort.Ints(out)
	return out
}

func countFailed(results []crashBootResult) int {
	n := 0
	for _, r := range results {
		if r.Outcome != "committed 2.0.0" {
			n++
		}
	}
	return n
}

// crashBootTable lists the booted states: their kind, the version the
// device came up on, and the outcome.
func crashBootTable(results []crashBootResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "booted crash states: %d, failed: %d\n", len(results), countFailed(results))
	for _, r := range results {
		fmt.Fprintf(&b, "  %5d  %-72s up on %-6s %s\n", r.Index, r.Kind, r.UpOn, r.Outcome)
	}
	return b.String()
}
