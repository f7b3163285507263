package oci_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/oci"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// A device whose application is a container: the updater installs signed
// manifests into the component, which pulls the image from the registry
// when it arms a slot; runc starts the booted slot's image and checks it.
func Example() {
	ctx := context.Background()
	root, err := os.ReadFile("/etc/gateway/root.json")
	if err != nil {
		log.Fatal(err)
	}
	const tuf = "https://updates.example.com"
	// A TUF client of its own (its own directory) resolves a manifest to
	// its signed metadata: the registry repository and the platform map.
	vc, err := verify.New(verify.Config{Root: root, MetadataURL: tuf + "/metadata/", TargetsURL: tuf + "/targets/", Dir: "/var/lib/gateway/oci-tuf"})
	if err != nil {
		log.Fatal(err)
	}
	app, err := oci.New(oci.Config{
		Dir:      "/var/lib/gateway/app",
		Hardware: "gateway-arm64",
		Registry: oci.RegistryConfig{Host: "registry.example.com"},
		Resolve:  oci.TUFResolver(vc),
	})
	if err != nil {
		log.Fatal(err)
	}
	runc := &oci.Runc{Component: app, ID: "gateway-app", Check: []string{"/bin/gateway", "-healthcheck"}}
	u, err := updater.New(updater.Config{
		Hardware: "gateway-arm64", StateDir: "/var/lib/gateway/state", TrustedRoot: root,
		MetadataURL: tuf + "/metadata/", TargetsURL: tuf + "/targets/",
		Components:   []updater.Component{{Name: "app", Slots: app.Slots(), Boot: app, FactoryVersion: "0.0.0"}},
		HealthChecks: []health.HealthCheck{health.Retry(runc.HealthCheck(), time.Second)},
		Restart:      runc.Restart,
	})
	if err != nil {
		log.Fatal(err)
	}
	// At start: run the committed (or trial) image, then confirm and poll.
	if err := runc.Restart(ctx, "app"); err != nil {
		log.Fatal(err)
	}
	if err := u.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}
