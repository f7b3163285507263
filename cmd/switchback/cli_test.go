package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// fileDevice writes the configuration of a device with one "file"
// component, app 1.0.0 on hardware gw, served by repo; edit changes the
// configuration before it is written. It returns the configuration's path.
func fileDevice(t *testing.T, repo *tuftest.Repo, edit func(cfg, app map[string]any)) string {
	t.Helper()
	dir := t.TempDir()
	app := filepath.Join(dir, "gateway")
	if err := os.WriteFile(app, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, repo.Root(), 0o600); err != nil {
		t.Fatal(err)
	}
	comp := map[string]any{"name": "app", "type": "file", "path": app, "factory_version": "1.0.0"}
	cfg := map[string]any{
		"hardware": "gw", "state_dir": filepath.Join(dir, "state"), "root": root,
		"metadata_url": repo.MetadataURL(), "targets_url": repo.TargetsURL(),
		"components": []any{comp},
	}
	if edit != nil {
		edit(cfg, comp)
	}
	path := filepath.Join(dir, "config.json")
	writeJSON(t, path, cfg)
	return path
}

func release(version string, hardware ...string) verify.Custom {
	return verify.Custom{Component: "app", Version: version, Hardware: hardware}
}

// TestNothingToInstallSaysWhy: check and install said "up to date" and
// exited 0 whatever the reason nothing was installed. Each reason now has
// its own exit status and message.
func TestNothingToInstallSaysWhy(t *testing.T) {
	tests := []struct {
		name     string
		publish  map[string]verify.Custom
		edit     func(cfg, app map[string]any)
		wantCode int
		wantOut  []string
	}{
		{name: "up to date", publish: map[string]verify.Custom{"app/1.0.0": release("1.0.0", "gw")},
			wantCode: exitOK, wantOut: []string{"up to date"}},
		{name: "older only", publish: map[string]verify.Custom{"app/0.9.0": release("0.9.0", "gw")},
			wantCode: exitOK, wantOut: []string{"up to date"}},
		{name: "component not published", publish: map[string]verify.Custom{"web/2.0.0": {Component: "web", Version: "2.0.0", Hardware: []string{"gw"}}},
			wantCode: exitNotPublished, wantOut: []string{"publishes no release", "app"}},
		{name: "hardware matches no release", publish: map[string]verify.Custom{"app/1.1.0": release("1.1.0", "gw-other")},
			wantCode: exitIncompatible, wantOut: []string{"no release for this device", `hardware "gw" not in ["gw-other"]`}},
		{name: "below min_version", publish: map[string]verify.Custom{"app/2.0.0": {Component: "app", Version: "2.0.0", Hardware: []string{"gw"}, MinVersion: "1.5.0"}},
			wantCode: exitIncompatible, wantOut: []string{"below min_version 1.5.0"}},
		{name: "factory version not semver", publish: map[string]verify.Custom{"app/1.1.0": release("1.1.0", "gw")},
			edit:     func(_, app map[string]any) { app["factory_version"] = "factory" },
			wantCode: exitConfig, wantOut: []string{"factory_version", `"factory"`}},
	}
	for _, tt := range tests {
		for _, cmd := range []string{"check", "install"} {
			t.Run(tt.name+"/"+cmd, func(t *testing.T) {
				repo := tuftest.New(t)
				for path, c := range tt.publish {
					repo.AddTarget(path, []byte(path), c)
				}
				repo.Publish()
				cfg := fileDevice(t, repo, tt.edit)
				out, code := switchback(t, cfg, cmd)
				if code != tt.wantCode {
					t.Errorf("exit %d, want %d\n%s", code, tt.wantCode, out)
				}
				for _, want := range tt.wantOut {
					if !strings.Contains(out, want) {
						t.Errorf("output does not say %q:\n%s", want, out)
					}
				}
				if tt.wantCode != exitOK && strings.Contains(out, "up to date") {
					t.Errorf("says up to date:\n%s", out)
				}
			})
		}
	}
}

