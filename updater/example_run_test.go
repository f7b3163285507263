package updater_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// publishExample makes a signed repository in dir/repo holding release
// 1.1.0 of the examples' application (a shell script), and returns its
// root metadata.
func publishExample(dir string) ([]byte, error) {
	ctx := context.Background()
	r, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(dir, "repo")}, repository.InitOptions{KeysDir: filepath.Join(dir, "keys")})
	if err != nil {
		return nil, err
	}
	next := strings.NewReader("#!/bin/sh\necho gateway 1.1.0 runs\n")
	if _, err := r.AddTarget(ctx, "app/gateway-1.1.0", next, verify.Custom{Component: "app", Version: "1.1.0", Hardware: []string{"gw-x86-v2"}}, repository.AddOptions{}); err != nil {
		return nil, err
	}
	if err := r.Publish(ctx); err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(r.MetadataDir(), "1.root.json"))
}

// exampleUpdater is the device of ExampleUpdater_Install: version 1.0.0 of
// the application in a file slot, release 1.1.0 in a local repository.
func exampleUpdater() (*updater.Updater, func()) {
	dir, err := os.MkdirTemp("", "switchback-example")
	if err != nil {
		log.Fatal(err)
	}
	root, err := publishExample(dir)
	if err != nil {
		log.Fatal(err)
	}
	bin := filepath.Join(dir, "gateway")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho gateway 1.0.0 runs\n"), 0o755); err != nil {
		log.Fatal(err)
	}
	app, err := slots.NewFile(bin)
	if err != nil {
		log.Fatal(err)
	}
	u, err := updater.New(updater.Config{
		Hardware:    "gw-x86-v2",
		StateDir:    filepath.Join(dir, "state"),
		TrustedRoot: root,
		MetadataURL: "file://" + filepath.Join(dir, "repo", "metadata") + "/",
		TargetsURL:  "file://" + filepath.Join(dir, "repo", "targets") + "/",
		Components:  []updater.Component{{Name: "app", Slots: app.Slots(), Boot: app, FactoryVersion: "1.0.0"}},
		Events: func(e updater.Event) {
			if sc, ok := e.(updater.StateChanged); ok {
				fmt.Printf("%s %s: %s → %s\n", sc.Component, sc.Version, sc.From, sc.To)
			}
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	return u, func() { os.RemoveAll(dir) }
}

// TestExample runs the package example in a child process against a local
// repository: it must install 1.1.0 and replace itself with it.
func TestExample(t *testing.T) {
	if dir := os.Getenv("SWITCHBACK_EXAMPLE_DIR"); dir != "" {
		root, err := os.ReadFile(filepath.Join(dir, "root.json"))
		if err != nil {
			t.Fatal(err)
		}
		rootJSON, appPath, stateDir = root, filepath.Join(dir, "gateway"), filepath.Join(dir, "state")
		updatesURL = "file://" + filepath.Join(dir, "repo")
		Example() // execs the new version, or exits through log.Fatal
		t.Fatal("Example returned")
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := t.TempDir()
	root, err := publishExample(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.json"), root, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gateway"), []byte("#!/bin/sh\necho gateway 1.0.0 runs\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExample$")
	cmd.Env = append(os.Environ(), "SWITCHBACK_EXAMPLE_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("example: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "gateway 1.1.0 runs") {
		t.Errorf("the example did not start the new version:\n%s", out)
	}
}
