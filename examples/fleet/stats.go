package main

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// stats collects what a scenario measured. Safe for concurrent use.
type stats struct {
	hours int

	checks        atomic.Int64
	offlineChecks atomic.Int64   // polls that found the link down: no request
	requests      []atomic.Int64 // per virtual hour, checks and downloads
	bytes         []atomic.Int64 // per virtual hour: response headers + bodies, checks and downloads
	fetches       []atomic.Int64 // per virtual hour: downloads started

	idleChecks   atomic.Int64
	idleRequests atomic.Int64
	idleBytes    atomic.Int64
	idleMaxReq   atomic.Int64
	idleMaxBytes atomic.Int64

	mu        sync.Mutex
	intervals [][2]time.Duration // stretches of download, in virtual time
}

func newStats(cfg Config) *stats {
	h := ceilHours(cfg.Duration)
	return &stats{hours: h, requests: make([]atomic.Int64, h), bytes: make([]atomic.Int64, h), fetches: make([]atomic.Int64, h)}
}

// check records one successful check; idle means nothing had changed
// since the device's previous check (same timestamp, nothing to take).
func (s *stats) check(at time.Duration, u usage, idle bool) {
	h := clampHour(at, s.hours)
	s.checks.Add(1)
	s.requests[h].Add(u.requests)
	s.bytes[h].Add(u.bytes)
	if !idle {
		return
	}
	s.idleChecks.Add(1)
	s.idleRequests.Add(u.requests)
	s.idleBytes.Add(u.bytes)
	atomicMax(&s.idleMaxReq, u.requests)
	atomicMax(&s.idleMaxBytes, u.bytes)
}

// fetched records the requests of one download of the release.
func (s *stats) fetched(at time.Duration, u usage) {
	h := clampHour(at, s.hours)
	s.requests[h].Add(u.requests)
	s.bytes[h].Add(u.bytes)
	s.fetches[h].Add(1)
}

// download records one stretch of download in virtual time.
func (s *stats) download(from, to time.Duration) {
	if to <= from {
		return
	}
	s.mu.Lock()
	s.intervals = append(s.intervals, [2]time.Duration{from, to})
	s.mu.Unlock()
}

func atomicMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// concurrency sweeps the download stretches: the peak number of devices
// downloading at once, and the peak within each bin of virtual time up to
// end.
func (s *stats) concurrency(bin, end time.Duration) (peak int, curve []int) {
	type edge struct {
		at    time.Duration
		delta int
	}
	s.mu.Lock()
	edges := make([]edge, 0, 2*len(s.intervals))
	for _, iv := range s.intervals {
		edges = append(edges, edge{iv[0], +1}, edge{iv[1], -1})
	}
	s.mu.Unlock()
	// At equal times an end comes before a start: stretches are [from, to).
	slices.SortFunc(edges, func(a, b edge) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.delta, b.delta))
	})
	curve = make([]int, max(1, int((end+bin-1)/bin)))
	binOf := func(t time.Duration) int { return max(0, min(int(t/bin), len(curve)-1)) }
	// hold records level n held over [from, to).
	hold := func(from, to time.Duration, n int) {
		for k := binOf(from); k <= binOf(to-1); k++ {
			curve[k] = max(curve[k], n)
		}
	}
	n, prev := 0, time.Duration(0)
	for _, e := range edges {
		if e.at > prev {
			hold(prev, e.at, n)
		}
		n += e.delta
		peak = max(peak, n)
		prev = e.at
	}
	hold(prev, max(end, prev+1), n)
	return peak, curve
}
