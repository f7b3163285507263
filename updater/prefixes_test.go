package updater

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// TestTargetPrefixes: with Config.TargetPrefixes, a check fetches the
// delegated role of this device's hardware and never the other vendors'
// roles, and still finds the newest release in its own role. Without the
// option, every role was fetched at every check that saw a new snapshot.
func TestTargetPrefixes(t *testing.T) {
	repo := tuftest.New(t)
	ctx := context.Background()
	for _, board := range []string{hw, "other-board"} {
		k, err := repository.GenerateKey(repository.Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		repo.Repository().AddKeys(k)
		if err := repo.Repository().Delegate(repository.RoleTargets, repository.Delegation{
			Name: board, Paths: []string{"rootfs/" + board + "/*"}, Terminating: true, Keys: []*metadata.Key{k.Public()}}); err != nil {
			t.Fatal(err)
		}
		c := verify.Custom{Component: "rootfs", Version: "1.1.0", Hardware: []string{board}}
		raw, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Repository().AddTargetRawIn(ctx, board, "rootfs/"+board+"/rootfs-1.1.0.img", bytes.NewReader(image("1.1.0", 4096)), raw); err != nil {
			t.Fatal(err)
		}
	}
	repo.Publish()
	d := newDevice(t, repo)
	d.cfg = func(c *Config) { c.TargetPrefixes = []string{"rootfs/" + hw + "/"} }
	d.start()
	ups, err := d.u.Check(ctx)
	if err != nil || len(ups) != 1 || ups[0].Target.Path != "rootfs/"+hw+"/rootfs-1.1.0.img" {
		t.Fatalf("Check = %+v, %v; want the release of rootfs/%s/", ups, err, hw)
	}
	if n := repo.Requests("/metadata/1.other-board.json"); n != 0 {
		t.Errorf("the other board's role was fetched %d times", n)
	}
	if n := repo.Requests("/metadata/1." + hw + ".json"); n != 1 {
		t.Errorf("this board's role was fetched %d times, want 1", n)
	}
}
