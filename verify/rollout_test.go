package verify_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/verify"
)

// chi-square critical values at p = 0.001.
const (
	chi2df99 = 148.23 // 100 buckets
	chi2df81 = 124.84 // 10 x 10 contingency table
)

func TestBucketUniform(t *testing.T) {
	const n, bins = 100_000, 100
	var count [bins]int
	for i := range n {
		b := verify.Bucket(fmt.Sprintf("device-%06d", i), "release-1.4.0")
		if b < 0 || b >= 100 {
			t.Fatalf("bucket %v out of [0, 100)", b)
		}
		count[int(b)]++
	}
	want := float64(n) / bins
	chi2 := 0.0
	for _, c := range count {
		chi2 += (float64(c) - want) * (float64(c) - want) / want
	}
	if chi2 > chi2df99 {
		t.Errorf("chi-square over %d buckets = %.1f > %.1f: buckets not uniform", bins, chi2, chi2df99)
	}
}

func TestBucketIndependentBetweenReleases(t *testing.T) {
	const n, bins = 100_000, 10
	var joint [bins][bins]int
	for i := range n {
		id := fmt.Sprintf("%08x-machine", i)
		a := int(verify.Bucket(id, "salt-a") / 10)
		b := int(verify.Bucket(id, "salt-b") / 10)
		joint[a][b]++
	}
	want := float64(n) / (bins * bins)
	chi2 := 0.0
	for _, row := range joint {
		for _, c := range row {
			chi2 += (float64(c) - want) * (float64(c) - want) / want
		}
	}
	if chi2 > chi2df81 {
		t.Errorf("chi-square of the joint cohorts = %.1f > %.1f: releases share cohorts", chi2, chi2df81)
	}
}

var ramp = verify.Rollout{
	Start: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC),
	Salt:  "rel-2",
	Ramp:  []verify.RampPoint{{After: "0s", Percent: 1}, {After: "24h", Percent: 10}, {After: "72h", Percent: 100}},
}

func TestRolloutShare(t *testing.T) {
	halted := ramp
	halted.Halted = true
	late := ramp
	late.Ramp = []verify.RampPoint{{After: "1h", Percent: 50}}
	tests := []struct {
		name string
		r    verify.Rollout
		at   time.Time
		want float64
	}{
		{"clock unset", ramp, time.Time{}, 0},
		{"before start", ramp, ramp.Start.Add(-time.Second), 0},
		{"at start", ramp, ramp.Start, 1},
		{"half way to the second point", ramp, ramp.Start.Add(12 * time.Hour), 5.5},
		{"second point", ramp, ramp.Start.Add(24 * time.Hour), 10},
		{"half way to the last", ramp, ramp.Start.Add(48 * time.Hour), 55},
		{"after the last", ramp, ramp.Start.Add(700 * time.Hour), 100},
		{"halted", halted, ramp.Start.Add(700 * time.Hour), 0},
		{"before the first point", late, ramp.Start.Add(30 * time.Minute), 0},
		{"first point late", late, ramp.Start.Add(2 * time.Hour), 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Share(tt.at); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Share(%s) = %v, want %v", tt.at, got, tt.want)
			}
		})
	}
}

func rolloutTarget(ver string, ro *verify.Rollout, channels ...string) verify.Target {
	return verify.Target{Path: "app/app-" + ver, Length: 1, Hashes: map[string][]byte{"sha256": make([]byte, 32)},
		Custom: verify.Custom{Component: "app", Version: ver, Hardware: []string{"*"}, Rollout: ro, Channels: channels}}
}

// idIn returns a device id whose bucket for salt is below (in) or at or
// above (!in) pct.
func idIn(t *testing.T, salt string, pct float64, in bool) string {
	t.Helper()
	for i := range 100_000 {
		id := fmt.Sprintf("dev-%d", i)
		if (verify.Bucket(id, salt) < pct) == in {
			return id
		}
	}
	t.Fatal("no such id")
	return ""
}

func TestSelectRollout(t *testing.T) {
	halted := ramp
	halted.Halted = true
	early := idIn(t, ramp.Salt, 1, true)  // in the first 1 %
	late := idIn(t, ramp.Salt, 99, false) // in the last 1 %
	day := ramp.Start.Add(24 * time.Hour)
	tests := []struct {
		name    string
		targets []verify.Target
		p       verify.Policy
		want    string // version chosen, "" for none
		wantErr error
	}{
		{"early device at start", []verify.Target{rolloutTarget("2.0.0", &ramp)},
			verify.Policy{DeviceID: early, Now: ramp.Start}, "2.0.0", nil},
		{"late device at start", []verify.Target{rolloutTarget("2.0.0", &ramp)},
			verify.Policy{DeviceID: late, Now: day}, "", verify.ErrNotYet},
		{"late device after the ramp", []verify.Target{rolloutTarget("2.0.0", &ramp)},
			verify.Policy{DeviceID: late, Now: ramp.Start.Add(72 * time.Hour)}, "2.0.0", nil},
		{"clock unset", []verify.Target{rolloutTarget("2.0.0", &ramp)},
			verify.Policy{DeviceID: early}, "", verify.ErrNotYet},
		{"clock behind the start", []verify.Target{rolloutTarget("2.0.0", &ramp)},
			verify.Policy{DeviceID: early, Now: ramp.Start.Add(-time.Minute)}, "", verify.ErrNotYet},
		{"no device id before 100 %", []verify.Target{rolloutTarget("2.0.0", &ramp)},
			verify.Policy{Now: day}, "", verify.ErrNotYet},
		{"halted", []verify.Target{rolloutTarget("2.0.0", &halted)},
			verify.Policy{DeviceID: early, Now: day}, "", verify.ErrHalted},
		{"halted release kept by the device that has it", []verify.Target{rolloutTarget("2.0.0", &halted)},
			verify.Policy{DeviceID: early, Now: day, Installed: "2.0.0", AllowDowngrade: true}, "", verify.ErrNoUpdate},
		{"not yet: the previous release instead", []verify.Target{rolloutTarget("1.1.0", nil), rolloutTarget("2.0.0", &ramp)},
			verify.Policy{DeviceID: late, Now: day, Installed: "1.0.0"}, "1.1.0", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Component, tt.p.Hardware = "app", "board"
			checkSelect(t, tt.targets, tt.p, tt.want, tt.wantErr)
		})
	}
}

