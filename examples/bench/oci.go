package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/examples/internal/ocikit"
	"github.com/switchback-ota/switchback/oci"
)

// The container layer pull: an image with one layer of random bytes
// (pushed with skopeo, which gzips it on the way) in a docker-registry on
// 127.0.0.1, installed into empty stores by skopeo copy (fetch, verify,
// store) and by package oci in a child process (Store.Fetch: fetch,
// verify, store; then Arm: unpack, fsync, arm), interleaved. The setup
// is that of go run ./examples/containers -bench (package ocikit).

// ociRepo is the registry repository of the bench's image.
const ociRepo = "bench/big"

// ociFigures measures the pulls and prints medians, ranges and ratios,
// or why they were skipped.
func ociFigures(ctx context.Context, out io.Writer, work string, cfg config) error {
	if err := ociSkip(cfg); err != nil {
		fmt.Fprintf(out, "container layer pull: skipped: %v\n", err)
		return nil
	}
	dir := filepath.Join(work, "oci")
	defer os.RemoveAll(dir)
	reg, err := ocikit.StartRegistry(ctx, filepath.Join(dir, "registry"))
	if err != nil {
		return err
	}
	defer reg.Stop()
	layout := filepath.Join(dir, "layout")
	if _, err := ocikit.WriteBigLayout(layout, cfg.layerMiB<<20); err != nil {
		return err
	}
	if err := reg.Push(ctx, layout, ocikit.BigTag, ociRepo); err != nil {
		return err
	}
	os.RemoveAll(layout)
	manifest, err := reg.Manifest(ctx, ociRepo, ocikit.BigTag)
	if err != nil {
		return err
	}
	var skopeo, fetch, arm []float64
	var hwm []int64
	for i := 0; i < cfg.runs; i++ {
		dst := filepath.Join(dir, "skopeo")
		start := time.Now()
		err := reg.SkopeoCopy(ctx, ociRepo, ocikit.BigTag, dst)
		skopeo = append(skopeo, time.Since(start).Seconds())
		os.RemoveAll(dst)
		if err != nil {
			return err
		}
		r, err := runRole("ocipull", map[string]string{"BENCH_HOST": reg.Host, "BENCH_REPO": ociRepo, "BENCH_MANIFEST": string(manifest), "BENCH_DEVICE": filepath.Join(dir, "device")})
		os.RemoveAll(filepath.Join(dir, "device"))
		if err != nil {
			return fmt.Errorf("oci pull: %w", err)
		}
		fetch, arm, hwm = append(fetch, r.Seconds), append(arm, r.ArmSeconds), append(hwm, r.HWMKiB)
	}
	printOCI(out, cfg.layerMiB<<20, manifest, skopeo, fetch, arm, hwm)
	return nil
}

// ociSkip says why the pulls cannot run here, if they cannot.
func ociSkip(cfg config) error {
	if cfg.layerMiB == 0 {
		return errors.New("-layer-mib 0")
	}
	if err := ocikit.NeedRegistryTools(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("unpacking the layer (oci Arm) needs root")
	}
	return nil
}

// printOCI prints the pull figures of an image whose layer holds size
// bytes.
func printOCI(out io.Writer, size int64, manifest []byte, skopeo, fetch, arm []float64, hwm []int64) {
	total := make([]float64, len(fetch))
	for i := range fetch {
		total[i] = fetch[i] + arm[i]
	}
	fmt.Fprintf(out, "container layer pull, one layer of %s (random; %s as the registry serves it), docker-registry on 127.0.0.1:\n", human(size), human(blobBytes(manifest)))
	fmt.Fprintf(out, "  skopeo copy (fetch, verify, store): %s\n", spread(skopeo))
	fmt.Fprintf(out, "  oci Store.Fetch (fetch, verify, store): %s; time ratio to skopeo copy %.2f\n", spread(fetch), median(fetch)/median(skopeo))
	fmt.Fprintf(out, "  oci Arm after it (unpack, fsync, arm): %s\n", spread(arm))
	fmt.Fprintf(out, "  oci fetch + arm: %s; time ratio to skopeo copy %.2f\n", spread(total), median(total)/median(skopeo))
	fmt.Fprintf(out, "  peak RSS (VmHWM) of the pulling process: %.1f MiB\n", float64(medianInt(hwm))/1024)
}

// blobBytes is the size of the config and layers a manifest lists, or
// -1 if it does not parse.
func blobBytes(manifest []byte) int64 {
	doc, err := oci.ParseDocument(manifest)
	if err != nil || doc.Config == nil {
		return -1
	}
	n := doc.Config.Size
	for _, l := range doc.Layers {
		n += l.Size
	}
	return n
}

// ociPull is one device pulling the image: it prints a report whose
// Seconds is the fetch and ArmSeconds the arm.
func ociPull(host, repo, manifest, device string) error {
	r, err := ocikit.Pull(context.Background(), ocikit.PullSpec{Host: host, Repo: repo, Manifest: []byte(manifest), Dir: device})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: r.Fetch.Seconds(), ArmSeconds: r.Unpack.Seconds(), HWMKiB: vmHWM()})
}
