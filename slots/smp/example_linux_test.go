package smp_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// Each MCU behind the gateway is an updater component. Here one on a
// serial line at 115200 baud: a simulated MCU on a pseudo-terminal, whose
// terminal the gateway opens as it would open /dev/ttyACM0, and a signed
// repository on 127.0.0.1 publishing firmware 2.0.0.
func Example_updater() {
	work, err := os.MkdirTemp("", "smp-updater")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	v1 := smptest.BuildImage([]byte("firmware 1"), smptest.ImageOptions{Version: smp.ImageVersion{Major: 1}})
	v2 := smptest.BuildImage([]byte("firmware 2"), smptest.ImageOptions{Version: smp.ImageVersion{Major: 2}})
	root, metadataURL, targetsURL, stop := serveFirmware(work, "sensor-fw/2.0.0/zephyr.signed.bin", v2,
		verify.Custom{Component: "sensor-fw", Version: "2.0.0", Hardware: []string{"sensor-board-r2"}})
	defer stop()
	mcu, err := smptest.New(smptest.Config{Dir: filepath.Join(work, "mcu"), Factory: v1})
	if err != nil {
		log.Fatal(err)
	}
	defer mcu.Close()
	master, tty, err := newPTY()
	if err != nil {
		log.Fatal(err)
	}
	mcu.ServeSerial(master)

	port, err := smp.OpenSerial(tty, 115200) // "/dev/ttyACM0"
	if err != nil {
		log.Fatal(err)
	}
	dev, err := smp.New(smp.Config{Name: "sensor-01", Dir: filepath.Join(work, "gateway", "mcu", "sensor-01"),
		Transport: port, ResetGrace: 10 * time.Millisecond}) // the default grace suits a real MCU
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	u, err := updater.New(updater.Config{
		Hardware: "sensor-board-r2", StateDir: filepath.Join(work, "gateway", "switchback"),
		TrustedRoot: root, MetadataURL: metadataURL, TargetsURL: targetsURL,
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
	defer u.Close()

	ctx := context.Background()
	ups, err := u.Check(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, up := range ups {
		if err := u.Install(ctx, up); err != nil { // upload, test, reset
			log.Fatal(err)
		}
		fmt.Println("installed", up.Component, up.From, "->", up.To)
	}
	if err := u.Confirm(ctx); err != nil { // health checks, then commit
		log.Fatal(err)
	}
	st, err := u.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("confirmed", st.Components[0].Name, st.Components[0].Installed)
	// Output:
	// installed sensor-fw 1.0.0 -> 2.0.0
	// confirmed sensor-fw 2.0.0
}

// serveFirmware stands in for the update server: it publishes one
// firmware release in a signed repository in work and serves it on
// 127.0.0.1. It returns the root.json the gateway trusts, the metadata and
// targets URLs, and the function that stops the server.
func serveFirmware(work, path string, image []byte, custom verify.Custom) (root []byte, metadataURL, targetsURL string, stop func()) {
	ctx := context.Background()
	repo, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(work, "repo")},
		repository.InitOptions{KeysDir: filepath.Join(work, "keys")})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := repo.AddTarget(ctx, path, strings.NewReader(string(image)), custom, repository.AddOptions{}); err != nil {
		log.Fatal(err)
	}
	if err := repo.Publish(ctx); err != nil {
		log.Fatal(err)
	}
	if root, err = os.ReadFile(filepath.Join(repo.MetadataDir(), "1.root.json")); err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir())))
	return root, srv.URL + "/metadata/", srv.URL + "/targets/", srv.Close
}
