package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/examples/internal/ocikit"
	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/oci"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

const (
	hardware  = "gateway-x86"
	imageRepo = "demo/gateway"
)

// demo holds the publisher and device sides of the run.
type demo struct {
	tr       *transcript
	work     string
	reg      *ocikit.Registry
	im       *images
	repo     *repository.Repo
	root     []byte
	tufURL   string
	comp     *oci.Component
	runc     *oci.Runc
	stateDir string
}

func run(ctx context.Context, out io.Writer) error {
	if err := needTools(); err != nil {
		return err
	}
	d := &demo{tr: &transcript{w: out, start: time.Now()}}
	var err error
	if d.work, err = os.MkdirTemp("", "switchback-containers-"); err != nil {
		return err
	}
	defer os.RemoveAll(d.work)
	if err := d.setup(ctx); err != nil {
		return err
	}
	defer d.reg.Stop()
	defer d.runc.Stop(context.Background())
	return d.scenario(ctx)
}

// setup starts the registry and the TUF server and opens the device.
func (d *demo) setup(ctx context.Context) error {
	var err error
	if d.reg, err = ocikit.StartRegistry(ctx, filepath.Join(d.work, "registry")); err != nil {
		return err
	}
	d.tr.say("registry: docker-registry on http://%s", d.reg.Host)
	if d.im, err = newImages(ctx, mkdir(d.work, "build")); err != nil {
		return err
	}
	d.repo, err = repository.Init(ctx, repository.Config{Dir: filepath.Join(d.work, "tuf")},
		repository.InitOptions{KeysDir: filepath.Join(d.work, "keys")})
	if err != nil {
		return err
	}
	if d.root, err = os.ReadFile(filepath.Join(d.repo.MetadataDir(), "1.root.json")); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go (&http.Server{Handler: http.FileServer(http.Dir(d.repo.Dir())), ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	d.tufURL = "http://" + ln.Addr().String()
	d.tr.say("publisher: TUF repository served on %s", d.tufURL)
	vc, err := verify.New(verify.Config{Root: d.root, MetadataURL: d.tufURL + "/metadata/", TargetsURL: d.tufURL + "/targets/", Dir: mkdir(d.work, "device", "resolver")})
	if err != nil {
		return err
	}
	d.comp, err = oci.New(oci.Config{Dir: mkdir(d.work, "device", "app"), Hardware: hardware,
		Registry: oci.RegistryConfig{Host: d.reg.Host}, Resolve: oci.TUFResolver(vc)})
	if err != nil {
		return err
	}
	d.runc = &oci.Runc{Component: d.comp, ID: fmt.Sprintf("switchback-demo-%d", os.Getpid()),
		Check: []string{"/bin/busybox", "test", "-f", "/tmp/ready"}}
	d.stateDir = mkdir(d.work, "device", "state")
	return nil
}

func mkdir(parts ...string) string {
	p := filepath.Join(parts...)
	os.MkdirAll(p, 0o755)
	return p
}

// release builds tag, pushes it with skopeo, and signs its manifest as
// version of component app.
func (d *demo) release(ctx context.Context, tag, version string, cmd []string) error {
	if err := d.im.build(ctx, tag, version, cmd); err != nil {
		return err
	}
	if err := d.reg.Push(ctx, d.im.layout, tag, imageRepo); err != nil {
		return err
	}
	reg, err := oci.NewRegistry(ctx, oci.RegistryConfig{Host: d.reg.Host, Repository: imageRepo})
	if err != nil {
		return err
	}
	manifest, digest, err := reg.Manifest(ctx, tag)
	if err != nil {
		return err
	}
	c := verify.Custom{Component: "app", Version: version, Hardware: []string{hardware}, OCI: &verify.OCI{Repository: imageRepo}}
	if _, err := d.repo.AddOCI(ctx, "app/"+version+"/manifest.json", manifest, c); err != nil {
		return err
	}
	d.tr.say("publisher: %s built with umoci, pushed with skopeo, manifest %s signed as app %s", tag, digest[:19], version)
	return d.repo.Publish(ctx)
}

// updater is the device's updater, as one start of its process makes it.
func (d *demo) updater() (*updater.Updater, error) {
	return updater.New(updater.Config{
		Hardware: hardware, StateDir: d.stateDir, TrustedRoot: d.root,
		MetadataURL: d.tufURL + "/metadata/", TargetsURL: d.tufURL + "/targets/",
		Components:     []updater.Component{{Name: "app", Slots: d.comp.Slots(), Boot: d.comp, FactoryVersion: "0.0.0"}},
		HealthChecks:   []health.HealthCheck{health.Retry(d.runc.HealthCheck(), 200*time.Millisecond)},
		ConfirmTimeout: 5 * time.Second,
		Restart:        d.runc.Restart,
		Logger:         slog.New(slog.DiscardHandler),
	})
}

// cycle checks and installs (the updater restarts the container), then
// confirms as the restarted application does.
func (d *demo) cycle(ctx context.Context) (installErr, confirmErr error) {
	u, err := d.updater()
	if err != nil {
		return err, nil
	}
	err = u.RunOnce(ctx)
	u.Close() // the process that installed ends with the restart
	if err != nil {
		return err, nil
	}
	if u, err = d.updater(); err != nil {
		return nil, err
	}
	defer u.Close()
	return nil, u.Confirm(ctx)
}

// running reports the version the running container's image holds.
func (d *demo) running(ctx context.Context) (string, error) {
	if err := d.runc.HealthCheck().Check(ctx); err != nil {
		return "", err
	}
	st, err := d.comp.Status(ctx)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(d.comp.Bundle(st.Booted), "rootfs", "app", "version"))
	return string(b), err
}

var errStep = errors.New("step did not behave as described")
