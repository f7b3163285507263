package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// curveBin is the resolution of the download curve.
const curveBin = 10 * time.Minute

// result is what one scenario measured.
type result struct {
	name      string
	devices   int
	ramp      bool
	rampSpec  string // "0s=1,24h=10,72h=100"
	warmUp    int    // hours left out of the per device-hour figures
	releaseAt time.Duration
	wall      time.Duration

	checks, offlineChecks   int64
	reqPerDevHour           float64 // after warmUp
	bytesPerDevHour         float64
	idleChecks              int64
	idleMeanReq, idleMeanB  float64
	idleMaxReq, idleMaxB    int64
	peak                    int   // concurrent downloads, virtual time
	curve                   []int // peak concurrent downloads per curveBin
	requests, bytes, starts []int64
	adoption                []float64 // % of the fleet on the new release at the end of each hour
	counted, wire           int64     // response bytes counted per request, and read from the connections

	heapBytes, sysBytes, peakRSS uint64
	stateBytes                   int64
}

func (s *scenario) result(wall time.Duration, wire int64) *result {
	st := s.st
	r := &result{name: s.name, devices: len(s.devices), ramp: s.cfg.Ramp != nil, releaseAt: s.cfg.ReleaseAt,
		rampSpec: rampString(s.cfg.Ramp), warmUp: min(ceilHours(s.cfg.Poll+s.cfg.Jitter), st.hours-1),
		wall: wall, checks: st.checks.Load(), offlineChecks: st.offlineChecks.Load(), wire: wire,
		idleChecks: st.idleChecks.Load(), idleMaxReq: st.idleMaxReq.Load(), idleMaxB: st.idleMaxBytes.Load()}
	if r.idleChecks > 0 {
		r.idleMeanReq = float64(st.idleRequests.Load()) / float64(r.idleChecks)
		r.idleMeanB = float64(st.idleBytes.Load()) / float64(r.idleChecks)
	}
	var reqs, bytes int64
	for h := range st.hours {
		r.requests = append(r.requests, st.requests[h].Load())
		r.bytes = append(r.bytes, st.bytes[h].Load())
		r.starts = append(r.starts, st.fetches[h].Load())
		r.counted += r.bytes[h]
		if h >= r.warmUp {
			reqs += r.requests[h]
			bytes += r.bytes[h]
		}
	}
	if devHours := float64(len(s.devices)) * float64(st.hours-r.warmUp); devHours > 0 {
		r.reqPerDevHour = float64(reqs) / devHours
		r.bytesPerDevHour = float64(bytes) / devHours
	}
	r.peak, r.curve = st.concurrency(curveBin, s.cfg.Duration)
	r.adoption = make([]float64, st.hours)
	for _, d := range s.devices {
		if d.installedAt >= 0 {
			for h := clampHour(d.installedAt, st.hours); h < st.hours; h++ {
				r.adoption[h]++
			}
		}
	}
	for h := range r.adoption {
		r.adoption[h] *= 100 / float64(len(s.devices))
	}
	return r
}

func rampString(ramp []verify.RampPoint) string {
	var parts []string
	for _, p := range ramp {
		parts = append(parts, fmt.Sprintf("%s=%g", p.After, p.Percent))
	}
	return strings.Join(parts, ",")
}

func (r *result) peakShare() float64 { return 100 * float64(r.peak) / float64(r.devices) }

// print writes the scenario's figures and its hour-by-hour table.
func (r *result) print(out io.Writer) {
	mode := "no ramp: released to everyone at once"
	if r.ramp {
		mode = "staged rollout"
	}
	fmt.Fprintf(out, "\n== %s (%s), %d devices, %d virtual hours in %.0f s ==\n", r.name, mode, r.devices, len(r.adoption), r.wall.Seconds())
	fmt.Fprintf(out, "checks: %d (%d more found the link down: no request)\n", r.checks, r.offlineChecks)
	fmt.Fprintf(out, "requests per device-hour: %.3f; response bytes per device-hour: %.0f (from hour %d: every device's first check is a full refresh)\n",
		r.reqPerDevHour, r.bytesPerDevHour, r.warmUp)
	fmt.Fprintf(out, "idle checks: %d; per idle check %.2f requests and %.0f bytes of response headers+bodies (max %d requests, %d bytes)\n",
		r.idleChecks, r.idleMeanReq, r.idleMeanB, r.idleMaxReq, r.idleMaxB)
	fmt.Fprintf(out, "peak concurrent downloads (virtual time): %d = %.2f%% of the fleet\n", r.peak, r.peakShare())
	fmt.Fprintf(out, "response bytes counted per request %d, read from the TLS connections %d\n", r.counted, r.wire)
	fmt.Fprintf(out, "memory: Go heap in use %.1f MiB (%.1f KiB/device), peak RSS %.1f MiB (%.1f KiB/device), trusted metadata on tmpfs %.1f MiB (%.1f KiB/device)\n",
		mib(r.heapBytes), kib(r.heapBytes)/float64(r.devices), mib(r.peakRSS), kib(r.peakRSS)/float64(r.devices),
		mib(uint64(r.stateBytes)), kib(uint64(r.stateBytes))/float64(r.devices))
	fmt.Fprintf(out, "%5s %9s %12s %9s %10s %9s\n", "hour", "requests", "bytes", "downloads", "peak conc", "adoption")
	perHour := int(time.Hour / curveBin)
	for h := range r.adoption {
		peak := 0
		for i := h * perHour; i < (h+1)*perHour && i < len(r.curve); i++ {
			peak = max(peak, r.curve[i])
		}
		fmt.Fprintf(out, "%5d %9d %12d %9d %10d %8.2f%%\n", h, r.requests[h], r.bytes[h], r.starts[h], peak, r.adoption[h])
	}
}

// printComparison sums up the goals.
func printComparison(out io.Writer, rs []*result) {
	fmt.Fprintln(out, "\n== goals ==")
	for _, r := range rs {
		fmt.Fprintf(out, "%-7s idle check %.2f requests (max %d; goal ≤ 2), %.0f bytes (max %d; goal ≤ 1024); peak concurrent downloads %d = %.2f%% of the fleet\n",
			r.name, r.idleMeanReq, r.idleMaxReq, r.idleMeanB, r.idleMaxB, r.peak, r.peakShare())
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
func kib(b uint64) float64 { return float64(b) / (1 << 10) }
