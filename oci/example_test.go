package oci_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/oci"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// Where the device program of Example finds its trusted root, its update
// server and registry, and keeps its state. TestExample points them at a
// signed test repository, the test registry and a temporary directory.
var (
	rootFile     = "/etc/gateway/root.json"
	tuf          = "https://updates.example.com"
	registryHost = "registry.example.com"
	dataDir      = "/var/lib/gateway"
)

// A device whose application is a container: the updater installs signed
// manifests into the component, which pulls the image from the registry
// when it arms a slot; runc starts the booted slot's image and checks it.
// The program runs until SIGTERM; at each start it confirms a pending
// trial. TestExample runs it as a device would: it installs v1, and after
// a restart commits v1 and installs v2.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := os.ReadFile(rootFile)
	if err != nil {
		log.Fatal(err)
	}
	// A TUF client of its own (its own directory) resolves a manifest to
	// its signed metadata: the registry repository and the platform map.
	vc, err := verify.New(verify.Config{Root: root, MetadataURL: tuf + "/metadata/", TargetsURL: tuf + "/targets/", Dir: filepath.Join(dataDir, "oci-tuf")})
	if err != nil {
		log.Fatal(err)
	}
	app, err := oci.New(oci.Config{
		Dir:      filepath.Join(dataDir, "app"),
		Hardware: "gateway-arm64",
		// The transfer rules (StallTimeout, RateLimit, Pause…) are the
		// updater's: give both the same values.
		Registry: oci.RegistryConfig{Host: registryHost},
		Resolve:  oci.TUFResolver(vc),
	})
	if err != nil {
		log.Fatal(err)
	}
	runc := &oci.Runc{Component: app, ID: "gateway-app", Check: []string{"/bin/gateway", "-healthcheck"}}
	u, err := updater.New(updater.Config{
		Hardware: "gateway-arm64", StateDir: filepath.Join(dataDir, "state"), TrustedRoot: root,
		MetadataURL: tuf + "/metadata/", TargetsURL: tuf + "/targets/",
		Components:   []updater.Component{{Name: "app", Slots: app.Slots(), Boot: app, FactoryVersion: "0.0.0"}},
		HealthChecks: []health.HealthCheck{health.Retry(runc.HealthCheck(), time.Second)},
		Restart:      runc.Restart,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer u.Close()
	// At start: run the committed (or trial) image, then confirm and poll.
	if err := runc.Restart(ctx, "app"); err != nil {
		log.Fatal(err)
	}
	if err := u.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}