func checkSelect(t *testing.T, targets []verify.Target, p verify.Policy, want string, wantErr error) {
	t.Helper()
	got, err := verify.Select(targets, p)
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Fatalf("Select = %v, %v; want error %v", got.Custom.Version, err, wantErr)
		}
		return
	}
	if err != nil || got.Custom.Version != want {
		t.Fatalf("Select = %q, %v; want %q", got.Custom.Version, err, want)
	}
}

func TestSelectChannelAndPin(t *testing.T) {
	stable := rolloutTarget("1.1.0", nil, "stable")
	beta := rolloutTarget("1.2.0-beta.1", nil, "beta")
	any := rolloutTarget("1.0.5", nil)
	acme := rolloutTarget("1.3.0", nil, "acme")
	all := []verify.Target{stable, beta, any, acme}
	tests := []struct {
		name    string
		p       verify.Policy
		want    string
		wantErr error
	}{
		{"default channel is stable", verify.Policy{Installed: "1.0.0"}, "1.1.0", nil},
		{"beta follows beta and unlisted", verify.Policy{Channel: "beta", Installed: "1.0.0"}, "1.2.0-beta.1", nil},
		{"customer channel", verify.Policy{Channel: "acme", Installed: "1.0.0"}, "1.3.0", nil},
		{"unknown channel takes unlisted releases", verify.Policy{Channel: "other", Installed: "1.0.0"}, "1.0.5", nil},
		{"pin below newest", verify.Policy{Channel: "acme", Installed: "1.0.0", Pin: "1.0.5"}, "1.0.5", nil},
		{"pinned at installed", verify.Policy{Channel: "acme", Installed: "1.0.5", Pin: "1.0.5"}, "", verify.ErrNoUpdate},
		{"pin below installed without downgrade", verify.Policy{Installed: "1.1.0", Pin: "1.0.5"}, "", verify.ErrNoUpdate},
		{"pin below installed with downgrade", verify.Policy{Installed: "1.1.0", Pin: "1.0.5", AllowDowngrade: true}, "1.0.5", nil},
		{"pin on another channel", verify.Policy{Installed: "1.0.0", Pin: "1.3.0"}, "", verify.ErrIncompatible},
		{"pin not published", verify.Policy{Installed: "1.0.0", Pin: "9.9.9"}, "", verify.ErrNoUpdate},
		{"bad pin", verify.Policy{Installed: "1.0.0", Pin: "1.0"}, "", verify.ErrBadVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Component, tt.p.Hardware = "app", "board"
			checkSelect(t, all, tt.p, tt.want, tt.wantErr)
		})
	}
}

// A halt is one re-signed targets file: the next check refuses the
// release. A mirror that then serves the older, unhalted targets is
// refused by TUF (rollback).
func TestRolloutHaltAndRollback(t *testing.T) {
	r := newTUF(t)
	ro := ramp
	ro.Start = testEpoch.Add(-100 * time.Hour) // fully ramped by now
	r.AddTarget("app/a", []byte("a"), verify.Custom{Component: "app", Version: "2.0.0", Hardware: []string{"*"}, Rollout: &ro})
	r.Publish()
	unhalted := r.Version("targets")
	c := clientFor(t, r, t.TempDir())
	p := verify.Policy{Component: "app", Hardware: "b", Installed: "1.0.0", DeviceID: "dev-1", Now: testNow()}
	checkSelect(t, refresh(t, c).Targets, p, "2.0.0", nil)

	halted := ro
	halted.Halted = true
	if err := r.Repository().SetRollout("app/a", &halted); err != nil {
		t.Fatal(err)
	}
	r.Publish()
	checkSelect(t, refresh(t, c).Targets, p, "", verify.ErrHalted)

	r.RollbackTargets(unhalted)
	_, err := c.Refresh(context.Background())
	if !errors.Is(err, verify.ErrUntrusted) || !errors.Is(err, &metadata.ErrBadVersionNumber{}) {
		t.Errorf("Refresh with the unhalted targets served again = %v, want ErrUntrusted with ErrBadVersionNumber", err)
	}
}
