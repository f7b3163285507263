package ocikit

import (
	"context"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/oci"
	"github.com/switchback-ota/switchback/verify"
)

// PullSpec names an image to install: its manifest as the registry
// serves it, the registry and repository, and the device directory.
type PullSpec struct {
	Host, Repo, Dir string
	Manifest        []byte
}

// PullResult is what Pull measured.
type PullResult struct {
	// Fetch is the time Store.Fetch took for the config and every layer
	// (fetch, verify, store); Unpack that of Arm after it (the blobs
	// present: unpack, fsync, arm).
	Fetch, Unpack time.Duration
	// MaxRSSKiB is the peak resident set of the calling process.
	MaxRSSKiB int64
}

// Pull installs the image into slot b of an oci.Component in s.Dir:
// every blob with Store.Fetch, then the manifest into the slot and Arm
// (which finds the blobs present and unpacks them), as the updater does.
func Pull(ctx context.Context, s PullSpec) (PullResult, error) {
	var r PullResult
	c, err := oci.New(oci.Config{Dir: s.Dir, Hardware: "bench", Registry: oci.RegistryConfig{Host: s.Host},
		Resolve: func(context.Context, string) (verify.OCI, error) { return verify.OCI{Repository: s.Repo}, nil }})
	if err != nil {
		return r, err
	}
	reg, err := oci.NewRegistry(ctx, oci.RegistryConfig{Host: s.Host, Repository: s.Repo})
	if err != nil {
		return r, err
	}
	doc, err := oci.ParseDocument(s.Manifest)
	if err != nil {
		return r, err
	}
	start := time.Now()
	for _, d := range append([]oci.Descriptor{*doc.Config}, doc.Layers...) {
		if _, err := c.Store().Fetch(ctx, reg, d); err != nil {
			return r, err
		}
	}
	r.Fetch = time.Since(start)
	if err := writeManifest(ctx, c, s.Manifest); err != nil {
		return r, err
	}
	start = time.Now()
	if err := c.Arm(ctx, "b", 1); err != nil {
		return r, err
	}
	r.Unpack = time.Since(start)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	r.MaxRSSKiB = int64(ru.Maxrss) // int32 on 32-bit platforms
	return r, nil
}

// writeManifest writes the manifest into slot b, as the updater does.
func writeManifest(ctx context.Context, c *oci.Component, m []byte) error {
	w, err := c.Slots()[1].Writer(ctx, int64(len(m)))
	if err != nil {
		return err
	}
	if _, err := w.WriteAt(m, 0); err != nil {
		return err
	}
	if err := w.Sync(); err != nil {
		return err
	}
	return w.Close()
}
