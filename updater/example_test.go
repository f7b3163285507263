package updater_test

import (
	"context"
	_ "embed"
	"errors"
	"log"
	"log/slog"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
)

var rootJSON []byte // in a real program: //go:embed root.json

// An application that updates its own binary: two versions behind an
// atomic symlink, committed once its API answers.
func Example() {
	app, err := slots.NewFile("/opt/gateway/bin/gateway")
	if err != nil {
		log.Fatal(err)
	}
	u, err := updater.New(updater.Config{
		Hardware:    "gw-x86-v2",
		StateDir:    "/var/lib/switchback",
		TrustedRoot: rootJSON,
		MetadataURL: "https://updates.example.com/metadata/",
		TargetsURL:  "https://updates.example.com/targets/",
		Components: []updater.Component{{
			Name: "app", Slots: app.Slots(), Boot: app, FactoryVersion: "1.0.0",
		}},
		HealthChecks: []health.HealthCheck{
			health.HTTP("http://127.0.0.1:8080/healthz"),
		},
		Restart: func(ctx context.Context, component string) error {
			log.Print("new version armed; exiting so that systemd restarts us")
			return errors.New("restart")
		},
		Logger: slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	// Confirms the running version, then polls hourly with jitter.
	if err := u.Run(context.Background()); err != nil {
		log.Print(err)
	}
}

// One update cycle, step by step, reporting progress.
func ExampleUpdater_Install() {
	var u *updater.Updater // made by updater.New, with Config.Events printing Progress events
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	ups, err := u.Check(ctx)
	if errors.Is(err, updater.ErrNoUpdate) {
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	for _, up := range ups {
		log.Printf("installing %s %s → %s", up.Component, up.From, up.To)
		if err := u.Install(ctx, up); err != nil {
			log.Print(err) // nothing was activated; the next Install resumes
		}
	}
}
