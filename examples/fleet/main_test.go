package main

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

// TestShortRun runs a small fleet against a real nginx, with and without a
// staged rollout, and checks the shape of the goals: an idle check costs
// at most 2 requests and 1 KiB, the ramp's peak of concurrent downloads is
// below the stampede without it, adoption never goes down, every byte the
// devices were sent is accounted for, and the PNG is drawn.
func TestShortRun(t *testing.T) {
	o, err := parseFlags([]string{
		"-devices", "500", "-poll", "3h", "-hours", "7h", "-noramp-hours", "4h",
		"-release-at", "1h", "-ramp", "0s=1,12h=100", "-target-kib", "16", "-workers", "4",
		"-png", filepath.Join(t.TempDir(), "fleet.png"), "-work", t.TempDir(),
	}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rs, err := run(ctx, o, &out)
	if errors.Is(err, ErrNoNginx) {
		ci.Skipf(t, "%v", err)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
	if len(rs) != 2 {
		t.Fatalf("got %d results, want 2", len(rs))
	}
	for _, r := range rs {
		checkResult(t, r)
	}
	ramp, noRamp := rs[0], rs[1]
	if ramp.idleChecks == 0 { // the run without a ramp is too short for a device to check twice idle
		t.Errorf("no idle check measured")
	}
	if ramp.peak >= noRamp.peak {
		t.Errorf("peak concurrent downloads: %d with the ramp, %d without; want fewer with it", ramp.peak, noRamp.peak)
	}
	checkPNG(t, o.png)
}

func checkResult(t *testing.T, r *result) {
	t.Helper()
	if r.idleMaxReq > 2 || r.idleMaxB > 1024 {
		t.Errorf("%s: idle checks of up to %d requests and %d bytes; want ≤ 2 and ≤ 1024", r.name, r.idleMaxReq, r.idleMaxB)
	}
	if r.counted != r.wire || r.wire == 0 {
		t.Errorf("%s: response bytes counted per request %d, read from the connections %d; want equal", r.name, r.counted, r.wire)
	}
	if r.peak == 0 || r.adoption[len(r.adoption)-1] == 0 {
		t.Errorf("%s: peak %d downloads, final adoption %.1f%%: nothing was installed", r.name, r.peak, r.adoption[len(r.adoption)-1])
	}
	for h := 1; h < len(r.adoption); h++ {
		if r.adoption[h] < r.adoption[h-1] {
			t.Errorf("%s: adoption went down from %.2f%% to %.2f%% at hour %d", r.name, r.adoption[h-1], r.adoption[h], h)
		}
	}
	for h := range min(int(r.releaseAt/time.Hour), len(r.adoption)) {
		if r.adoption[h] != 0 || r.starts[h] != 0 {
			t.Errorf("%s: hour %d, before the release: adoption %.2f%%, %d downloads", r.name, h, r.adoption[h], r.starts[h])
		}
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 400 {
		t.Errorf("%s is %v, want a drawing", path, b)
	}
}

// TestParseFlags checks the command line's refusals.
func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"-devices", "0"}, false},
		{[]string{"-offline", "1"}, false},
		{[]string{"-release-at", "100h"}, false},
		{[]string{"-ramp", "0s=1,24h=x"}, false},
		{[]string{"-ramp", "24h=10,0s=1"}, false},
		{[]string{"-ramp", "0s=1,24h=10,72h=100"}, true},
	} {
		_, err := parseFlags(tc.args, &bytes.Buffer{})
		if (err == nil) != tc.ok {
			t.Errorf("%q: got %v, want ok=%v", tc.args, err, tc.ok)
		}
	}
}

// TestConcurrency checks the sweep of download stretches in virtual time.
func TestConcurrency(t *testing.T) {
	s := newStats(Config{Duration: time.Hour})
	m := time.Minute
	s.download(0, 10*m)
	s.download(5*m, 15*m)
	s.download(15*m, 20*m) // starts as the second ends: not concurrent
	s.download(30*m, 31*m)
	peak, curve := s.concurrency(10*m, time.Hour)
	if want := []int{2, 1, 0, 1, 0, 0}; peak != 2 || !slices.Equal(curve, want) {
		t.Errorf("got peak %d, curve %v; want 2, %v", peak, curve, want)
	}
}
