// Command containers shows switchback updating an application shipped as
// an OCI container image, end to end on one machine, with real tools: a
// registry (docker-registry, on 127.0.0.1), images built with umoci and
// pushed with skopeo, a signed TUF repository whose targets are the images'
// manifests, and a device that runs its container with runc.
//
//  1. v1 is installed, started under runc, healthy → committed.
//  2. v2 changes one layer: only that layer (and the config) moves.
//  3. v3, whose layer was swapped in the registry after signing, is
//     refused (digest mismatch): nothing is activated, v2 keeps running.
//  4. v4 crashes on start: its health check fails, v2 runs again by
//     itself and v4 is blocklisted.
//
// It then copies v2 into an empty store with skopeo, to compare a full
// pull with the layer delta. It needs root (runc) and the Debian packages
// docker-registry, skopeo, umoci, runc and busybox-static. Run it with:
//
//	go run ./examples/containers
//
// With -bench it measures instead the install of an image with one big
// layer (-layer-mib) against skopeo copy, and the peak RSS of the pull.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

func main() {
	bench := flag.Bool("bench", false, "measure throughput and peak RSS of one big layer instead")
	layerMiB := flag.Int("layer-mib", 256, "size of the big layer for -bench, in MiB")
	pullChild := flag.String("pull-child", "", "internal: pull the image described by this JSON, report RSS")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var err error
	switch {
	case *pullChild != "":
		err = runPullChild(ctx, *pullChild)
	case *bench:
		err = runBench(ctx, os.Stdout, *layerMiB)
	default:
		err = run(ctx, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "containers FAILED:", err)
		os.Exit(1)
	}
}

// transcript prints timed lines.
type transcript struct {
	w     io.Writer
	start time.Time
}

func (t *transcript) say(format string, a ...any) {
	fmt.Fprintf(t.w, "[%6.2fs] %s\n", time.Since(t.start).Seconds(), fmt.Sprintf(format, a...))
}

// needTools reports the first missing tool, or that root is needed.
func needTools() error {
	for _, tool := range []string{"docker-registry", "skopeo", "umoci", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install the Debian packages docker-registry skopeo umoci runc busybox-static", tool)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		return fmt.Errorf("/bin/busybox not found: install busybox-static")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("runc and umoci unpack need root here")
	}
	return nil
}
