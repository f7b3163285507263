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
	"os"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/verify"
)

// A device checks for an update of its root filesystem: refresh the TUF
// metadata, pick the release, and stream it through a Verifier into the
// inactive slot. (Compiled, not run: it needs an update server.)
func ExampleClient_Refresh() {
	var embeddedRoot []byte // //go:embed root.json in a real program
	buildTime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	client, err := verify.New(verify.Config{
		Root:        embeddedRoot,
		MetadataURL: "https://updates.example.com/metadata/",
		TargetsURL:  "https://updates.example.com/targets/",
		Dir:         "/var/lib/myapp/tuf",
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
	slot, err := os.OpenFile("/dev/disk/by-partlabel/rootfs_b", os.O_WRONLY, 0)
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

// A device whose repository delegates per hardware ("rootfs/board-a/*"
// to a role of board A's vendor) lists only its own prefix: only the
// delegated roles that may hold it are fetched. (Compiled, not run: it
// needs an update server.)
func ExampleTrusted_Targets() {
	var embeddedRoot []byte // //go:embed root.json in a real program
	client, err := verify.New(verify.Config{
		Root:        embeddedRoot,
		MetadataURL: "https://updates.example.com/metadata/",
		Dir:         "/var/lib/myapp/tuf",
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
	tg, err := verify.Select(targets.Targets, verify.Policy{Component: "rootfs", Hardware: "board-a", Installed: "1.4.2"})
	if err != nil {
		log.Print(err)
		return
	}
	log.Printf("update to %s from role %q", tg.Custom.Version, tg.Role)
}

// Any target, switchback's or not (an OCI manifest, a file a relay
// mirrors), is looked up by path with TUF's delegation search, and its
// bytes are checked with a Verifier. (Compiled, not run.)
func ExampleTrusted_Target() {
	var client *verify.Client // as in ExampleClient_Refresh
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
	fmt.Println(ti.URL, ti.Length, string(ti.Custom))
	v, err := ti.Verifier()
	if err != nil {
		log.Fatal(err)
	}
	_ = v // stream the bytes from ti.URL through v, then v.Verify()
}
