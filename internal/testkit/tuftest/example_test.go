package tuftest_test

import (
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// A test publishes a release, points a device at the server, then attacks.
func ExampleNew() {
	testDevice := func(t *testing.T) {
		repo := tuftest.New(t)
		repo.AddTarget("rootfs/1.1.0/rootfs.img", []byte("image"), verify.Custom{
			Component: "rootfs", Version: "1.1.0", Hardware: []string{"board-a"},
		})
		repo.Publish()

		// Configure the device with repo.Root(), repo.MetadataURL() and
		// repo.TargetsURL(), and let it update.

		// Arbitrary software: the server swaps the image bytes.
		repo.SetTargetBytes("rootfs/1.1.0/rootfs.img", []byte("evil!"))
		// Revoked key: rotate the targets key, then sign with the old one.
		repo.ClearOverrides()
		repo.RotateKeys(repository.RoleTargets)
		repo.Publish()
		repo.SignWith(repository.RoleTargets, repo.RevokedKeys(repository.RoleTargets)...)
		// ... the device must refuse each, and take the next honest
		// release after repo.Publish().
	}
	_ = testDevice
	// Output:
}
