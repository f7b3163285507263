package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// run simulates the fleet twice, with the staged rollout and without, and
// prints and draws what it measured.
func run(ctx context.Context, o options, out io.Writer) ([]*result, error) {
	work, cleanup, err := workDir(o)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	www := filepath.Join(work, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return nil, err
	}
	ng, err := startNginx(ctx, filepath.Join(work, "nginx"), www)
	if err != nil {
		return nil, err
	}
	defer ng.stop()
	ramp, err := parseRamp(o.ramp)
	if err != nil {
		return nil, err
	}
	withRamp, noRamp := o.base, o.base
	withRamp.Ramp = ramp
	noRamp.Duration = o.noRampHours
	fmt.Fprintf(out, "fleet: %d devices, nginx at https://%s, poll %v + up to %v jitter, %.0f%% offline (spells of %v on average)\n",
		o.base.Devices, ng.Addr, o.base.Poll, o.base.Jitter, 100*o.base.Offline, o.base.OfflineFor)
	fmt.Fprintf(out, "release %s at +%v: %d real bytes served; a download lasts %v of virtual time (%.0f MiB modelled at %.1f Mbit/s)\n",
		newVer, o.base.ReleaseAt, o.base.TargetSize, o.base.downloadTime().Round(time.Second),
		float64(o.base.ImageSize)/(1<<20), o.base.LinkRate/1e6)
	var results []*result
	for _, sc := range []struct {
		name string
		cfg  Config
	}{{"ramp", withRamp}, {"noramp", noRamp}} {
		r, err := runScenario(ctx, sc.name, sc.cfg, www, filepath.Join(work, "state"), "https://"+ng.Addr, ng, out)
		if err != nil {
			return results, fmt.Errorf("%s: %w", sc.name, err)
		}
		results = append(results, r)
		r.print(out)
	}
	printComparison(out, results)
	if o.png != "" {
		if err := drawPNG(o.png, results); err != nil {
			return results, fmt.Errorf("png: %w", err)
		}
		fmt.Fprintf(out, "curves drawn in %s\n", o.png)
	}
	return results, nil
}

func runScenario(ctx context.Context, name string, cfg Config, www, state, base string, ng *nginxServer, out io.Writer) (*result, error) {
	wc := &wireCounter{}
	rt := newTransport(ng.tlsConfig(), 2*cfg.Workers, wc)
	defer rt.CloseIdleConnections()
	start := time.Now()
	s, err := newScenario(ctx, name, cfg, www, state, base, rt)
	if err != nil {
		return nil, err
	}
	if err := s.run(ctx, func(msg string) { fmt.Fprintf(out, "  %s (%.0f s)\n", msg, time.Since(start).Seconds()) }); err != nil {
		return nil, err
	}
	r := s.result(time.Since(start), wc.n.Load())
	r.measureMemory(s, filepath.Join(state, name))
	return r, nil
}

// workDir returns the directory everything is served and kept in.
func workDir(o options) (string, func(), error) {
	if o.work != "" {
		return o.work, func() {}, os.MkdirAll(o.work, 0o755)
	}
	parent := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		parent = "/dev/shm"
	}
	dir, err := os.MkdirTemp(parent, "switchback-fleet-")
	if err != nil {
		return "", nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // nginx's workers read www/
		return "", nil, err
	}
	if o.keep {
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// measureMemory records the simulator's memory while the fleet is alive:
// the Go heap after a collection, the process's peak resident set, and
// the devices' trusted metadata on disk (tmpfs: memory too).
func (r *result) measureMemory(s *scenario, stateDir string) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.heapBytes = ms.HeapInuse
	r.sysBytes = ms.Sys
	r.peakRSS = peakRSS()
	_ = filepath.WalkDir(stateDir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				r.stateBytes += fi.Size()
			}
		}
		return nil
	})
	runtime.KeepAlive(s.devices)
}

// peakRSS reads VmHWM from /proc/self/status, 0 if unknown.
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
