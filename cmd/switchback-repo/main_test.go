package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

// sb runs the command in-process.
func sb(t *testing.T, wantCode int, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	if code != wantCode {
		t.Fatalf("switchback-repo %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, out.String(), errb.String())
	}
	return out.String() + errb.String()
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, exitUsage, "usage"},
		{"unknown command", []string{"frob"}, exitUsage, "unknown command"},
		{"bad flag", []string{"init", "-bogus"}, exitUsage, "flag provided but not defined"},
		{"bad threshold", []string{"init", "-repo", repo, "-keys", keys, "-threshold", "targets=zero"}, exitUsage, "positive number"},
		{"bad role", []string{"init", "-repo", repo, "-keys", keys, "-expiry", "nobody=1h"}, exitUsage, "unknown role"},
		{"no repo", []string{"status", "-repo", repo, "-keys", keys}, exitFail, "no repository"},
		{"add without metadata", []string{"add", "-repo", repo, "-component", "x", "f"}, exitUsage, "version missing"},
		{"rotate no role", []string{"rotate", "-repo", repo}, exitUsage, "-role"},
		{"verify no root", []string{"verify", "-repo", repo}, exitUsage, "-root"},
		{"sign nothing", []string{"sign"}, exitUsage, "export|sign|merge"},
		{"help", []string{"help"}, exitOK, "commands"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := sb(t, tt.code, tt.args...)
			if !strings.Contains(out, tt.want) {
				t.Errorf("output %q does not contain %q", out, tt.want)
			}
		})
	}
}

func TestThresholdSigningFlow(t *testing.T) {
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	sb(t, exitOK, "init", "-repo", repo, "-keys", keys, "-threshold", "targets=2", "-key-type", "ecdsa-p256")
	// Move one targets key to "another machine".
	offline := filepath.Join(dir, "offline")
	if err := os.Mkdir(offline, 0o700); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(keys, "targets-*.pem"))
	if len(matches) != 2 {
		t.Fatalf("targets keys = %v, want 2", matches)
	}
	moved := filepath.Join(offline, filepath.Base(matches[0]))
	if err := os.Rename(matches[0], moved); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "app.bin")
	os.WriteFile(img, []byte("app 1"), 0o644)
	out := sb(t, exitPending, "add", "-repo", repo, "-keys", keys, "-component", "app", "-version", "1.0.0", "-hardware", "*", img)
	if !strings.Contains(out, "sign export") {
		t.Errorf("no hint about signing in %q", out)
	}
	out = sb(t, exitOK, "status", "-repo", repo, "-keys", keys)
	if !strings.Contains(out, "STAGED version 2") {
		t.Errorf("status does not show the staged targets:\n%s", out)
	}
	exported := filepath.Join(dir, "targets.json")
	sb(t, exitOK, "sign", "export", "-repo", repo, "-keys", keys, "-role", "targets", "-o", exported)
	sb(t, exitOK, "sign", "sign", "-key", moved, exported)
	out = sb(t, exitOK, "sign", "merge", "-repo", repo, "-keys", keys, exported)
	if !strings.Contains(out, "1 new signature(s) on targets") {
		t.Errorf("merge output %q", out)
	}
	out = sb(t, exitOK, "verify", "-repo", repo, "-root", filepath.Join(repo, "metadata", "1.root.json"), "-hardware", "any-board")
	if !strings.Contains(out, "install app/1.0.0/app.bin version 1.0.0") || !strings.Contains(out, "verified") {
		t.Errorf("verify output:\n%s", out)
	}
	out = sb(t, exitOK, "list", "-repo", repo, "-json")
	if !strings.Contains(out, `"path": "app/1.0.0/app.bin"`) {
		t.Errorf("list -json:\n%s", out)
	}
	sb(t, exitOK, "remove", "-repo", repo, "-keys", keys, "-no-publish", "app/1.0.0/app.bin")
	if out := sb(t, exitOK, "prune", "-repo", repo, "-keys", keys); !strings.Contains(out, "0 files removed") {
		t.Errorf("prune of an unexpired repository: %s", out)
	}
	sb(t, exitFail, "remove", "-repo", repo, "-keys", keys, "app/9/none")
}

// TestE2EScript builds the command and runs testdata/e2e.sh with the
// repository served on 127.0.0.1 (init, two releases, refresh, rotation of
// the targets key, verify), then updates a device built from the library
// from that server.
func TestE2EScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		ci.Skipf(t, "bash not found")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchback-repo")
	// go test puts its own GOROOT/bin first in PATH.
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(work, "repo"))))
	defer srv.Close()
	cmd := exec.Command(bash, "testdata/e2e.sh", work)
	cmd.Env = append(os.Environ(), "SWITCHBACK_REPO="+bin, "REPO_URL="+srv.URL)
	out, err := cmd.CombinedOutput()
	t.Logf("e2e.sh:\n%s", out)
	if err != nil {
		t.Fatalf("e2e.sh: %v", err)
	}
	if !strings.Contains(string(out), "e2e: ok") {
		t.Fatal("e2e.sh did not finish")
	}
	deviceUpdate(t, work, srv.URL)
}

func FuzzRoleValues(f *testing.F) {
	for _, s := range []string{"targets=2", "root=1,timestamp=3", "=", "a=", "x=y=z", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m := roleValues{}
		if err := m.Set(s); err != nil {
			return
		}
		for k, v := range m {
			if v == "" || strings.Contains(k, ",") {
				t.Errorf("Set(%q) gave %q=%q", s, k, v)
			}
		}
	})
}

// Root keys on a separate medium: day-to-day commands work without them;
// a key rotation is staged until they are brought in.
func TestOfflineRootKeys(t *testing.T) {
	dir := t.TempDir()
	repo, keys, usb := filepath.Join(dir, "repo"), filepath.Join(dir, "keys"), filepath.Join(dir, "usb")
	sb(t, exitOK, "init", "-repo", repo, "-keys", keys, "-root-keys", usb)
	if m, _ := filepath.Glob(filepath.Join(keys, "root-*.pem")); len(m) != 0 {
		t.Fatalf("root keys on the release machine: %v", m)
	}
	img := filepath.Join(dir, "fw.bin")
	os.WriteFile(img, []byte("fw"), 0o644)
	sb(t, exitOK, "add", "-repo", repo, "-keys", keys, "-component", "fw", "-version", "1.0.0", "-hardware", "h", img)
	sb(t, exitOK, "refresh", "-repo", repo, "-keys", keys)
	sb(t, exitOK, "status", "-repo", repo, "-keys", keys, "-warn", "1h")
	if out := sb(t, exitFail, "status", "-repo", repo, "-keys", keys, "-warn", "48h"); !strings.Contains(out, "timestamp v") {
		t.Errorf("status -warn 48h did not name the timestamp:\n%s", out)
	}
	sb(t, exitPending, "rotate", "-repo", repo, "-keys", keys, "-role", "timestamp")
	out := sb(t, exitOK, "publish", "-repo", repo, "-keys", keys+","+usb)
	if !strings.Contains(out, "root      v2") {
		t.Errorf("publish with the root keys:\n%s", out)
	}
	sb(t, exitOK, "rotate", "-repo", repo, "-keys", keys, "-keys", usb, "-role", "root", "-out", usb)
	out = sb(t, exitOK, "verify", "-repo", repo, "-root", filepath.Join(repo, "metadata", "1.root.json"), "-hardware", "h")
	if !strings.Contains(out, "trusted: root v3") || !strings.Contains(out, "install fw/1.0.0/fw.bin") {
		t.Errorf("verify:\n%s", out)
	}
}
