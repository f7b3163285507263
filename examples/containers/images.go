package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/examples/internal/ocikit"
	"github.com/switchback-ota/switchback/oci"
)

// images builds the demo's images with umoci in one OCI layout: a base
// (busybox and 8 MiB of data) shared by every version, and per version a
// layer with the application's files (a version and 1 MiB of code) and a
// command.
type images struct {
	layout string
	work   string
}

func newImages(ctx context.Context, work string) (*images, error) {
	im := &images{layout: filepath.Join(work, "layout"), work: work}
	data := filepath.Join(work, "base.bin")
	b := make([]byte, 8<<20)
	rand.Read(b)
	if err := os.WriteFile(data, b, 0o644); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"init", "--layout", im.layout},
		{"new", "--image", im.layout + ":base"},
		{"insert", "--image", im.layout + ":base", "/bin/busybox", "/bin/busybox"},
		{"insert", "--image", im.layout + ":base", data, "/data/base.bin"},
	}
	for _, s := range steps {
		if err := ocikit.Command(ctx, "umoci", s...); err != nil {
			return nil, err
		}
	}
	return im, nil
}

// healthyCmd starts a service that marks itself ready, then stays up.
var healthyCmd = []string{"/bin/busybox", "sh", "-c", "echo ok > /tmp/ready; exec /bin/busybox sleep 3600"}

// crashCmd exits at once with a failure, as a broken release does.
var crashCmd = []string{"/bin/busybox", "false"}

// build makes tag: the base, the command, and a layer holding /app/version.
func (im *images) build(ctx context.Context, tag, version string, cmd []string) error {
	args := []string{"config", "--image", im.layout + ":base", "--tag", tag}
	for _, c := range cmd {
		args = append(args, "--config.cmd", c)
	}
	if err := ocikit.Command(ctx, "umoci", args...); err != nil {
		return err
	}
	dir := filepath.Join(im.work, "app-"+tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "version"), []byte(version), 0o644); err != nil {
		return err
	}
	// The application's own bytes: 1 MiB that every version changes.
	bin := make([]byte, 1<<20)
	rand.Read(bin)
	if err := os.WriteFile(filepath.Join(dir, "gateway.bin"), bin, 0o644); err != nil {
		return err
	}
	return ocikit.Command(ctx, "umoci", "insert", "--image", im.layout+":"+tag, dir, "/app")
}

// topLayer is the digest of the last layer of tag in the registry.
func (d *demo) topLayer(ctx context.Context, tag string) (string, error) {
	b, err := d.reg.Manifest(ctx, imageRepo, tag)
	if err != nil {
		return "", err
	}
	doc, err := oci.ParseDocument(b)
	if err != nil {
		return "", err
	}
	if len(doc.Layers) == 0 {
		return "", fmt.Errorf("%s has no layers", tag)
	}
	return doc.Layers[len(doc.Layers)-1].Digest, nil
}
