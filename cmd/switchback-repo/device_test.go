package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/updater"
)

// deviceUpdate is the last step of the end-to-end test: a device built
// from the library, trusting only 1.root.json, updates its rootfs
// component (a file slot) from the repository the script built, served on
// 127.0.0.1, and commits the new version after a restart.
func deviceUpdate(t *testing.T, work, baseURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	root, err := os.ReadFile(filepath.Join(work, "trusted-root.json"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(work, "rootfs-1.1.0.img"))
	if err != nil {
		t.Fatal(err)
	}
	dev := t.TempDir()
	image := filepath.Join(dev, "rootfs.img")
	if err := os.WriteFile(image, []byte("factory image 1.0.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	restarts := 0
	start := func() *updater.Updater {
		t.Helper()
		file, err := slots.NewFile(image)
		if err != nil {
			t.Fatal(err)
		}
		u, err := updater.New(updater.Config{
			Hardware:    "board-a",
			StateDir:    filepath.Join(dev, "state"),
			TrustedRoot: root,
			MetadataURL: baseURL + "/metadata/",
			TargetsURL:  baseURL + "/targets/",
			Components: []updater.Component{{
				Name: "rootfs", Slots: file.Slots(), Boot: file, FactoryVersion: "1.0.0",
			}},
			Restart: func(context.Context, string) error { restarts++; return nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	u := start()
	ups, err := u.Check(ctx)
	if err != nil {
		t.Fatalf("device check: %v", err)
	}
	if len(ups) != 1 || ups[0].To != "1.1.0" {
		t.Fatalf("device check = %+v, want one update to 1.1.0", ups)
	}
	if err := u.Install(ctx, ups[0]); err != nil {
		t.Fatalf("device install: %v", err)
	}
	if restarts != 1 {
		t.Fatalf("restarts = %d, want 1", restarts)
	}
	// The restarted process confirms the trial.
	u.Close()
	u = start()
	if err := u.Confirm(ctx); err != nil {
		t.Fatalf("device confirm: %v", err)
	}
	st, err := u.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Components[0].Installed; got != "1.1.0" {
		t.Errorf("installed = %q, want 1.1.0", got)
	}
	got, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("running image is %d bytes, want the %d uncompressed bytes of rootfs-1.1.0.img", len(got), len(want))
	}
	if _, err := u.Check(ctx); err == nil {
		t.Error("a second check found another update")
	}
}
