package health

import (
	"os"
	"os/exec"
	"testing"
)

// needTool returns the path of a program a test runs; a missing one skips
// the test, or fails it under CI=true, where .ci/packages installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found under CI: %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}