// TestInstallFile: -file takes a path relative to the working directory
// (it was turned into a file: URL as it stood, which failed), and an image
// of a component this device does not have is refused with exit 5.
func TestInstallFile(t *testing.T) {
	repo := tuftest.New(t)
	img := []byte("#!/bin/sh\necho 1.1.0\n")
	web := []byte("web 2.0.0")
	repo.AddTarget("app/1.1.0", img, release("1.1.0", "gw"))
	repo.AddTarget("web/2.0.0", web, verify.Custom{Component: "web", Version: "2.0.0", Hardware: []string{"gw"}})
	repo.Publish()
	cfg := fileDevice(t, repo, nil)
	dir := t.TempDir()
	for name, b := range map[string][]byte{"app.img": img, "web.img": web} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	if out, code := switchback(t, cfg, "install", "-file", "web.img"); code != exitIncompatible || !strings.Contains(out, `component "web" is not configured`) {
		t.Errorf("install -file of another component: exit %d, want %d\n%s", code, exitIncompatible, out)
	}
	if out, code := switchback(t, cfg, "install", "-file", "app.img"); code != exitOK || !strings.Contains(out, "armed") {
		t.Fatalf("install -file with a relative path: exit %d\n%s", code, out)
	}
	if out, code := switchback(t, cfg, "install", "-file", "missing.img"); code != exitFailure || !strings.Contains(out, filepath.Join(dir, "missing.img")) {
		t.Errorf("install -file of a missing file: exit %d, want %d and the file named\n%s", code, exitFailure, out)
	}
}

