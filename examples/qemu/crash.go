package main

// Crash-state replay: from the NBD write log of a recorded run, rebuild the
// disk states a power cut may leave (each flush boundary, and between two
// flushes random subsets of the writes not yet flushed, as a drive's
// volatile cache may have kept them) and check each without booting.
//
// Within one flush interval the kept writes are applied in their log order:
// a drive's cache holds the newest data of a sector, so reordering changes
// only which writes reach the media, and every subset is one of those
// outcomes. A FUA write is durable when it completes: it is kept whenever
// the cut comes after it.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// logEntry is a record of the write log with its data left in the file.
type logEntry struct {
	Kind    byte
	Offset  int64
	Length  int64
	DataPos int64 // where its data starts in the log file
}

// readLog indexes a write log.
func readLog(path string) ([]logEntry, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	var out []logEntry
	var pos int64
	for {
		rec, err := readLogRecord(io.NewSectionReader(f, pos, 13+nbdMaxPayload))
		if errors.Is(err, io.EOF) {
			return out, f, nil
		}
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		out = append(out, logEntry{Kind: rec.Kind, Offset: rec.Offset, Length: int64(len(rec.Data)), DataPos: pos + 13})
		pos += 13 + int64(len(rec.Data))
	}
}

// replayConfig says which states to build and check.
type replayConfig struct {
	Log      string // the write log; Log+".base" is the disk before it
	Releases map[string]string
	PerEpoch int // random subset states per flush interval
	Max      int // check at most about this many states (0: all)
	Seed     uint64
	WorkDir  string
	Logf     func(format string, a ...any)
	// Visit, when set, is called with the index of every generated state
	// (0, 1, … in log order) and the disk as it is in that state, valid
	// during the call only. With NoCheck the states are only visited.
	Visit   func(ctx context.Context, n int, disk []byte) error
	NoCheck bool
}

// replayResult counts what the replay saw.
type replayResult struct {
	Generated, Checked int
	Outcomes           map[string]int // "primary=b trial= state=…" kinds
	Failures           []string
	// States describes each checked state by its index: its outcome kind
	// and the data marker it holds.
	States map[int]stateInfo
}

// stateInfo is what the offline check found in one crash state.
type stateInfo struct {
	Kind   string // the outcome kind, or "FAIL"
	Marker string // the data partition's marker, "" before the first boot wrote it
}

// replay is one replay run.
type replay struct {
	cfg      replayConfig
	log      *os.File
	disk     []byte
	releases map[string]string // sha256 of a release image -> version
	res      replayResult
	seed     maphash.Seed
	bootRes  map[uint64]bootCheck
	dataRes  map[uint64]dataCheck
	slotRes  map[string]string
	// marker is the data partition's marker once a flush made it durable;
	// durable says whether the state being checked is a flush boundary
	// (a random subset may lose a marker its flush had not yet made
	// durable: the agent had not printed it either).
	marker  string
	durable bool
}

// runReplay builds and checks the crash states of a recorded log.
func runReplay(ctx context.Context, cfg replayConfig) (*replayResult, error) {
	entries, lf, err := readLog(cfg.Log)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	disk, err := os.ReadFile(cfg.Log + ".base")
	if err != nil {
		return nil, err
	}
	r, err := newReplay(cfg, disk)
	if err != nil {
		return nil, err
	}
	r.log = lf
	return &r.res, r.run(ctx, entries)
}

// newReplay makes a replay of disk, knowing the release images.
func newReplay(cfg replayConfig, disk []byte) (*replay, error) {
	r := &replay{cfg: cfg, disk: disk, releases: map[string]string{}, seed: maphash.MakeSeed(),
		bootRes: map[uint64]bootCheck{}, dataRes: map[uint64]dataCheck{}, slotRes: map[string]string{}}
	r.res.Outcomes = map[string]int{}
	r.res.States = map[int]stateInfo{}
	for version, path := range cfg.Releases {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		r.releases[hex.EncodeToString(sum[:])] = version
	}
	return r, nil
}

