package oci_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/oci"
	"github.com/switchback-ota/switchback/verify"
)

// TestExample runs the package Example as a device runs its program: a
// child process per start, against a signed TUF repository on 127.0.0.1,
// the test registry and runc. The first start installs v1 and runs it on
// trial; the second (after a SIGTERM, as systemctl restart sends) commits
// v1, installs v2 and runs it.
func TestExample(t *testing.T) {
	if dir := os.Getenv("SWITCHBACK_OCI_EXAMPLE_DIR"); dir != "" {
		rootFile, dataDir = filepath.Join(dir, "root.json"), dir
		tuf, registryHost = os.Getenv("SWITCHBACK_OCI_EXAMPLE_TUF"), os.Getenv("SWITCHBACK_OCI_EXAMPLE_REGISTRY")
		Example() // returns on SIGTERM, or exits through log.Fatal
		return
	}
	bb := oci.NeedRunc(t)
	host := oci.TestRegistry(t)
	if _, err := exec.Command("runc", "state", "gateway-app").CombinedOutput(); err == nil {
		t.Skip("a container named gateway-app runs on this machine: the Example's name is taken")
	}
	t.Cleanup(func() { exec.Command("runc", "delete", "--force", "gateway-app").Run() })
	repoName := oci.RandomName("test/example-")
	tufRepo := tuftest.New(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "root.json"), tufRepo.Root(), 0o600); err != nil {
		t.Fatal(err)
	}
	publish := func(v string) {
		manifest := oci.PushVersion(t, bb, host, repoName, v)
		c := verify.Custom{Component: "app", Version: v + ".0.0", Hardware: []string{"gateway-arm64"}, OCI: &verify.OCI{Repository: repoName}}
		if _, err := tufRepo.Repository().AddOCI(context.Background(), "app/"+v+"/manifest.json", manifest, c); err != nil {
			t.Fatal(err)
		}
		tufRepo.Publish()
	}
	start := func(want string) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestExample$", "-test.v")
		cmd.Env = append(os.Environ(), "SWITCHBACK_OCI_EXAMPLE_DIR="+dir,
			"SWITCHBACK_OCI_EXAMPLE_TUF="+tufRepo.URL(), "SWITCHBACK_OCI_EXAMPLE_REGISTRY="+host)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got := waitVersion(want)
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil || got != want {
			t.Fatalf("the example runs version %q, want %q; it exited with %v:\n%s", got, want, err, out.String())
		}
	}
	publish("1")
	start("1")
	publish("2")
	start("2")

	c, err := oci.New(oci.Config{Dir: filepath.Join(dir, "app"), Hardware: "gateway-arm64",
		Resolve: func(context.Context, string) (verify.OCI, error) { return verify.OCI{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Trial != st.Booted || st.Primary == st.Booted {
		t.Errorf("after the second start: %+v, want v2 on trial beside the committed v1", st)
	}
}

// waitVersion returns the /version of the running gateway-app container,
// once it is want or after a minute.
func waitVersion(want string) string {
	var got string
	for i := 0; i < 600 && got != want; i++ {
		time.Sleep(100 * time.Millisecond)
		out, _ := exec.Command("runc", "exec", "gateway-app", "/bin/busybox", "cat", "/version").Output()
		got = string(out)
	}
	return got
}