// TestHelp: -h of the tool and of every command exits 0 and documents the
// flags, the exit statuses, the configuration file's location and format.
func TestHelp(t *testing.T) {
	keys := []string{defaultConfigPath}
	for _, f := range configFields() {
		keys = append(keys, `"`+f.key+`"`)
	}
	cases := map[string][]string{
		"-h":            {"status", "check", "install", "confirm", "mark-good", "mark-bad", "rollback", "env", "guard", "-config", "-v"},
		"help":          {"status", "guard", "-config"},
		"help config":   {},
		"help install":  {"-file"},
		"status -h":     {},
		"check -h":      {"up to date"},
		"install -h":    {"-file", "progress"},
		"confirm -h":    {"confirm_timeout"},
		"mark-good -h":  {"-component"},
		"mark-bad -h":   {"-component", "-slot"},
		"rollback -h":   {"-component"},
		"env -h":        {"env get", "env set"},
		"env get -h":    {"-component"},
		"env set -h":    {"-component"},
		"guard -h":      {"-component", "required"},
		"-config x -h":  {"-config"},
		"install -help": {"-file"},
	}
	for args, want := range cases {
		t.Run(args, func(t *testing.T) {
			var out, errb bytes.Buffer
			// No configuration file: help must not need one.
			code := run(t.Context(), strings.Fields(args), &out, &errb)
			if code != exitOK || errb.Len() > 0 {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing on stderr", code, errb.String())
			}
			if args != "help config" {
				want = append(want, "exit status", "blocklisted")
			}
			for _, w := range append(want, keys...) {
				if !strings.Contains(out.String(), w) {
					t.Errorf("help does not mention %s:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestConfigDocumented: every key of the configuration file is in the
// package doc (go doc) and in the help, so neither falls behind the code.
func TestConfigDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range configFields() {
		for name, text := range map[string]string{"doc.go": string(doc), "configHelp": configHelp} {
			if !strings.Contains(text, `"`+f.key+`"`) {
				t.Errorf("%s does not document %q", name, f.key)
			}
		}
	}
	for code := exitOK; code <= exitBlocked; code++ {
		line := fmt.Sprintf("  %d  ", code)
		if !strings.Contains(exitHelp, line) || !strings.Contains(string(doc), fmt.Sprintf("//\t%d  ", code)) {
			t.Errorf("exit status %d is not documented in the help and doc.go", code)
		}
	}
}

// TestErrorsSpeakConfigWords: errors name the setting as the file spells it
// and the file or URL concerned, not the library's Go names.
func TestErrorsSpeakConfigWords(t *testing.T) {
	repo := tuftest.New(t)
	tests := []struct {
		name    string
		edit    func(cfg, app map[string]any)
		want    []string
		notWant []string
	}{
		{"root missing", func(cfg, _ map[string]any) { cfg["root"] = "/nonexistent/root.json" },
			[]string{"root", "/nonexistent/root.json", "config.json"}, nil},
		{"root not a root", func(cfg, _ map[string]any) {
			p := filepath.Join(t.TempDir(), "junk.json")
			os.WriteFile(p, []byte(`{"signed":{}}`), 0o600)
			cfg["root"] = p
		}, []string{"root ", "junk.json"}, []string{"Config.Root", "TrustedRoot"}},
		{"no metadata_url", func(cfg, _ map[string]any) { delete(cfg, "metadata_url") },
			[]string{"metadata_url"}, []string{"MetadataURL"}},
		{"no hardware", func(cfg, _ map[string]any) { delete(cfg, "hardware") },
			[]string{"hardware is required"}, []string{"Hardware"}},
		{"tries", func(cfg, _ map[string]any) { cfg["tries"] = 12 },
			[]string{"tries 12"}, []string{"Tries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fileDevice(t, repo, tt.edit)
			out, code := switchback(t, cfg, "status")
			if code != exitConfig {
				t.Errorf("exit %d, want %d", code, exitConfig)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("error does not say %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("error says %q, not the file's word:\n%s", w, out)
				}
			}
		})
	}
	// The URL of a repository that cannot be reached is named.
	cfg := fileDevice(t, repo, func(cfg, _ map[string]any) { cfg["metadata_url"] = "http://127.0.0.1:1/metadata/" })
	if out, code := switchback(t, cfg, "check"); code != exitFailure || !strings.Contains(out, "127.0.0.1:1") {
		t.Errorf("unreachable repository: exit %d, want %d and the URL named:\n%s", code, exitFailure, out)
	}
}

func TestExitCode(t *testing.T) {
	incompatible := fmt.Errorf("%w: app: %w", verify.ErrIncompatible, errors.New("hardware"))
	tests := []struct {
		err  error
		want int
	}{
		{nil, exitOK},
		{errHelpShown, exitOK},
		{errors.New("disk on fire"), exitFailure},
		{updater.ErrRolledBack, exitFailure},
		{usageError{"bad flag"}, exitUsage},
		{configError{errors.New("no root")}, exitConfig},
		{fmt.Errorf("check: %w", verify.ErrBadVersion), exitConfig},
		{fmt.Errorf("check: %w: %w", updater.ErrNoUpdate, fmt.Errorf("%w: app", verify.ErrNotPublished)), exitNotPublished},
		{fmt.Errorf("check: %w: %w", updater.ErrNoUpdate, incompatible), exitIncompatible},
		{fmt.Errorf("check: %w: %w", updater.ErrNoUpdate, errors.Join(incompatible, fmt.Errorf("%w: %w", verify.ErrIncompatible, verify.ErrBlocked))), exitBlocked},
		{errors.Join(fmt.Errorf("%w: web", verify.ErrNotPublished), incompatible), exitIncompatible},
		{errors.Join(fmt.Errorf("%w: web", verify.ErrNotPublished), fmt.Errorf("x: %w", verify.ErrBadVersion)), exitConfig},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
	if !upToDate(fmt.Errorf("check: %w", updater.ErrNoUpdate)) || upToDate(fmt.Errorf("%w: %w", updater.ErrNoUpdate, incompatible)) {
		t.Error("upToDate must hold for a bare ErrNoUpdate only")
	}
}

// fakeClock advances by step at every reading.
func fakeClock(step time.Duration) func() time.Time {
	now := time.Unix(0, 0)
	return func() time.Time { now = now.Add(step); return now }
}

func TestProgress(t *testing.T) {
	const total = 1000
	feed := func(p *progress) {
		for done := int64(0); done <= total; done += 50 {
			p.update(updater.Progress{Component: "app", Done: done, Total: total})
		}
		p.end()
	}
	t.Run("plain lines", func(t *testing.T) {
		var out bytes.Buffer
		p := newProgress(&out, false)
		p.now = fakeClock(time.Second)
		feed(p)
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != 10 || lines[0] != "app: 10% 100 B of 1000 B, 50 B/s" || !strings.HasPrefix(lines[9], "app: 100% 1000 B of 1000 B") {
			t.Errorf("got %d lines, want one per tenth:\n%s", len(lines), out.String())
		}
		if strings.Contains(out.String(), "\r") {
			t.Error("carriage return outside a terminal")
		}
	})
	t.Run("terminal", func(t *testing.T) {
		var out bytes.Buffer
		p := newProgress(&out, true)
		p.now = fakeClock(progressTick / 2) // every other update is drawn
		feed(p)
		s := out.String()
		if n := strings.Count(s, "\r"); n < 5 || n > 12 {
			t.Errorf("%d redraws for 21 updates at two per tick, want about 11:\n%q", n, s)
		}
		if !strings.HasSuffix(s, "app: 100% 1000 B of 1000 B, 500 B/s\x1b[K\n") || strings.Count(s, "\n") != 1 {
			t.Errorf("want one line redrawn, ended at 100%%: %q", s)
		}
	})
	t.Run("restart", func(t *testing.T) {
		var out bytes.Buffer
		p := newProgress(&out, false)
		p.now = fakeClock(time.Second)
		p.update(updater.Progress{Component: "app", Done: 900, Total: total})
		p.update(updater.Progress{Component: "app", Done: 100, Total: total}) // a fallback starts again
		p.update(updater.Progress{Component: "app", Done: 200, Total: total})
		// Steps and rate count from where each transfer began.
		if got := out.String(); got != "app: 20% 200 B of 1000 B, 100 B/s\n" {
			t.Errorf("got %q", got)
		}
	})
}

// TestInstallServerIgnoresRange: a static server without Range support
// (Python's http.server) and a connection cut mid-image. The resumed
// request asks for the rest with Range, gets the whole file with 200, and
// the install starts again from byte 0: it still ends verified and armed.
func TestInstallServerIgnoresRange(t *testing.T) {
	repo := tuftest.New(t)
	img := bytes.Repeat([]byte("switchback 1.1.0 "), 64<<10) // about 1 MiB
	repo.AddTarget("app/1.1.0", img, release("1.1.0", "gw"))
	repo.Publish()
	var mu sync.Mutex
	var ranges []string // the Range header of each target request
	var served atomic.Int64
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/targets/") {
				h.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			ranges = append(ranges, r.Header.Get("Range"))
			first := len(ranges) == 1
			mu.Unlock()
			r.Header.Del("Range") // the server ignores it: 200, whole file
			if first {
				w = &cutWriter{ResponseWriter: w, left: int64(len(img)) / 3}
			}
			h.ServeHTTP(countWriter{w, &served}, r)
		})
	})
	cfg := fileDevice(t, repo, nil)
	out, code := switchback(t, cfg, "install")
	if code != exitOK || !strings.Contains(out, "armed") {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) < 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Errorf("target requests with Range headers %q, want a plain GET, then a resume asking for a range", ranges)
	}
	// The bytes before the cut, less the last write the cut interrupted,
	// then the whole image again.
	if got, min := served.Load(), int64(len(img))+int64(len(img))/4; got < min {
		t.Errorf("server sent %d bytes, want at least %d (most of the cut third, then the whole image again)", got, min)
	}
	if out, _ := switchback(t, cfg, "status"); !strings.Contains(out, "1.1.0 (complete)") {
		t.Errorf("status after the install:\n%s", out)
	}
}

// cutWriter drops the connection once left bytes are written.
type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) >= c.left {
		c.ResponseWriter.Write(p[:c.left])
		if f, ok := c.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		panic(http.ErrAbortHandler) // the connection drops
	}
	c.left -= int64(len(p))
	return c.ResponseWriter.Write(p)
}

// countWriter counts the body bytes a handler writes.
type countWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) || isTerminal(&bytes.Buffer{}) {
		t.Error("a file or a buffer taken for a terminal")
	}
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		ci.Skipf(t, "no pseudo-terminal to test with: %v", err)
	}
	defer pty.Close()
	if !isTerminal(pty) {
		t.Error("a pseudo-terminal not taken for a terminal")
	}
}