// run walks the log flush interval by flush interval.
func (r *replay) run(ctx context.Context, entries []logEntry) error {
	epochs := 0
	for _, e := range entries {
		if e.Kind == logFlush || e.Kind == logCut {
			epochs++
		}
	}
	stride := 1
	if total := epochs * (r.cfg.PerEpoch + 1); r.cfg.Max > 0 && total > r.cfg.Max {
		stride = (total + r.cfg.Max - 1) / r.cfg.Max
	}
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x5eed))
	var epoch []logEntry
	for i, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch e.Kind {
		case logWrite, logFUA:
			epoch = append(epoch, e)
			continue
		case logTrim:
			continue
		}
		// A flush or a cut ends the interval: first the states a cut
		// inside it may leave, then (for a flush) the state after it.
		for k := 0; k < r.cfg.PerEpoch && len(epoch) > 0; k++ {
			keep := subset(rng, epoch)
			if err := r.checkSubset(ctx, epoch, keep, stride, fmt.Sprintf("record %d, subset %d of %d writes", i, k, len(epoch))); err != nil {
				return err
			}
		}
		if e.Kind == logFlush {
			if _, err := r.apply(epoch, nil); err != nil {
				return err
			}
			if err := r.state(ctx, stride, fmt.Sprintf("record %d, flush boundary", i), true); err != nil {
				return err
			}
		}
		epoch = epoch[:0]
	}
	return nil
}

// state counts the state the disk is in, visits it, and checks it when
// it is one of every stride.
func (r *replay) state(ctx context.Context, stride int, name string, durable bool) error {
	n := r.res.Generated
	r.res.Generated++
	if r.cfg.Visit != nil {
		if err := r.cfg.Visit(ctx, n, r.disk); err != nil {
			return err
		}
	}
	if r.cfg.NoCheck || n%stride != 0 {
		return nil
	}
	return r.check(ctx, n, name, durable)
}

// subset picks where a cut lands in an interval and which of the writes
// before it the drive kept: each plain write with probability 1/2, every
// FUA write.
func subset(rng *rand.Rand, epoch []logEntry) []bool {
	cut := 1 + rng.IntN(len(epoch))
	keep := make([]bool, len(epoch))
	for j := 0; j < cut; j++ {
		keep[j] = epoch[j].Kind == logFUA || rng.IntN(2) == 0
	}
	return keep
}

// checkSubset applies the kept writes, counts, visits and checks the
// state, and undoes them.
func (r *replay) checkSubset(ctx context.Context, epoch []logEntry, keep []bool, stride int, name string) error {
	undo, err := r.apply(epoch, keep)
	if err != nil {
		return err
	}
	cerr := r.state(ctx, stride, name, false)
	for i := len(undo) - 1; i >= 0; i-- {
		copy(r.disk[undo[i].off:], undo[i].old)
	}
	return cerr
}

