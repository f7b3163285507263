package repository_test

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// TestExampleRepoAddChunkIndex runs ExampleRepo_AddChunkIndex, which
// reads its keys, repository and images from the working directory, in a
// directory holding them, and checks what it published.
func TestExampleRepoAddChunkIndex(t *testing.T) {
	t.Chdir(t.TempDir())
	ctx := context.Background()
	if _, err := repository.Init(ctx, repository.Config{Dir: "repo"}, repository.InitOptions{KeysDir: "keys"}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	img := make([]byte, 256<<10)
	for i := range img {
		img[i] = byte(r.Uint32())
	}
	for i, name := range []string{"rootfs-1.0.0.img", "rootfs-1.1.0.img", "rootfs-1.2.0.img"} {
		copy(img[i*4096:], "release "+name) // each release changes a block
		if err := os.WriteFile(name, img, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ExampleRepo_AddChunkIndex()
	keys, err := repository.LoadKeys("keys")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := repository.Open(repository.Config{Dir: "repo", Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, tg := range repo.Targets() {
		c, err := verify.ParseCustom(tg.Custom)
		if err != nil {
			t.Fatalf("target %s: %v", tg.Path, err)
		}
		if c.Version == "1.2.0" {
			kinds[c.Kind]++
		}
	}
	// The image (kind absent: an image), its chunk index, two patches.
	if kinds[""]+kinds[verify.KindImage] != 1 || kinds[verify.KindChunkIndex] != 1 || kinds[verify.KindPatch] != 2 {
		t.Errorf("release 1.2.0 published as %v, want 1 image, 1 chunk index, 2 patches", kinds)
	}
}
