package updater_test

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
)

// Where the example's application lives and where its updates come from
// (TestExample points them at a temporary directory).
var (
	rootJSON   []byte // in a real program: //go:embed root.json
	appPath    = "/opt/gateway/bin/gateway"
	stateDir   = "/var/lib/switchback"
	updatesURL = "https://updates.example.com"
)

// An application that updates its own binary: two versions behind an
// atomic symlink, committed once its API answers. Run returns when the new
// version is armed, and the program replaces itself with it; the new
// version's Run confirms it first thing.
func Example() {
	app, err := slots.NewFile(appPath)
	if err != nil {
		log.Fatal(err)
	}
	u, err := updater.New(updater.Config{
		Hardware:    "gw-x86-v2",
		StateDir:    stateDir,
		TrustedRoot: rootJSON,
		MetadataURL: updatesURL + "/metadata/",
		TargetsURL:  updatesURL + "/targets/",
		Components: []updater.Component{{
			Name: "app", Slots: app.Slots(), Boot: app, FactoryVersion: "1.0.0",
		}},
		HealthChecks: []health.HealthCheck{
			health.HTTP("http://127.0.0.1:8080/healthz"),
		},
		// No Restart function: Run returns ErrRestartRequired instead.
		Logger: slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	// Confirms the running version, then polls hourly with jitter.
	err = u.Run(context.Background())
	if errors.Is(err, updater.ErrRestartRequired) {
		// A new version is armed (or a failed one rolled back): start the
		// version the symlink now names in place of this process. With A/B
		// partitions, reboot instead, so that the bootloader tries the
		// armed slot: syscall.Sync(), then
		// syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART).
		err = syscall.Exec(appPath, os.Args, os.Environ())
	}
	log.Fatal(err)
}

// One update cycle, step by step, reporting state changes.
func ExampleUpdater_Install() {
	// Made by updater.New, with Config.Events printing StateChanged
	// events, and no Restart function.
	u, cleanup := exampleUpdater()
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	ups, err := u.Check(ctx)
	if errors.Is(err, updater.ErrNoUpdate) {
		fmt.Println("up to date")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	for _, up := range ups {
		fmt.Printf("installing %s %s → %s\n", up.Component, up.From, up.To)
		err := u.Install(ctx, up)
		switch {
		case errors.Is(err, updater.ErrRestartRequired):
			fmt.Println("armed: restart to try it")
		case err != nil:
			log.Print(err) // nothing was activated; the next Install resumes
		}
	}
	// Output:
	// installing app 1.0.0 → 1.1.0
	// app 1.1.0: idle → downloading
	// app 1.1.0: downloading → verified
	// app 1.1.0: verified → armed
	// armed: restart to try it
}
