package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// registry is a docker-registry process on 127.0.0.1 with its storage in
// a directory of its own.
type registry struct {
	Host    string
	storage string
	cmd     *exec.Cmd
}

// startRegistry starts docker-registry on a free loopback port.
func startRegistry(ctx context.Context, dir string) (*registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	host := ln.Addr().String()
	ln.Close()
	r := &registry{Host: host, storage: filepath.Join(dir, "data")}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", r.storage, host)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	r.cmd = exec.Command("docker-registry", "serve", filepath.Join(dir, "config.yml"))
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; i < 100; i++ {
		if res, err := http.Get("http://" + host + "/v2/"); err == nil {
			res.Body.Close()
			return r, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Stop()
	return nil, fmt.Errorf("docker-registry did not answer on %s", host)
}

// Stop ends the registry process this program started.
func (r *registry) Stop() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// push copies tag of the OCI layout into the registry with skopeo.
func (r *registry) push(ctx context.Context, layout, tag, repo string) error {
	return sh(ctx, "skopeo", "copy", "--quiet", "--dest-tls-verify=false",
		"oci:"+layout+":"+tag, "docker://"+r.Host+"/"+repo+":"+tag)
}

// swapBlob flips the last byte of a blob in the registry's storage, as a
// compromised registry or mirror would serve it.
func (r *registry) swapBlob(digest string) error {
	h := strings.TrimPrefix(digest, "sha256:")
	p := filepath.Join(r.storage, "docker", "registry", "v2", "blobs", "sha256", h[:2], h, "data")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	b[len(b)-1] ^= 0xff
	return os.WriteFile(p, b, 0o644)
}

// dirSize sums the sizes of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
