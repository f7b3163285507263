package oci

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// device is a component driven by the real updater, with the manifest
// signed in a TUF repository and the image in the registry.
type device struct {
	t     *testing.T
	repo  *tuftest.Repo
	c     *Component
	r     *Runc
	state string
	u     *updater.Updater // the running process's updater
}

func newDevice(t *testing.T, host string, repo *tuftest.Repo) *device {
	t.Helper()
	vc, err := verify.New(verify.Config{Root: repo.Root(), MetadataURL: repo.MetadataURL(), TargetsURL: repo.TargetsURL(), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Dir: t.TempDir(), Hardware: "board-a", Registry: RegistryConfig{Host: host}, Resolve: TUFResolver(vc)})
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, repo: repo, c: c, state: t.TempDir()}
	d.r = &Runc{Component: c, ID: randomName("sb-e2e-"), Check: []string{"/bin/busybox", "test", "-f", "/tmp/ready"}}
	t.Cleanup(func() { d.r.Stop(context.Background()) })
	return d
}

// updater makes the updater a (re)started application runs; the previous
// process's updater is closed (its process ended).
func (d *device) updater() *updater.Updater {
	d.t.Helper()
	if d.u != nil {
		d.u.Close()
	}
	u, err := updater.New(updater.Config{
		Hardware: "board-a", StateDir: d.state, TrustedRoot: d.repo.Root(),
		MetadataURL: d.repo.MetadataURL(), TargetsURL: d.repo.TargetsURL(),
		Components:     []updater.Component{{Name: "app", Slots: d.c.Slots(), Boot: d.c, FactoryVersion: "0.0.0"}},
		HealthChecks:   []health.HealthCheck{health.Retry(d.r.HealthCheck(), 200*time.Millisecond)},
		ConfirmTimeout: 5 * time.Second,
		Restart:        d.r.Restart,
	})
	if err != nil {
		d.t.Fatal(err)
	}
	d.u = u
	d.t.Cleanup(func() { u.Close() })
	return u
}

// publish signs img as version v of component app.
func (d *device) publish(repoName, v string, img testImage) {
	d.t.Helper()
	c := verify.Custom{Component: "app", Version: v, Hardware: []string{"board-a"}, OCI: &verify.OCI{Repository: repoName}}
	if _, err := d.repo.Repository().AddOCI(context.Background(), "app/"+v+"/manifest.json", img.manifest, c); err != nil {
		d.t.Fatal(err)
	}
	d.repo.Publish()
}

// cycle installs what is published (the updater restarts the container
// through Runc) and then, as the restarted application, confirms.
func (d *device) cycle() (installErr, confirmErr error) {
	ctx := context.Background()
	installErr = d.updater().RunOnce(ctx)
	if installErr != nil {
		return installErr, nil
	}
	return nil, d.updater().Confirm(ctx)
}

func (d *device) running(want string) {
	d.t.Helper()
	if err := waitCheck(context.Background(), d.r.HealthCheck(), true); err != nil {
		d.t.Fatalf("container not healthy: %v", err)
	}
	st, _ := d.c.Status(context.Background())
	b, err := os.ReadFile(filepath.Join(d.c.Bundle(st.Booted), "rootfs", "version"))
	if err != nil || string(b) != want {
		d.t.Fatalf("slot %s runs version %q (%v), want %q", st.Booted, b, err, want)
	}
}

// TestUpdater drives the component with the real updater: v1 installs and
// runs; v2 (one layer changed) moves only that layer; v3, whose signed
// manifest was swapped on the TUF server, is refused; v4 crashes on start,
// is rolled back and blocklisted.
func TestUpdater(t *testing.T) {
	bb := needRunc(t)
	host := testRegistry(t)
	repoName := randomName("test/e2e-")
	base := busyboxLayer(t, bb)
	cmd := []string{"/bin/busybox", "sh", "-c", "echo ok > /tmp/ready; exec /bin/busybox sleep 600"}
	v := func(tag, version string, cmd []string) testImage {
		return pushImage(t, host, repoName, tag, cmd, base, makeLayer(t, file("version", version)))
	}
	d := newDevice(t, host, tuftest.New(t))

	d.publish(repoName, "1.0.0", v("v1", "1", cmd))
	if ierr, cerr := d.cycle(); ierr != nil || cerr != nil {
		t.Fatalf("v1: install %v, confirm %v", ierr, cerr)
	}
	d.running("1")

	v2 := v("v2", "2", cmd)
	d.publish(repoName, "2.0.0", v2)
	if ierr, cerr := d.cycle(); ierr != nil || cerr != nil {
		t.Fatalf("v2: install %v, confirm %v", ierr, cerr)
	}
	d.running("2")
	if got, want := d.c.LastPull().Fetched, v2.config.Size+v2.layers[1].Size; got != want {
		t.Errorf("v2 moved %d bytes, want the config and the changed layer: %d", got, want)
	}

	v3 := v("v3", "3", cmd)
	d.publish(repoName, "3.0.0", v3)
	tf := filepath.Join(d.repo.Dir(), "targets", d.repo.Target("app/3.0.0/manifest.json").File)
	if err := os.WriteFile(tf, v2.manifest[:len(v3.manifest)], 0o644); err != nil {
		t.Fatal(err)
	}
	if ierr, _ := d.cycle(); !errors.Is(ierr, verify.ErrVerification) {
		t.Fatalf("v3 with a swapped manifest: %v, want verify.ErrVerification", ierr)
	}
	d.running("2")

	d.repo.Repository().RemoveTarget("app/3.0.0/manifest.json")
	d.publish(repoName, "4.0.0", v("v4", "4", []string{"/bin/busybox", "false"}))
	if _, cerr := d.cycle(); !errors.Is(cerr, updater.ErrRolledBack) {
		t.Fatalf("v4 that crashes: confirm %v, want ErrRolledBack", cerr)
	}
	d.running("2")
	if _, err := d.updater().Check(context.Background()); !errors.Is(err, updater.ErrNoUpdate) {
		t.Errorf("after the rollback Check says %v, want ErrNoUpdate (v4 blocklisted)", err)
	}
}
