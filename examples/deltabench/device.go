package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/switchback-ota/switchback/delta"
)

// deviceJob is what the child process does.
type deviceJob struct {
	Mode                               string
	Index, BaseIndex, Base, New, Store string
	Patch, Want                        string
	ZstdCLI                            bool // diff: sections by the zstd program too
}

// deviceResult is what it reports on stdout.
type deviceResult struct {
	// Bytes are the bytes asked for; Read those read from the responses
	// (range responses are read to their end unless Apply fails).
	Bytes, Read, Requests int64
	Fetched               int
	Frames                int // of a static patch
	Elapsed               time.Duration
	// PeakKiB is VmHWM of the device process: its peak RSS since exec.
	PeakKiB int64
}

func runDevice(j deviceJob) (deviceResult, int64, error) {
	var res deviceResult
	out, err := runChildOutput(os.Args[0], "-device", mustJSON(j))
	if err != nil {
		return res, 0, fmt.Errorf("%s: %w", j.Mode, err)
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, 0, fmt.Errorf("%s: %w", j.Mode, err)
	}
	return res, res.PeakKiB, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// device runs one device-side (or diff) job in this process and prints
// its result: the output is hashed and checked against j.Want.
func device(arg string) error {
	var j deviceJob
	if err := json.Unmarshal([]byte(arg), &j); err != nil {
		return err
	}
	if j.Mode == "diff" {
		if err := diffJob(j); err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(deviceResult{PeakKiB: peakKiB()})
	}
	base, err := os.Open(j.Base)
	if err != nil {
		return err
	}
	defer base.Close()
	h := sha256.New()
	var res deviceResult
	t0 := time.Now()
	switch j.Mode {
	case "patch":
		res.Frames, err = patchJob(j, base, h)
	case "adaptive-store", "adaptive-range", "adaptive-pack":
		res, err = adaptiveJob(j, base, h)
	default:
		err = fmt.Errorf("unknown mode %q", j.Mode)
	}
	if err != nil {
		return err
	}
	res.Elapsed = time.Since(t0)
	res.PeakKiB = peakKiB()
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != j.Want {
		return fmt.Errorf("output sha256 %s, want %s", got, j.Want)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// diffJob makes the static patch j.Patch from j.Base to j.New.
func diffJob(j deviceJob) error {
	b, err := os.Open(j.Base)
	if err != nil {
		return err
	}
	defer b.Close()
	fi, err := b.Stat()
	if err != nil {
		return err
	}
	n, err := os.Open(j.New)
	if err != nil {
		return err
	}
	defer n.Close()
	out, err := os.Create(j.Patch)
	if err != nil {
		return err
	}
	defer out.Close()
	var opts delta.DiffOptions
	if j.ZstdCLI {
		if opts.Compress, err = delta.ZstdCommand(19); err != nil {
			return err
		}
	}
	if err := delta.Diff(b, fi.Size(), n, out, opts); err != nil {
		return err
	}
	return out.Close()
}

// patchJob applies j.Patch to base as the updater does, with a
// checkpoint after every frame, and returns the number of frames.
func patchJob(j deviceJob, base io.ReaderAt, out io.Writer) (int, error) {
	p, err := os.Open(j.Patch)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	frames := 0
	ck := func(c delta.PatchCheckpoint) error {
		frames++
		_, err := c.MarshalBinary()
		return err
	}
	return frames, delta.ApplyPatch(base, p, out, delta.PatchOptions{Checkpoint: ck})
}

// adaptiveJob applies the adaptive delta of j.Index from base, fetching
// from the source its mode names.
func adaptiveJob(j deviceJob, base io.ReaderAt, h hash.Hash) (deviceResult, error) {
	var res deviceResult
	plan, err := loadPlan(j)
	if err != nil {
		return res, err
	}
	res.Fetched = plan.Stats().Fetched
	var c counters
	var src delta.Source
	var out io.Writer = h
	var closers []io.Closer
	defer func() {
		for _, cl := range closers {
			cl.Close()
		}
	}()
	switch j.Mode {
	case "adaptive-store":
		src.Store = c.store(j.Store)
	case "adaptive-pack":
		var written *os.File
		src.Pack, written, err = c.pack(j.Store)
		if err != nil {
			return res, err
		}
		closers = append(closers, written, removeOnClose(written.Name()))
		// As the updater does: repeated chunks are read back from the
		// slot being written.
		src.Written, out = written, io.MultiWriter(h, written)
	default:
		img, err := os.Open(j.New)
		if err != nil {
			return res, err
		}
		closers = append(closers, img)
		src.Range = c.ranges(img, false)
	}
	if err := delta.Apply(context.Background(), plan, []io.ReaderAt{base}, src, out); err != nil {
		return res, err
	}
	res.Bytes, res.Read, res.Requests = c.asked.Load(), c.read.Load(), c.requests.Load()
	return res, nil
}

// loadPlan plans j: the target index is downloaded (counted by the
// caller), the base index was persisted when the slot was written.
func loadPlan(j deviceJob) (*delta.Plan, error) {
	ni, err := readIndex(j.Index)
	if err != nil {
		return nil, err
	}
	bi, err := readIndex(j.BaseIndex)
	if err != nil {
		return nil, err
	}
	return delta.NewPlan(ni, []delta.Base{{Index: bi}}, delta.PlanOptions{})
}

func readIndex(name string) (*delta.Index, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return delta.ParseIndex(b)
}

// counters count what a device asks for and reads.
type counters struct{ asked, read, requests atomic.Int64 }

// store serves the chunk store under dir, a request per file.
func (c *counters) store(dir string) delta.StoreFunc {
	return func(ctx context.Context, name string) (io.ReadCloser, error) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		c.requests.Add(1)
		c.asked.Add(fi.Size())
		return f, nil
	}
}

// ranges serves byte ranges of f, counting what is read when countRead.
func (c *counters) ranges(f *os.File, countRead bool) delta.RangeFunc {
	return func(ctx context.Context, off, n int64) (io.ReadCloser, error) {
		c.requests.Add(1)
		c.asked.Add(n)
		var r io.Reader = io.NewSectionReader(f, off, n)
		if countRead {
			r = countingReader{r, &c.read}
		}
		return io.NopCloser(r), nil
	}
}

// pack serves the chunk pack prefix.pack after its table prefix.tab
// (fetched whole, one request), and returns the file standing for the
// slot being written.
func (c *counters) pack(prefix string) (*delta.PackSource, *os.File, error) {
	tb, err := os.ReadFile(prefix + ".tab")
	if err != nil {
		return nil, nil, err
	}
	c.requests.Add(1)
	c.asked.Add(int64(len(tb)))
	tab, err := delta.ParsePackTable(tb)
	if err != nil {
		return nil, nil, err
	}
	// Left open for the process's life, like the slot.
	pack, err := os.Open(prefix + ".pack")
	if err != nil {
		return nil, nil, err
	}
	slot, err := os.Create(prefix + ".slot")
	if err != nil {
		pack.Close()
		return nil, nil, err
	}
	return &delta.PackSource{Table: tab, Range: c.ranges(pack, true)}, slot, nil
}

type removeOnClose string

func (r removeOnClose) Close() error { return os.Remove(string(r)) }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// peakKiB returns this process's peak RSS since exec (VmHWM).
func peakKiB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var n int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &n)
			return n
		}
	}
	return 0
}

func runChildOutput(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}
