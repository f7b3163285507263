package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

func TestRolloutCommand(t *testing.T) {
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	sb(t, exitOK, "init", "-repo", repo, "-keys", keys)
	img := filepath.Join(dir, "app.bin")
	os.WriteFile(img, []byte("app 1"), 0o644)
	sb(t, exitOK, "add", "-repo", repo, "-keys", keys, "-component", "app", "-version", "1.0.0", "-hardware", "*", "-path", "app/1.0.0/app.bin", img)
	flags := []string{"-repo", repo, "-keys", keys}
	rollout := func(t *testing.T) *verify.Rollout {
		t.Helper()
		r, err := repository.Open(repository.Config{Dir: repo})
		if err != nil {
			t.Fatal(err)
		}
		tg, err := r.Target("app/1.0.0/app.bin")
		if err != nil {
			t.Fatal(err)
		}
		c, err := verify.ParseCustom(tg.Custom)
		if err != nil {
			t.Fatal(err)
		}
		return c.Rollout
	}
	steps := []struct {
		name  string
		args  []string
		code  int
		check func(t *testing.T, ro *verify.Rollout)
	}{
		{"set", []string{"rollout", "-start", "2026-12-07T00:00:00Z", "-ramp", "0s=1,24h=10%,72h=100", "-salt", "s1"}, exitOK,
			func(t *testing.T, ro *verify.Rollout) {
				if ro == nil || ro.Salt != "s1" || len(ro.Ramp) != 3 || ro.Ramp[1].Percent != 10 || ro.Halted {
					t.Errorf("rollout = %+v", ro)
				}
			}},
		{"bad ramp", []string{"rollout", "-ramp", "24h=10,1h=100"}, exitUsage, nil},
		{"halt", []string{"rollout", "-halt"}, exitOK, func(t *testing.T, ro *verify.Rollout) {
			if ro == nil || !ro.Halted || ro.Salt != "s1" {
				t.Errorf("rollout = %+v, want s1 halted", ro)
			}
		}},
		{"resume", []string{"rollout", "-resume"}, exitOK, func(t *testing.T, ro *verify.Rollout) {
			if ro == nil || ro.Halted || ro.Salt != "s1" {
				t.Errorf("rollout = %+v, want s1 running", ro)
			}
		}},
		{"resume with a ramp", []string{"rollout", "-resume", "-ramp", "0s=100"}, exitUsage, nil},
		{"clear", []string{"rollout", "-clear"}, exitOK, func(t *testing.T, ro *verify.Rollout) {
			if ro != nil {
				t.Errorf("rollout = %+v, want none", ro)
			}
		}},
		{"halt without a rollout", []string{"rollout", "-halt"}, exitOK, func(t *testing.T, ro *verify.Rollout) {
			if ro == nil || !ro.Halted {
				t.Errorf("rollout = %+v, want halted", ro)
			}
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			args := append(append([]string{s.args[0]}, flags...), s.args[1:]...)
			sb(t, s.code, append(args, "app/1.0.0/app.bin")...)
			if s.check != nil {
				s.check(t, rollout(t))
			}
		})
	}
	out := sb(t, exitOK, append(append([]string{"channels"}, flags...), "app/1.0.0/app.bin", "beta", "stable")...)
	if !strings.Contains(out, "beta, stable") {
		t.Errorf("channels output %q", out)
	}
	sb(t, exitUsage, append(append([]string{"channels"}, flags...), "app/1.0.0/app.bin", "Not A Channel")...)
}
