package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/examples/internal/ocikit"
)

// runBench pushes an image with one uncompressed layer of layerMiB MiB,
// then installs it twice into empty stores: with skopeo copy, and with
// the oci package in a child process that reports its time and peak RSS.
func runBench(ctx context.Context, out io.Writer, layerMiB int) error {
	if err := needTools(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "switchback-containers-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	reg, err := ocikit.StartRegistry(ctx, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	defer reg.Stop()
	layout := filepath.Join(work, "layout")
	if _, err := ocikit.WriteBigLayout(layout, int64(layerMiB)<<20); err != nil {
		return err
	}
	if err := reg.Push(ctx, layout, ocikit.BigTag, "bench/big"); err != nil {
		return err
	}
	// skopeo compresses the layer on its way to the registry: install
	// what the registry serves.
	manifest, err := reg.Manifest(ctx, "bench/big", ocikit.BigTag)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := reg.SkopeoCopy(ctx, "bench/big", ocikit.BigTag, filepath.Join(work, "skopeo")); err != nil {
		return err
	}
	sk := time.Since(start)
	size := float64(int64(layerMiB) << 20)
	fmt.Fprintf(out, "skopeo copy (fetch, verify, store):      %6.2fs  %7.1f MB/s\n", sk.Seconds(), size/sk.Seconds()/1e6)
	spec, _ := json.Marshal(ocikit.PullSpec{Host: reg.Host, Repo: "bench/big", Manifest: manifest, Dir: filepath.Join(work, "device")})
	res, err := exec.CommandContext(ctx, os.Args[0], "-pull-child", string(spec)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pull child: %w: %s", err, res)
	}
	var r ocikit.PullResult
	if err := json.Unmarshal(res, &r); err != nil {
		return fmt.Errorf("pull child said %q: %w", res, err)
	}
	fmt.Fprintf(out, "oci Store.Fetch (fetch, verify, store):  %6.2fs  %7.1f MB/s\n", r.Fetch.Seconds(), size/r.Fetch.Seconds()/1e6)
	fmt.Fprintf(out, "oci Arm after it (unpack, fsync, arm):   %6.2fs\n", r.Unpack.Seconds())
	fmt.Fprintf(out, "oci install total:                       %6.2fs  %7.1f MB/s, peak RSS %.1f MiB\n",
		(r.Fetch + r.Unpack).Seconds(), size/(r.Fetch+r.Unpack).Seconds()/1e6, float64(r.MaxRSSKiB)/1024)
	return nil
}

// runPullChild installs the image the JSON ocikit.PullSpec describes and
// prints an ocikit.PullResult.
func runPullChild(ctx context.Context, specJSON string) error {
	var s ocikit.PullSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		return err
	}
	r, err := ocikit.Pull(ctx, s)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
