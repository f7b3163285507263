package smp_test

import (
	"context"
	"log"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/updater"
)

// Each MCU behind the gateway is an updater component. Here one on a
// serial line at 115200 baud.
func Example_updater() {
	port, err := smp.OpenSerial("/dev/ttyACM0", 115200)
	if err != nil {
		log.Fatal(err)
	}
	dev, err := smp.New(smp.Config{Name: "sensor-01", Dir: "/var/lib/gateway/mcu/sensor-01", Transport: port})
	if err != nil {
		log.Fatal(err)
	}
	u, err := updater.New(updater.Config{
		Hardware: "sensor-board-r2", StateDir: "/var/lib/gateway/switchback",
		// TrustedRoot, MetadataURL, TargetsURL as for any component.
		Components: []updater.Component{{Name: "sensor-fw", Slots: dev.Slots(), Boot: dev, FactoryVersion: "1.0.0"}},
		HealthChecks: []health.HealthCheck{
			dev.ImageCheck(),
			health.Func("sensor reads", func(ctx context.Context) error {
				_, err := dev.Client().Echo(ctx, "ping") // or a request to the application's own group
				return err
			}),
		},
		Restart: func(ctx context.Context, component string) error { return dev.Reset(ctx) },
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = u
}
