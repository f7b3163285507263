// Package ci lets a test that needs something this machine lacks (root, a
// program, a service) skip outside CI and fail under CI=true, where
// .ci/run provides everything the tests need.
package ci

import (
	"os"
	"os/exec"
	"testing"
)

// Skipf skips the test with the reason, or fails it when CI=true.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: .ci/run should have provided it)", args...)
	}
	t.Skipf(format, args...)
}

// LookPath returns the path of the program name, which the Debian package
// pkg installs (.ci/packages lists it); a missing program skips the test,
// or fails it under CI=true.
func LookPath(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skipf(t, "%s not found (install %s): %v", name, pkg, err)
	}
	return p
}
