package verify_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// serveRepository stands in for the update server: it publishes each
// release (path to custom metadata) in a signed repository in a temporary
// directory and serves it on 127.0.0.1. It returns the root.json a device
// embeds, the metadata and targets URLs, and a cleanup function.
func serveRepository(releases map[string]verify.Custom) (root []byte, metadataURL, targetsURL string, cleanup func()) {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "switchback-example")
	if err != nil {
		log.Fatal(err)
	}
	repo, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(work, "repo")},
		repository.InitOptions{KeysDir: filepath.Join(work, "keys")})
	if err != nil {
		log.Fatal(err)
	}
	for path, custom := range releases {
		image := strings.NewReader("the bytes of " + path)
		if _, err := repo.AddTarget(ctx, path, image, custom, repository.AddOptions{}); err != nil {
			log.Fatal(err)
		}
	}
	if err := repo.Publish(ctx); err != nil {
		log.Fatal(err)
	}
	if root, err = os.ReadFile(filepath.Join(repo.MetadataDir(), "1.root.json")); err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir())))
	return root, srv.URL + "/metadata/", srv.URL + "/targets/", func() {
		srv.Close()
		os.RemoveAll(work)
	}
}

// A device checks for an update of its root filesystem: refresh the TUF
// metadata, pick the release, and stream it through a Verifier into the
// inactive slot. Here the update server is a local test repository and
// the slot a temporary file.
func ExampleClient_Refresh() {
	embeddedRoot, metadataURL, targetsURL, cleanup := serveRepository(map[string]verify.Custom{
		"rootfs/1.4.2/rootfs.img": {Component: "rootfs", Version: "1.4.2", Hardware: []string{"board-a"}},
		"rootfs/1.5.0/rootfs.img": {Component: "rootfs", Version: "1.5.0", Hardware: []string{"board-a"}},
	})
	defer cleanup()
	dir, err := os.MkdirTemp("", "myapp") // /var/lib/myapp on a device
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	buildTime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	client, err := verify.New(verify.Config{
		Root:        embeddedRoot, // //go:embed root.json in a real program
		MetadataURL: metadataURL,  // "https://updates.example.com/metadata/"
		TargetsURL:  targetsURL,   // "https://updates.example.com/targets/"
		Dir:         filepath.Join(dir, "tuf"),
		MinTime:     buildTime,
		Logger:      slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	targets, err := client.Refresh(ctx)
	switch {
	case errors.Is(err, verify.ErrClockUnset):
		log.Print("waiting for the clock to be set")
		return
	case err != nil:
		log.Fatal(err)
	}
	for _, r := range targets.Rejected {
		log.Printf("publisher error: %s: %v", r.Path, r.Err)
	}
	tg, err := verify.Select(targets.Targets, verify.Policy{
		Component: "rootfs",
		Hardware:  "board-a",
		Installed: "1.4.2",
	})
	if errors.Is(err, verify.ErrNoUpdate) {
		return
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println("update to", tg.Custom.Version)
	v, err := tg.Verifier()
	if err != nil {
		log.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.URL, nil)
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	// "/dev/disk/by-partlabel/rootfs_b" on a device.
	slot, err := os.OpenFile(filepath.Join(dir, "rootfs_b"), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	defer slot.Close()
	if _, err := io.Copy(io.MultiWriter(slot, v), res.Body); err != nil {
		log.Fatal(err)
	}
	if err := v.Verify(); err != nil {
		log.Fatal(err) // never mark the slot bootable
	}
	fmt.Println("verified", v.Written(), "bytes")
	// Output:
	// update to 1.5.0
	// verified 36 bytes
}

func Example_select() {
	rel := func(path, version string, minVersion string, hardware ...string) verify.Target {
		sum := sha256.Sum256([]byte(path))
		return verify.Target{
			Path: path, Length: 1, Hashes: map[string][]byte{"sha256": sum[:]},
			Custom: verify.Custom{Component: "app", Version: version, MinVersion: minVersion, Hardware: hardware},
		}
	}
	targets := []verify.Target{
		rel("app/app-1.2.0", "1.2.0", "", "*"),
		rel("app/app-1.3.0", "1.3.0", "", "board-a"),
		rel("app/app-2.0.0", "2.0.0", "1.3.0", "board-a", "board-b"),
	}
	for _, p := range []verify.Policy{
		{Component: "app", Hardware: "board-a", Installed: "1.2.0"},
		{Component: "app", Hardware: "board-a", Installed: "1.3.0"},
		{Component: "app", Hardware: "board-a", Installed: "2.0.0"},
		{Component: "app", Hardware: "board-b", Installed: "1.2.0"},
	} {
		tg, err := verify.Select(targets, p)
		switch {
		case errors.Is(err, verify.ErrNoUpdate):
			fmt.Printf("%s on %s: up to date\n", p.Installed, p.Hardware)
		case errors.Is(err, verify.ErrIncompatible):
			fmt.Printf("%s on %s: incompatible: %s\n", p.Installed, p.Hardware, err)
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Printf("%s on %s: install %s\n", p.Installed, p.Hardware, tg.Path)
		}
	}
	// Output:
	// 1.2.0 on board-a: install app/app-1.3.0
	// 1.3.0 on board-a: install app/app-2.0.0
	// 2.0.0 on board-a: up to date
	// 1.2.0 on board-b: incompatible: verify: no compatible release for app on board-b (installed "1.2.0"): app/app-1.3.0 (1.3.0): hardware "board-b" not in ["board-a"]; app/app-2.0.0 (2.0.0): installed 1.2.0 is below min_version 1.3.0
}

func ExampleNewVerifier() {
	image := "the bytes of a release"
	sum := sha256.Sum256([]byte(image))
	v, err := verify.NewVerifier(int64(len(image)), map[string][]byte{"sha256": sum[:]})
	if err != nil {
		log.Fatal(err)
	}
	io.Copy(v, strings.NewReader(image))
	fmt.Println("genuine:", v.Verify())

	v, _ = verify.NewVerifier(int64(len(image)), map[string][]byte{"sha256": sum[:]})
	io.Copy(v, strings.NewReader(strings.ToUpper(image)))
	err = v.Verify()
	fmt.Println("tampered is ErrVerification:", errors.Is(err, verify.ErrVerification))
	// Output:
	// genuine: <nil>
	// tampered is ErrVerification: true
}

// A download interrupted by a power cut resumes where it stopped: the
// verifier's state is saved with the partial download and restored.
func ExampleVerifier_MarshalBinary() {
	image := strings.Repeat("block ", 1000)
	sum := sha256.Sum256([]byte(image))
	hashes := map[string][]byte{"sha256": sum[:]}

	v, _ := verify.NewVerifier(int64(len(image)), hashes)
	io.WriteString(v, image[:2500]) // ...then the power goes
	checkpoint, err := v.MarshalBinary()
	if err != nil {
		log.Fatal(err)
	}

	resumed, _ := verify.NewVerifier(int64(len(image)), hashes)
	if err := resumed.UnmarshalBinary(checkpoint); err != nil {
		log.Fatal(err) // start over: the checkpoint is for something else
	}
	fmt.Println("resume at byte", resumed.Written())
	io.WriteString(resumed, image[resumed.Written():])
	fmt.Println("verified:", resumed.Verify() == nil)
	// Output:
	// resume at byte 2500
	// verified: true
}

// A device lists only its own prefix ("rootfs/board-a/"): when the
// repository delegates per hardware, only the delegated roles that may
// hold that prefix are fetched.
func ExampleTrusted_Targets() {
	embeddedRoot, metadataURL, _, cleanup := serveRepository(map[string]verify.Custom{
		"rootfs/board-a/1.5.0/rootfs.img": {Component: "rootfs", Version: "1.5.0", Hardware: []string{"board-a"}},
		"rootfs/board-b/1.6.0/rootfs.img": {Component: "rootfs", Version: "1.6.0", Hardware: []string{"board-b"}},
	})
	defer cleanup()
	dir, err := os.MkdirTemp("", "myapp")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	client, err := verify.New(verify.Config{
		Root:        embeddedRoot,
		MetadataURL: metadataURL,
		Dir:         filepath.Join(dir, "tuf"), // /var/lib/myapp/tuf
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	trusted, err := client.Update(ctx) // root, timestamp, snapshot, targets
	if err != nil {
		log.Fatal(err)
	}
	targets, err := trusted.Targets(ctx, "rootfs/board-a/")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(targets.Targets), "target under rootfs/board-a/")
	tg, err := verify.Select(targets.Targets, verify.Policy{Component: "rootfs", Hardware: "board-a", Installed: "1.4.2"})
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Printf("update to %s from role %q\n", tg.Custom.Version, tg.Role)
	// Output:
	// 1 target under rootfs/board-a/
	// update to 1.5.0 from role ""
}

// Any target, switchback's or not (an OCI manifest, a file a relay
// mirrors), is looked up by path with TUF's delegation search, and its
// bytes are checked with a Verifier.
func ExampleTrusted_Target() {
	embeddedRoot, metadataURL, targetsURL, cleanup := serveRepository(map[string]verify.Custom{
		"oci/app/manifest.json": {Component: "app", Version: "2.0.0", Hardware: []string{"*"}},
	})
	defer cleanup()
	dir, err := os.MkdirTemp("", "myapp")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	client, err := verify.New(verify.Config{ // as in ExampleClient_Refresh
		Root: embeddedRoot, MetadataURL: metadataURL, TargetsURL: targetsURL, Dir: dir,
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	trusted, err := client.Update(ctx)
	if err != nil {
		log.Fatal(err)
	}
	ti, err := trusted.Target(ctx, "oci/app/manifest.json")
	if errors.Is(err, verify.ErrTargetNotFound) {
		return
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ti.Path, ti.Length, strings.HasPrefix(ti.URL, targetsURL))
	v, err := ti.Verifier()
	if err != nil {
		log.Fatal(err)
	}
	res, err := http.Get(ti.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.Copy(v, res.Body); err != nil {
		log.Fatal(err)
	}
	fmt.Println("verified:", v.Verify())
	_, err = trusted.Target(ctx, "oci/other/manifest.json")
	fmt.Println("other is ErrTargetNotFound:", errors.Is(err, verify.ErrTargetNotFound))
	// Output:
	// oci/app/manifest.json 34 true
	// verified: <nil>
	// other is ErrTargetNotFound: true
}
