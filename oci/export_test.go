package oci

import "testing"

// The fixtures of the internal tests, for TestExample in package oci_test.
var (
	NeedRunc     = needRunc
	TestRegistry = testRegistry
	RandomName   = randomName
)

// PushVersion pushes an image of busybox, a /bin/gateway health check (it
// passes once /tmp/ready exists) and a /version file holding version,
// whose command marks itself ready and sleeps, and returns its manifest.
func PushVersion(t *testing.T, bb []byte, host, repo, version string) []byte {
	check := tarEntry{name: "bin/gateway", body: "#!/bin/busybox sh\n/bin/busybox test -f /tmp/ready\n", typ: '0', mode: 0o755}
	cmd := []string{"/bin/busybox", "sh", "-c", "echo ok > /tmp/ready; exec /bin/busybox sleep 600"}
	return pushImage(t, host, repo, version, cmd, busyboxLayer(t, bb), makeLayer(t, check, file("version", version))).manifest
}