// apply writes the kept entries (all when keep is nil) into the disk and
// returns what they overwrote.
func (r *replay) apply(epoch []logEntry, keep []bool) ([]undo, error) {
	var out []undo
	for j, e := range epoch {
		if keep != nil && !keep[j] {
			continue
		}
		if e.Offset < 0 || e.Offset+e.Length > int64(len(r.disk)) {
			return nil, fmt.Errorf("write log: write at %d+%d past the disk", e.Offset, e.Length)
		}
		dst := r.disk[e.Offset : e.Offset+e.Length]
		if keep != nil {
			out = append(out, undo{off: e.Offset, old: append([]byte(nil), dst...)})
		}
		if _, err := r.log.ReadAt(dst, e.DataPos); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// part is a partition of the disk.
func (r *replay) part(start, size int64) []byte {
	return r.disk[start*sector : (start+size)*sector]
}

// check checks the current disk state; a failed invariant is recorded as
// a failure, an error of the tools ends the replay.
func (r *replay) check(ctx context.Context, n int, name string, durable bool) error {
	r.durable = durable
	r.res.Checked++
	if r.cfg.Logf != nil && r.res.Checked%200 == 0 {
		r.cfg.Logf("replay: %d states checked of %d generated, %d failed", r.res.Checked, r.res.Generated, len(r.res.Failures))
	}
	outcome, err := r.invariants(ctx)
	if err != nil {
		r.res.Failures = append(r.res.Failures, name+": "+err.Error())
		r.res.Outcomes["FAIL"]++
		r.res.States[n] = stateInfo{Kind: "FAIL"}
		return nil
	}
	r.res.Outcomes[outcome]++
	r.res.States[n] = stateInfo{Kind: outcome, Marker: r.checkData(ctx).marker}
	return nil
}

// invariants checks one state: boot environment, data partition, slots,
// and their agreement. It returns a short description of the state.
func (r *replay) invariants(ctx context.Context) (string, error) {
	b := r.checkBoot(ctx)
	if b.err != nil {
		return "", b.err
	}
	d := r.checkData(ctx)
	if d.err != nil {
		return "", d.err
	}
	if r.marker != "" && d.marker != r.marker {
		return "", fmt.Errorf("data partition marker %q, was %q: data lost", d.marker, r.marker)
	}
	if d.marker != "" && r.marker == "" && r.durable {
		r.marker = d.marker
	}
	primary := r.slotVersion(b.env["sb_primary"], d)
	if primary == "" {
		return "", fmt.Errorf("boot env primary %s holds no complete release image", b.env["sb_primary"])
	}
	trial := b.env["sb_trial"]
	if trial != "" && b.env["sb_tries"] != "0" && r.slotVersion(trial, d) == "" {
		return "", fmt.Errorf("boot env trial %s (tries %s) holds no complete release image", trial, b.env["sb_tries"])
	}
	if d.state != nil {
		if err := r.agree(primary, d); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("primary=%s(%s) trial=%s tries=%s state=%s", b.env["sb_primary"], primary, trial, b.env["sb_tries"], d.summary()), nil
}

// slotVersion is the release a slot holds complete, or "".
func (r *replay) slotVersion(slot string, d dataCheck) string {
	start := int64(slotAStart)
	switch slot {
	case "a":
	case "b":
		start = slotBStart
	default:
		return ""
	}
	p := r.part(start, slotSize)
	key := fmt.Sprintf("%s:%x", slot, maphash.Bytes(r.seed, p))
	if v, ok := r.slotRes[key]; ok {
		return v
	}
	sum := sha256.Sum256(p[:rootfsBytes])
	v := r.releases[hex.EncodeToString(sum[:])]
	r.slotRes[key] = v
	return v
}

// agree checks the state file against the disk: a slot the state records
// as complete holds that image, and the primary's release is the installed
// one or the one pending.
func (r *replay) agree(primary string, d dataCheck) error {
	for _, s := range d.state.Slots {
		if !s.Complete {
			continue
		}
		if v := r.slotVersion(s.Slot, d); v == "" || (s.Version != "" && v != s.Version) {
			return fmt.Errorf("state records slot %s complete with %s, the slot holds %q", s.Slot, s.Version, v)
		}
	}
	inst := d.state.Installed["rootfs"]
	pend := d.state.Pending["rootfs"]
	if primary != inst && !strings.HasSuffix(pend, " "+primary) {
		return fmt.Errorf("boot env primary holds %s, state has installed %s, pending %q", primary, inst, pend)
	}
	return nil
}

// summary lists outcomes and failures, most frequent first.
func (res *replayResult) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "crash states: %d generated, %d checked, %d failed\n", res.Generated, res.Checked, len(res.Failures))
	type kv struct {
		k string
		n int
	}
	var kvs []kv
	for k, n := range res.Outcomes {
		kvs = append(kvs, kv{k, n})
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].n > kvs[j].n || kvs[i].n == kvs[j].n && kvs[i].k < kvs[j].k })
	for _, x := range kvs {
		fmt.Fprintf(&b, "  %6d  %s\n", x.n, x.k)
	}
	for i, f := range res.Failures {
		if i == 20 {
			fmt.Fprintf(&b, "  … %d more failures\n", len(res.Failures)-20)
			break
		}
		fmt.Fprintf(&b, "  FAIL %s\n", f)
	}
	return b.String()
}

// scratch writes p to a file in the work directory.
func (r *replay) scratch(name string, p []byte) (string, error) {
	path := filepath.Join(r.cfg.WorkDir, name)
	return path, os.WriteFile(path, p, 0o644)
}

// readReleases reads the "version path" lines a recorded run leaves next
// to its log.
func readReleases(logPath string) (map[string]string, error) {
	data, err := os.ReadFile(logPath + ".releases")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		v, p, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("%s.releases: bad line %q", logPath, line)
		}
		out[v] = p
	}
	return out, nil
}

// replayLog is `go run ./examples/qemu replay`: check the crash states of
// a recorded log and print the outcome table.
func (e *env) replayLog(ctx context.Context, logPath string, cfg replayConfig) error {
	rel, err := readReleases(logPath)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "switchback-replay-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.Log, cfg.Releases, cfg.WorkDir, cfg.Logf = logPath, rel, dir, e.logf
	res, err := runReplay(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(e.Out, res.summary())
	if len(res.Failures) > 0 {
		return fmt.Errorf("%d of %d crash states failed their invariants", len(res.Failures), res.Checked)
	}
	return nil
}
