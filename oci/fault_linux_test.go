package oci

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/switchback-ota/switchback/verify"
)

// TestDiskFull: the component's directory on a 768 KiB tmpfs (the test
// mounts one; it needs root). v1 fits; v2's 1 MiB layer does not: a clear
// error, nothing armed, v1's bundle untouched.
func TestDiskFull(t *testing.T) {
	host := testRegistry(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=768k"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs (CI runs as root): %v", err)
		}
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	repo := randomName("test/full-")
	v1 := pushImage(t, host, repo, "v1", []string{"/bin/true"}, makeLayer(t, file("v", "1")))
	big := make([]byte, 1<<20)
	rand.Read(big)
	v2 := pushImage(t, host, repo, "v2", []string{"/bin/true"}, makeLayer(t, file("v", "2"), file("big", string(big))))
	c, err := New(Config{Dir: dir, Hardware: "board-a", Registry: RegistryConfig{Host: host}, Resolve: staticResolver(verify.OCI{Repository: repo})})
	if err != nil {
		t.Fatal(err)
	}
	slot, err := armTrial(t, c, v1.manifest)
	if err != nil {
		t.Fatal(err)
	}
	bootTrial(t, c, slot)
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
}
