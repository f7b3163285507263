package main

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/oci"
	"github.com/switchback-ota/switchback/verify"
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
	reg, err := startRegistry(ctx, mkdir(work, "registry"))
	if err != nil {
		return err
	}
	defer reg.Stop()
	layout := filepath.Join(work, "layout")
	if _, err := writeBigLayout(layout, int64(layerMiB)<<20); err != nil {
		return err
	}
	if err := reg.push(ctx, layout, "big", "bench/big"); err != nil {
		return err
	}
	// skopeo compresses the layer on its way to the registry: install
	// what the registry serves.
	manifest, err := registryManifest(ctx, reg.Host, "bench/big", "big")
	if err != nil {
		return err
	}
	start := time.Now()
	if err := sh(ctx, "skopeo", "copy", "--quiet", "--src-tls-verify=false", "docker://"+reg.Host+"/bench/big:big", "oci:"+filepath.Join(work, "skopeo")+":big"); err != nil {
		return err
	}
	sk := time.Since(start)
	size := float64(int64(layerMiB) << 20)
	fmt.Fprintf(out, "skopeo copy (fetch, verify, store):      %6.2fs  %7.1f MB/s\n", sk.Seconds(), size/sk.Seconds()/1e6)
	spec, _ := json.Marshal(pullSpec{Host: reg.Host, Repo: "bench/big", Manifest: manifest, Dir: filepath.Join(work, "device")})
	res, err := exec.CommandContext(ctx, os.Args[0], "-pull-child", string(spec)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pull child: %w: %s", err, res)
	}
	var r pullResult
	if err := json.Unmarshal(res, &r); err != nil {
		return fmt.Errorf("pull child said %q: %w", res, err)
	}
	fmt.Fprintf(out, "oci Store.Fetch (fetch, verify, store):  %6.2fs  %7.1f MB/s\n", r.Fetch.Seconds(), size/r.Fetch.Seconds()/1e6)
	fmt.Fprintf(out, "oci Arm after it (unpack, fsync, arm):   %6.2fs\n", r.Unpack.Seconds())
	fmt.Fprintf(out, "oci install total:                       %6.2fs  %7.1f MB/s, peak RSS %.1f MiB\n",
		(r.Fetch + r.Unpack).Seconds(), size/(r.Fetch+r.Unpack).Seconds()/1e6, float64(r.MaxRSSKiB)/1024)
	return nil
}

func registryManifest(ctx context.Context, host, repo, ref string) ([]byte, error) {
	reg, err := oci.NewRegistry(ctx, oci.RegistryConfig{Host: host, Repository: repo})
	if err != nil {
		return nil, err
	}
	b, _, err := reg.Manifest(ctx, ref)
	return b, err
}

// pullSpec tells the child what to install; pullResult is its answer.
type pullSpec struct {
	Host, Repo, Dir string
	Manifest        []byte
}

type pullResult struct {
	Fetch, Unpack time.Duration
	MaxRSSKiB     int64
}

// runPullChild installs the image: every blob with Store.Fetch, then Arm
// (which finds them present and unpacks), and prints a pullResult.
func runPullChild(ctx context.Context, specJSON string) error {
	var s pullSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		return err
	}
	c, err := oci.New(oci.Config{Dir: s.Dir, Hardware: "bench", Registry: oci.RegistryConfig{Host: s.Host},
		Resolve: func(context.Context, string) (verify.OCI, error) { return verify.OCI{Repository: s.Repo}, nil }})
	if err != nil {
		return err
	}
	reg, err := oci.NewRegistry(ctx, oci.RegistryConfig{Host: s.Host, Repository: s.Repo})
	if err != nil {
		return err
	}
	doc, err := oci.ParseDocument(s.Manifest)
	if err != nil {
		return err
	}
	var r pullResult
	start := time.Now()
	for _, d := range append([]oci.Descriptor{*doc.Config}, doc.Layers...) {
		if _, err := c.Store().Fetch(ctx, reg, d); err != nil {
			return err
		}
	}
	r.Fetch = time.Since(start)
	if err := writeManifest(ctx, c, s.Manifest); err != nil {
		return err
	}
	start = time.Now()
	if err := c.Arm(ctx, "b", 1); err != nil {
		return err
	}
	r.Unpack = time.Since(start)
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	r.MaxRSSKiB = ru.Maxrss
	return json.NewEncoder(os.Stdout).Encode(r)
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

// writeBigLayout writes an OCI layout whose image "big" has one
// uncompressed layer holding one random file of size bytes, and returns
// the manifest.
func writeBigLayout(dir string, size int64) ([]byte, error) {
	blobs := mkdir(dir, "blobs", "sha256")
	layer, err := writeBlob(blobs, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Name: "big.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
			return err
		}
		return tw.Close()
	})
	if err != nil {
		return nil, err
	}
	layer.MediaType = "application/vnd.oci.image.layer.v1.tar"
	cfg, err := writeBlob(blobs, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, `{"architecture":"amd64","os":"linux","config":{"Cmd":["/big.bin"]},"rootfs":{"type":"layers","diff_ids":[%q]}}`, layer.Digest)
		return err
	})
	if err != nil {
		return nil, err
	}
	cfg.MediaType = oci.MediaTypeConfig
	m, _ := json.Marshal(oci.Document{SchemaVersion: 2, MediaType: oci.MediaTypeManifest, Config: &cfg, Layers: []oci.Descriptor{layer}})
	md, err := writeBlob(blobs, func(w io.Writer) error { _, err := w.Write(m); return err })
	if err != nil {
		return nil, err
	}
	md.MediaType = oci.MediaTypeManifest
	md.Annotations = map[string]string{"org.opencontainers.image.ref.name": "big"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []oci.Descriptor{md}})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return nil, err
	}
	return m, os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// writeBlob writes what fill produces as a content-addressed blob.
func writeBlob(blobs string, fill func(io.Writer) error) (oci.Descriptor, error) {
	f, err := os.CreateTemp(blobs, "tmp-")
	if err != nil {
		return oci.Descriptor{}, err
	}
	defer f.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err := fill(cw); err != nil {
		return oci.Descriptor{}, err
	}
	hx := hex.EncodeToString(h.Sum(nil))
	return oci.Descriptor{Digest: "sha256:" + hx, Size: cw.n}, os.Rename(f.Name(), filepath.Join(blobs, hx))
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
