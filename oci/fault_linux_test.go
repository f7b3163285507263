package oci

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/verify"
)

// TestDiskFull: the component's directory on a small tmpfs (the test
// mounts one; it needs root). v1 fits; v2's big layer does not: a clear
// error, nothing armed, v1's bundle untouched and, when runc is here, v1's
// container still running and answering its check.
func TestDiskFull(t *testing.T) {
	host := testRegistry(t)
	if os.Geteuid() != 0 {
		ci.Skipf(t, "mounting a small tmpfs needs root")
	}
	// Without runc the image is one small file; with it, busybox as well,
	// and the container runs from the full disk.
	size, bigSize, base, cmd := "768k", 1<<20, []byte(nil), []string{"/bin/true"}
	runc := runcAvailable()
	if runc != nil {
		size, bigSize = "5m", 4<<20
		base = busyboxLayer(t, runc)
		cmd = []string{"/bin/busybox", "sh", "-c", "echo ok > /tmp/ready; exec /bin/busybox sleep 600"}
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		ci.Skipf(t, "cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	repo := randomName("test/full-")
	layers := func(v string, more ...[]byte) [][]byte {
		ls := [][]byte{makeLayer(t, file("v", v))}
		if base != nil {
			ls = append(ls, base)
		}
		return append(ls, more...)
	}
	v1 := pushImage(t, host, repo, "v1", cmd, layers("1")...)
	big := make([]byte, bigSize)
	rand.Read(big)
	v2 := pushImage(t, host, repo, "v2", cmd, layers("2", makeLayer(t, file("big", string(big))))...)
	c, err := New(Config{Dir: dir, Hardware: "board-a", Registry: RegistryConfig{Host: host}, Resolve: staticResolver(verify.OCI{Repository: repo})})
	if err != nil {
		t.Fatal(err)
	}
	slot, err := armTrial(t, c, v1.manifest)
	if err != nil {
		t.Fatal(err)
	}
	bootTrial(t, c, slot)
	var check *RuncCheck
	if runc != nil {
		r := &Runc{Component: c, ID: randomName("sb-full-"), Check: []string{"/bin/busybox", "test", "-f", "/tmp/ready"}}
		t.Cleanup(func() { r.Stop(context.Background()) })
		if err := r.Restart(context.Background(), "app"); err != nil {
			t.Fatal(err)
		}
		check = r.HealthCheck()
		if err := waitCheck(context.Background(), check, true); err != nil {
			t.Fatalf("v1 does not run: %v", err)
		}
	}
	_, err = armTrial(t, c, v2.manifest)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Arm on a full disk: %v, want ENOSPC", err)
	}
	t.Logf("the error: %v", err)
	st, _ := c.Status(context.Background())
	if st.Trial != "" || st.Booted != slot {
		t.Errorf("after a failed pull: %+v, want %s running and no trial", st, slot)
	}
	if b, err := os.ReadFile(filepath.Join(c.Bundle(slot), "rootfs", "v")); err != nil || string(b) != "1" {
		t.Errorf("the running image changed: %q, %v", b, err)
	}
	if check != nil {
		if err := check.Check(context.Background()); err != nil {
			t.Errorf("v1's container after the failed pull: %v", err)
		}
	}
}
