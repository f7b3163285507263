package repository_test

import (
	"context"
	"log"
	"os"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// Publishing a release with its deltas: the full image first, then its
// chunk index (with a chunk store, as the image is compressed) and a
// patch from each release devices may still run, then one Publish.
func ExampleRepo_AddChunkIndex() {
	ctx := context.Background()
	keys, err := repository.LoadKeys("keys")
	if err != nil {
		log.Fatal(err)
	}
	r, err := repository.Open(repository.Config{Dir: "repo", Keys: keys})
	if err != nil {
		log.Fatal(err)
	}
	const target = "rootfs/1.2.0/rootfs.img.zst"
	open := func(name string) *os.File {
		f, err := os.Open(name)
		if err != nil {
			log.Fatal(err)
		}
		return f
	}
	img := open("rootfs-1.2.0.img")
	custom := verify.Custom{Component: "rootfs", Version: "1.2.0", Hardware: []string{"board-a"}}
	if _, err := r.AddTarget(ctx, target, img, custom, repository.AddOptions{Zstd: true}); err != nil {
		log.Fatal(err)
	}
	img.Close()

	// Fixed 4 KiB chunks for ext4; delta.ChunkCDC for squashfs.
	img = open("rootfs-1.2.0.img")
	if _, err := r.AddChunkIndex(ctx, target, img, delta.IndexOptions{}, true); err != nil {
		log.Fatal(err)
	}
	img.Close()

	for _, old := range []string{"rootfs-1.1.0.img", "rootfs-1.0.0.img"} {
		base, img := open(old), open("rootfs-1.2.0.img")
		fi, err := base.Stat()
		if err != nil {
			log.Fatal(err)
		}
		t, err := r.AddPatch(ctx, target, base, fi.Size(), img)
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("patch %s: %d bytes", t.Path, t.Length)
		base.Close()
		img.Close()
	}
	if err := r.Publish(ctx); err != nil {
		log.Fatal(err)
	}
}
