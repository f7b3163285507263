package oci

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/verify"
)

// needRunc skips (fails under CI=true) without root, runc and busybox.
func needRunc(t *testing.T) []byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	_, rerr := exec.LookPath("runc")
	switch {
	case os.Geteuid() != 0:
		ci.Skipf(t, "runc needs root")
	case rerr != nil || err != nil:
		ci.Skipf(t, "runc and busybox-static are needed: %v %v", rerr, err)
	}
	return bb
}

// busyboxLayer is a layer holding a static busybox.
func busyboxLayer(t *testing.T, bb []byte) []byte {
	return makeLayer(t, tarEntry{name: "bin/busybox", body: string(bb), typ: '0', mode: 0o755}, tarEntry{name: "tmp/", typ: '5', mode: 0o1777})
}

// waitCheck polls the check until it passes (want true) or fails (want
// false), for up to 10 s, and returns the last error.
func waitCheck(ctx context.Context, c interface{ Check(context.Context) error }, want bool) error {
	var err error
	for i := 0; i < 100; i++ {
		if err = c.Check(ctx); (err == nil) == want {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// TestRuncTrial: v1 runs and answers its check; v2 crashes on start, its
// check fails, it is marked bad and v1 runs again.
func TestRuncTrial(t *testing.T) {
	bb := needRunc(t)
	host := testRegistry(t)
	ctx := context.Background()
	repo := randomName("test/runc-")
	base := busyboxLayer(t, bb)
	good := pushImage(t, host, repo, "v1", []string{"/bin/busybox", "sh", "-c", "echo ok > /tmp/ready; exec /bin/busybox sleep 600"}, base)
	bad := pushImage(t, host, repo, "v2", []string{"/bin/busybox", "false"}, base)
	c := newTestComponent(t, host, verify.OCI{Repository: repo})
	r := &Runc{Component: c, ID: randomName("sb-test-"), Check: []string{"/bin/busybox", "test", "-f", "/tmp/ready"}}
	t.Cleanup(func() { r.Stop(context.Background()) })
	check := r.HealthCheck()

	slot, err := armTrial(t, c, good.manifest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CountStart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Restart(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := waitCheck(ctx, check, true); err != nil {
		t.Fatalf("v1 is not healthy: %v", err)
	}
	if err := c.Commit(ctx, slot); err != nil {
		t.Fatal(err)
	}

	trial, err := armTrial(t, c, bad.manifest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CountStart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Restart(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := waitCheck(ctx, check, false); err == nil {
		t.Fatal("the crashing v2 passed its check")
	}
	// What the updater does with a failed trial: mark it bad, restart.
	if err := c.MarkBad(ctx, trial); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CountStart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Restart(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := waitCheck(ctx, check, true); err != nil {
		t.Fatalf("v1 does not run again after the rollback: %v", err)
	}
	if st, _ := c.Status(ctx); st.Booted != slot {
		t.Errorf("after the rollback %s runs, want %s", st.Booted, slot)
	}
}
