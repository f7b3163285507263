package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// TestMain lets the test binary run as the switchback command itself, so
// that tests can start it as a child process the way systemd does.
func TestMain(m *testing.M) {
	if os.Getenv("SWITCHBACK_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// command runs switchback as a child process.
func command(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "SWITCHBACK_RUN_MAIN=1")
	return cmd
}

// TestGuardRollsBackCrashingBinary plays systemd for a guarded unit:
// ExecStartPre=switchback guard, then the application, restarted while it
// fails. The new binary crashes on start before any of our code runs; after
// the configured tries the guard puts the previous binary back, which
// starts, and the agent records the rollback and blocklists the release.
func TestGuardRollsBackCrashingBinary(t *testing.T) {
	repo := tuftest.New(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "gateway")
	if err := os.WriteFile(app, []byte("#!/bin/sh\necho gateway 1.0.0\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.json")
	os.WriteFile(root, repo.Root(), 0o600)
	cfg := filepath.Join(dir, "config.json")
	writeJSON(t, cfg, map[string]any{
		"hardware": "gw", "state_dir": filepath.Join(dir, "state"), "root": root,
		"metadata_url": repo.MetadataURL(), "targets_url": repo.TargetsURL(),
		"external_start_counter": true, "tries": 3,
		"components": []any{map[string]any{"name": "app", "type": "file", "path": app, "mode": "0755", "factory_version": "1.0.0"}},
	})
	// The new version segfaults-equivalent at once: exit 139, no output.
	repo.AddTarget("app/1.1.0", []byte("#!/bin/sh\nkill -SEGV $$\n"), verify.Custom{Component: "app", Version: "1.1.0", Hardware: []string{"gw"}})
	repo.Publish()
	if out, err := command(t, "-config", cfg, "install").CombinedOutput(); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}

	crashes := 0
	for start := 1; ; start++ {
		if start > 10 {
			t.Fatal("the crashing binary was never rolled back")
		}
		if out, err := command(t, "-config", cfg, "guard", "-component", "app").CombinedOutput(); err != nil {
			t.Fatalf("start %d: guard: %v\n%s", start, err, out)
		}
		out, err := exec.CommandContext(context.Background(), app).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			crashes++
			continue // Restart=on-failure
		}
		if err != nil {
			t.Fatalf("start %d: %v", start, err)
		}
		if got := strings.TrimSpace(string(out)); got != "gateway 1.0.0" {
			t.Fatalf("start %d: the application that started says %q, want the previous version", start, got)
		}
		break
	}
	if crashes != 3 {
		t.Errorf("crashed %d times before the rollback, want 3 (tries)", crashes)
	}
	// The agent in the previous version confirms: the rollback is
	// recorded, and the release is never tried again.
	// It exits 0: this boot, of the previous version, is good.
	out, err := command(t, "-config", cfg, "confirm").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "rolled-back") {
		t.Fatalf("confirm: err %v, want exit 0 and a recorded rollback:\n%s", err, out)
	}
	// check says why nothing is installed: the release is blocklisted.
	out, err = command(t, "-config", cfg, "check").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitBlocked || !strings.Contains(string(out), "blocklisted") {
		t.Fatalf("check after rollback: %v, want exit %d (blocklisted)\n%s", err, exitBlocked, out)
	}
	out, _ = command(t, "-config", cfg, "status").CombinedOutput()
	if !strings.Contains(string(out), "blocklisted  app 1.1.0") {
		t.Errorf("status does not show the blocklisted release:\n%s", out)
	}
}
