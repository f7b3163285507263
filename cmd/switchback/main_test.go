package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots/grub"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

func switchback(t *testing.T, config string, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"-config", config}, args...), &out, &errb)
	return out.String() + errb.String(), code
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFileComponent drives a whole update of an application binary through
// the CLI: check, install, guard (as ExecStartPre), confirm, status.
func TestFileComponent(t *testing.T) {
	repo := tuftest.New(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "gateway")
	if err := os.WriteFile(app, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, repo.Root(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.json")
	writeJSON(t, cfg, map[string]any{
		"hardware": "gw", "state_dir": filepath.Join(dir, "state"), "root": root,
		"metadata_url": repo.MetadataURL(), "targets_url": repo.TargetsURL(),
		"external_start_counter": true, "confirm_timeout": "10s", "full_refresh_interval": "1h",
		"components": []any{map[string]any{"name": "app", "type": "file", "path": app, "mode": "0755", "factory_version": "1.0.0"}},
		"health":     []any{map[string]any{"command": []string{app}}},
	})
	repo.AddTarget("app/1.0.0", []byte("#!/bin/sh\nexit 0\n"), verify.Custom{Component: "app", Version: "1.0.0", Hardware: []string{"gw"}})
	repo.Publish()
	if out, code := switchback(t, cfg, "check"); code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("check: %d %s", code, out)
	}
	repo.AddTarget("app/1.1.0", []byte("#!/bin/sh\necho 1.1.0\nexit 0\n"), verify.Custom{Component: "app", Version: "1.1.0", Hardware: []string{"gw"}})
	repo.Publish()
	if out, code := switchback(t, cfg, "check"); code != 0 || !strings.Contains(out, "app: 1.0.0 → 1.1.0") {
		t.Fatalf("check: %d %s", code, out)
	}
	if out, code := switchback(t, cfg, "install"); code != 0 || !strings.Contains(out, "armed") {
		t.Fatalf("install: %d %s", code, out)
	}
	if out, code := switchback(t, cfg, "guard", "-component", "app"); code != 0 || !strings.Contains(out, "start(s) left") {
		t.Fatalf("guard: %d %s", code, out)
	}
	if out, code := switchback(t, cfg, "confirm"); code != 0 || !strings.Contains(out, "committed") {
		t.Fatalf("confirm: %d %s", code, out)
	}
	out, code := switchback(t, cfg, "status")
	if code != 0 || !strings.Contains(out, "installed  1.1.0") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	t.Logf("switchback status:\n%s", out)
}

// TestGrubComponent: A/B partitions (image files) with the GRUB backend:
// install into the inactive partition, the env as grub-editenv shows it,
// rollback and env set.
func TestGrubComponent(t *testing.T) {
	repo := tuftest.New(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	os.WriteFile(root, repo.Root(), 0o600)
	env, err := grub.NewEnv(1024)
	if err != nil {
		t.Fatal(err)
	}
	b := env.Encode()
	grubenv := filepath.Join(dir, "grubenv")
	os.WriteFile(grubenv, b, 0o644)
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("console=ttyS0 switchback.slot=a\n"), 0o644)
	for _, p := range []string{"a.img", "b.img"} {
		if err := os.WriteFile(filepath.Join(dir, p), make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "config.json")
	writeJSON(t, cfg, map[string]any{
		"hardware": "gw", "state_dir": filepath.Join(dir, "state"), "root": root,
		"metadata_url": repo.MetadataURL(), "targets_url": repo.TargetsURL(),
		"components": []any{map[string]any{"name": "rootfs", "type": "ab", "factory_version": "1.0.0",
			"slots": map[string]string{"a": filepath.Join(dir, "a.img"), "b": filepath.Join(dir, "b.img")},
			"boot":  map[string]string{"type": "grub", "path": grubenv, "cmdline": cmdline, "runtime_dir": filepath.Join(dir, "run")}}},
	})
	img := bytes.Repeat([]byte("rootfs 1.1.0 "), 10000)
	repo.AddTarget("rootfs/1.1.0.img", img, verify.Custom{Component: "rootfs", Version: "1.1.0", Hardware: []string{"gw"}})
	repo.Publish()
	if out, code := switchback(t, cfg, "install"); code != 0 {
		t.Fatalf("install: %d %s", code, out)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "b.img"))
	if !bytes.Equal(got[:len(img)], img) {
		t.Fatal("image not in partition b")
	}
	out, code := switchback(t, cfg, "env", "get", "sb_trial", "sb_tries")
	if code != 0 || !strings.Contains(out, "sb_trial=b") || !strings.Contains(out, "sb_tries=3") {
		t.Fatalf("env get: %d %s", code, out)
	}
	out, code = switchback(t, cfg, "status")
	if code != 0 || !strings.Contains(out, "trial      b (3 tries left)") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	t.Logf("switchback status:\n%s", out)
	if out, code := switchback(t, cfg, "mark-bad", "-slot", "b"); code != 0 {
		t.Fatalf("mark-bad: %d %s", code, out)
	}
	if out, code := switchback(t, cfg, "env", "set", "sb_custom=1"); code != 0 {
		t.Fatalf("env set: %d %s", code, out)
	}
	out, _ = switchback(t, cfg, "env", "get", "sb_trial", "sb_custom")
	if !strings.Contains(out, "sb_trial=\n") || !strings.Contains(out, "sb_custom=1") {
		t.Errorf("env after mark-bad and set:\n%s", out)
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	tests := []struct {
		name     string
		config   string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"no command", `{}`, nil, exitUsage, "usage"},
		{"unknown command", `{}`, []string{"instal"}, exitUsage, `unknown command "instal"`},
		{"unknown flag", `{}`, []string{"install", "-fil", "x"}, exitUsage, "-fil"},
		{"env without get or set", "", []string{"env"}, exitUsage, "env get or env set"},
		{"guard without component", "", []string{"guard"}, exitUsage, "-component is required"},
		{"install with an argument", "", []string{"install", "app.img"}, exitUsage, "-file"},
		{"missing config", "", []string{"status"}, exitConfig, "no such file"},
		{"unknown field", `{"root":"x","hardwar":"typo"}`, []string{"status"}, exitConfig, "unknown field"},
		{"bad component type", `{"root":"x","components":[{"name":"c","type":"floppy"}]}`, []string{"status"}, exitConfig, "not file, dir or ab"},
		{"two health kinds", `{"root":"x","health":[{"http":"http://x","tcp":"y"}]}`, []string{"status"}, exitConfig, "exactly one"},
		{"bad duration", `{"root":"x","confirm_timeout":"soon"}`, []string{"status"}, exitConfig, "duration"},
		{"config named", `{"root":"x","confirm_timeout":"soon"}`, []string{"status"}, exitConfig, "config.json"},
		{"negative confirm timeout", `{"root":"x","confirm_timeout":"-1s"}`, []string{"status"}, exitConfig, "confirm_timeout"},
		{"negative stall timeout", `{"root":"x","stall_timeout":"-5s"}`, []string{"status"}, exitConfig, "stall_timeout"},
		{"negative health timeout", `{"root":"x","health":[{"tcp":"y","timeout":"-1s"}]}`, []string{"status"}, exitConfig, "timeout"},
		{"negative rate limit", `{"root":"x","rate_limit":-1}`, []string{"status"}, exitConfig, "rate_limit"},
		{"tries out of range", `{"root":"x","tries":-2}`, []string{"status"}, exitConfig, "tries"},
		{"factory version not semver", `{"root":"x","components":[{"name":"c","type":"file","path":"/a","factory_version":"latest"}]}`, []string{"status"}, exitConfig, "factory_version"},
		{"trailing garbage", `{"root":"x"} {"root":"y"}`, []string{"status"}, exitConfig, "after the JSON object"},
		{"trailing junk", `{"root":"x"}]`, []string{"status"}, exitConfig, "after the JSON object"},
		{"huge file", `{"root":"x","hardware":"` + strings.Repeat("x", 1<<20) + `"}`, []string{"status"}, exitConfig, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(cfg)
			if tt.config != "" {
				os.WriteFile(cfg, []byte(tt.config), 0o600)
			}
			out, code := switchback(t, cfg, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, tt.wantCode, tt.wantOut)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"hardware":"gw","root":"/r.json","components":[{"name":"app","type":"file","path":"/a"}]}`))
	f.Add([]byte(`{"root":"/r","components":[{"name":"r","type":"ab","slots":{"a":"PARTLABEL=a","b":"/dev/b"},"boot":{"type":"uboot"}}],"health":[{"units":["x"]}]}`))
	f.Add([]byte(`{"confirm_timeout":"90s","min_time":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"root":"/r","stall_timeout":"-1s"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig(b)
		if err != nil {
			return
		}
		if c.Root == "" || c.StateDir == "" {
			t.Fatalf("accepted config without root or state dir: %+v", c)
		}
	})
}

// TestStateDirLocked: every command that writes the device's state waits
// briefly for the StateDir, then fails naming the PID that holds it. Two
// installs at once armed an image that matched neither release.
func TestStateDirLocked(t *testing.T) {
	repo := tuftest.New(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "gateway")
	if err := os.WriteFile(app, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, repo.Root(), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "config.json")
	writeJSON(t, cfg, map[string]any{
		"hardware": "gw", "state_dir": state, "root": root,
		"metadata_url": repo.MetadataURL(), "targets_url": repo.TargetsURL(), "external_start_counter": true,
		"components": []any{map[string]any{"name": "app", "type": "file", "path": app, "factory_version": "1.0.0"}},
	})
	l, err := updater.LockStateDir(state, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("in use by PID %d", os.Getpid())
	t.Run("locked", func(t *testing.T) {
		for _, args := range [][]string{
			{"install"}, {"install", "-file", app}, {"confirm"}, {"guard", "-component", "app"},
			{"mark-good"}, {"mark-bad"}, {"rollback"}, {"check"},
		} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				t.Parallel()
				out, code := switchback(t, cfg, args...)
				if code != 1 || !strings.Contains(out, want) {
					t.Errorf("exit %d, output %q; want 1 and %q", code, out, want)
				}
			})
		}
	})
	t.Run("status reads beside the holder", func(t *testing.T) {
		out, code := switchback(t, cfg, "status")
		if code != 0 || !strings.Contains(out, "1.0.0") {
			t.Errorf("status while the StateDir is held: exit %d, output %q; want 0 and the installed version", code, out)
		}
	})
	l.Unlock()
	if out, code := switchback(t, cfg, "guard", "-component", "app"); code != 0 {
		t.Errorf("guard after the lock was released: exit %d, %s", code, out)
	}
}
