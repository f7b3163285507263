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
	var or ociRuns
	for i := 0; i < cfg.runs; i++ {
		if err := or.measure(ctx, reg, manifest, dir); err != nil {
			return err
		}
	}
	or.print(out, cfg.layerMiB<<20, manifest)
	return nil
}

// ociRuns holds the seconds of each run of the pulls.
type ociRuns struct {
	skopeo     []float64 // the skopeo process, start-up included
	fetch, arm []float64 // timed inside the pulling process
	process    []float64 // the pulling process, start-up included
	hwm        []int64
}

// measure runs skopeo copy and the oci pull once each, into empty stores
// under dir.
func (or *ociRuns) measure(ctx context.Context, reg *ocikit.Registry, manifest []byte, dir string) error {
	dst := filepath.Join(dir, "skopeo")
	start := time.Now()
	err := reg.SkopeoCopy(ctx, ociRepo, ocikit.BigTag, dst)
	or.skopeo = append(or.skopeo, time.Since(start).Seconds())
	os.RemoveAll(dst)
	if err != nil {
		return err
	}
	dev := filepath.Join(dir, "device")
	start = time.Now()
	r, err := runRole("ocipull", map[string]string{"BENCH_HOST": reg.Host, "BENCH_REPO": ociRepo, "BENCH_MANIFEST": string(manifest), "BENCH_DEVICE": dev})
	or.process = append(or.process, time.Since(start).Seconds())
	os.RemoveAll(dev)
	if err != nil {
		return fmt.Errorf("oci pull: %w", err)
	}
	or.fetch, or.arm, or.hwm = append(or.fetch, r.Seconds), append(or.arm, r.ArmSeconds), append(or.hwm, r.HWMKiB)
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

// print prints the pull figures of an image whose layer holds size
// bytes.
func (or *ociRuns) print(out io.Writer, size int64, manifest []byte) {
	total := make([]float64, len(or.fetch))
	for i := range or.fetch {
		total[i] = or.fetch[i] + or.arm[i]
	}
	sk := median(or.skopeo)
	fmt.Fprintf(out, "container layer pull, one layer of %s (random; %s as the registry serves it), docker-registry on 127.0.0.1:\n", human(size), human(blobBytes(manifest)))
	fmt.Fprintf(out, "  skopeo copy (process: start-up, fetch, verify, store): %s\n", spread(or.skopeo))
	fmt.Fprintf(out, "  oci Store.Fetch (fetch, verify, store): %s; time ratio to skopeo copy %.2f\n", spread(or.fetch), median(or.fetch)/sk)
	fmt.Fprintf(out, "  oci Arm after it (unpack, fsync, arm): %s\n", spread(or.arm))
	fmt.Fprintf(out, "  oci fetch + arm: %s; time ratio to skopeo copy %.2f\n", spread(total), median(total)/sk)
	fmt.Fprintf(out, "  oci pulling process (start-up, fetch, arm): %s; time ratio to skopeo copy %.2f\n", spread(or.process), median(or.process)/sk)
	fmt.Fprintf(out, "  peak RSS (VmHWM) of the pulling process: %.1f MiB\n", float64(medianInt(or.hwm))/1024)
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
