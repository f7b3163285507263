package repository_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// A release pipeline creates a repository once, then adds each release.
func Example() {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "switchback-repo")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)

	repo, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(work, "repo")}, repository.InitOptions{
		KeysDir: filepath.Join(work, "keys"), // move the root-*.pem keys offline afterwards
		Roles: map[string]repository.RoleOptions{
			repository.RoleTimestamp: {Expiry: 24 * time.Hour},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	release := strings.NewReader("the root file system image")
	t, err := repo.AddTarget(ctx, "rootfs/1.0.0/rootfs.img.zst", release, verify.Custom{
		Component: "rootfs",
		Version:   "1.0.0",
		Hardware:  []string{"board-a", "board-b"},
	}, repository.AddOptions{Zstd: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := repo.Publish(ctx); err != nil {
		log.Fatal(err)
	}
	c, err := verify.ParseCustom(t.Custom)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Path, c.Compression, c.Uncompressed.Length)
	for _, s := range repo.Status() {
		fmt.Println(s.Role, s.Version)
	}
	// Output:
	// rootfs/1.0.0/rootfs.img.zst zstd 26
	// root 1
	// targets 2
	// snapshot 2
	// timestamp 2
}

// Threshold signing: the release machine holds one of two targets keys;
// the second signature is made elsewhere and merged back.
func ExampleSignExported() {
	ctx := context.Background()
	work, _ := os.MkdirTemp("", "switchback-repo")
	defer os.RemoveAll(work)
	second, _ := repository.GenerateKey(repository.Ed25519)
	first, _ := repository.GenerateKey(repository.Ed25519)
	keys := map[string][]*repository.Key{repository.RoleTargets: {first, second}}
	for _, role := range []string{repository.RoleRoot, repository.RoleSnapshot, repository.RoleTimestamp} {
		k, _ := repository.GenerateKey(repository.Ed25519)
		keys[role] = []*repository.Key{k}
	}
	repo, err := repository.Init(ctx, repository.Config{Dir: work}, repository.InitOptions{
		Keys:  keys,
		Roles: map[string]repository.RoleOptions{repository.RoleTargets: {Threshold: 2}},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Later, on the release machine, only the first targets key is here.
	repo, _ = repository.Open(repository.Config{Dir: work, Keys: []*repository.Key{
		first, keys[repository.RoleSnapshot][0], keys[repository.RoleTimestamp][0],
	}})
	repo.AddTarget(ctx, "app/2.0.0/app.tar", strings.NewReader("app"), verify.Custom{
		Component: "app", Version: "2.0.0", Hardware: []string{"*"},
	}, repository.AddOptions{})
	fmt.Println(repo.Publish(ctx) != nil)

	unsigned, _ := repo.Export(repository.RoleTargets)
	signed, _ := repository.SignExported(unsigned, second) // on the other machine
	role, n, err := repo.MergeSignatures(signed)
	fmt.Println(role, n, err)
	fmt.Println(repo.Publish(ctx))
	// Output:
	// true
	// targets 1 <nil>
	// <nil>
}

// Rotating the root key: the new root is signed by the old and the new
// key, so a device that trusts version 1 walks to version 2; the old key
// signs nothing after that.
func ExampleRepo_RotateKeys() {
	ctx := context.Background()
	work, _ := os.MkdirTemp("", "switchback-repo")
	defer os.RemoveAll(work)
	repo, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(work, "repo")},
		repository.InitOptions{KeysDir: filepath.Join(work, "keys")})
	if err != nil {
		log.Fatal(err)
	}
	newRoot, err := repository.GenerateKey(repository.ECDSAP256)
	if err != nil {
		log.Fatal(err)
	}
	if err := newRoot.WriteFile(filepath.Join(work, "offline", repository.KeyFileName(repository.RoleRoot, newRoot))); err != nil {
		log.Fatal(err)
	}
	if err := repo.RotateKeys(repository.RoleRoot, []*repository.Key{newRoot}, 1); err != nil {
		log.Fatal(err)
	}
	if err := repo.Publish(ctx); err != nil {
		log.Fatal(err)
	}
	root := repo.Status()[0]
	fmt.Println(root.Role, root.Version, len(root.SignedBy), "signatures")
	// Output:
	// root 2 2 signatures
}
