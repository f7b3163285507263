package ocikit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/switchback-ota/switchback/oci"
)

// Registry is a docker-registry process on 127.0.0.1 with its storage in
// a directory of its own.
type Registry struct {
	// Host is the registry's host:port.
	Host    string
	storage string
	cmd     *exec.Cmd
}

// StartRegistry starts docker-registry on a free loopback port, with its
// configuration and storage in dir.
func StartRegistry(ctx context.Context, dir string) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	host := ln.Addr().String()
	ln.Close()
	r := &Registry{Host: host, storage: filepath.Join(dir, "data")}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", r.storage, host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	r.cmd = exec.Command("docker-registry", "serve", filepath.Join(dir, "config.yml"))
	// The registry dies with this process, even when it is interrupted
	// before Stop (Linux).
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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

// Stop ends the registry process StartRegistry started.
func (r *Registry) Stop() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// Push copies tag of the OCI layout into the registry's repo with skopeo
// (which compresses uncompressed layers on the way).
func (r *Registry) Push(ctx context.Context, layout, tag, repo string) error {
	return Command(ctx, "skopeo", "copy", "--quiet", "--dest-tls-verify=false",
		"oci:"+layout+":"+tag, "docker://"+r.Host+"/"+repo+":"+tag)
}

// SkopeoCopy copies repo:tag from the registry into the OCI layout dst
// with skopeo: fetch, verify, store.
func (r *Registry) SkopeoCopy(ctx context.Context, repo, tag, dst string) error {
	return Command(ctx, "skopeo", "copy", "--quiet", "--src-tls-verify=false",
		"docker://"+r.Host+"/"+repo+":"+tag, "oci:"+dst+":"+tag)
}

// Manifest returns the manifest of repo:ref as the registry serves it.
func (r *Registry) Manifest(ctx context.Context, repo, ref string) ([]byte, error) {
	reg, err := oci.NewRegistry(ctx, oci.RegistryConfig{Host: r.Host, Repository: repo})
	if err != nil {
		return nil, err
	}
	b, _, err := reg.Manifest(ctx, ref)
	return b, err
}

// SwapBlob flips the last byte of a blob in the registry's storage, as a
// compromised registry or mirror would serve it.
func (r *Registry) SwapBlob(digest string) error {
	h := strings.TrimPrefix(digest, "sha256:")
	p := filepath.Join(r.storage, "docker", "registry", "v2", "blobs", "sha256", h[:2], h, "data")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	b[len(b)-1] ^= 0xff
	return os.WriteFile(p, b, 0o644)
}

// Command runs a tool and returns its combined output in the error when
// it fails.
func Command(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}

// NeedRegistryTools reports the first of docker-registry and skopeo that
// is missing.
func NeedRegistryTools() error {
	for _, tool := range []string{"docker-registry", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install the Debian packages docker-registry skopeo", tool)
		}
	}
	return nil
}
