package repository

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/verify"
)

// deviceTargets lists the repository's targets as a device does.
func deviceTargets(t *testing.T, r *Repo, prefixes ...string) *verify.Targets {
	t.Helper()
	c, err := verify.New(verify.Config{
		Root: root1(t, r), MetadataURL: "http://repo.invalid/metadata", TargetsURL: "http://repo.invalid/targets",
		Dir:     t.TempDir(),
		Fetcher: func(context.Context) verify.Fetcher { return dirFetcher{r.Dir()} },
	})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.Update(context.Background())
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	ts, err := tr.Targets(context.Background(), prefixes...)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func newDelegationKeys(t *testing.T, n int) ([]*Key, []*metadata.Key) {
	t.Helper()
	var priv []*Key
	var pub []*metadata.Key
	for range n {
		k, err := GenerateKey(Ed25519)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = append(priv, k), append(pub, k.Public())
	}
	return priv, pub
}

// TestDelegatePerHardware: per-hardware roles, one nested under a vendor
// role, each with its own keys; a device finds the releases of its
// hardware in them, and the repository reopens with them.
func TestDelegatePerHardware(t *testing.T) {
	r, keysDir := initRepo(t, InitOptions{})
	kA, pubA := newDelegationKeys(t, 1)
	kV, pubV := newDelegationKeys(t, 1)
	kB, pubB := newDelegationKeys(t, 2)
	r.AddKeys(append(append(kA, kV...), kB...)...)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Delegate(RoleTargets, Delegation{Name: "board-a", Paths: []string{"rootfs/board-a/*"}, Terminating: true, Keys: pubA}))
	must(r.Delegate(RoleTargets, Delegation{Name: "vendor-x", Paths: []string{"rootfs/board-b/*"}, Keys: pubV}))
	must(r.Delegate("vendor-x", Delegation{Name: "board-b", Paths: []string{"rootfs/board-b/*"}, Threshold: 2, Keys: pubB}))
	add := func(role, path, version, hw string) error {
		_, err := r.AddTarget(ctx, path, strings.NewReader(path), verify.Custom{Component: "rootfs", Version: version, Hardware: []string{hw}}, AddOptions{Role: role})
		return err
	}
	must(add("board-a", "rootfs/board-a/1.0.0.img", "1.0.0", "board-a"))
	must(add("board-b", "rootfs/board-b/2.0.0.img", "2.0.0", "board-b"))
	if err := add("board-a", "rootfs/board-b/9.0.0.img", "9.0.0", "board-b"); !errors.Is(err, ErrBadTarget) {
		t.Errorf("AddTarget outside the role's paths: %v, want ErrBadTarget", err)
	}
	must(r.Publish(ctx))

	ts := deviceTargets(t, r, "rootfs/board-b/")
	if len(ts.Targets) != 1 || ts.Targets[0].Path != "rootfs/board-b/2.0.0.img" || ts.Targets[0].Role != "board-b" {
		t.Errorf("board-b targets %+v, want rootfs/board-b/2.0.0.img from board-b", ts.Targets)
	}
	if len(deviceTargets(t, r).Targets) != 2 {
		t.Errorf("not every release listed")
	}

	// Reopened, the repository knows its delegated roles and publishes
	// a new version of one of them.
	online, err := LoadKeys(keysDir)
	must(err)
	r2, err := Open(Config{Dir: r.Dir(), Keys: append(online, kA...)})
	must(err)
	if got := r2.DelegatedRoles(); strings.Join(got, ",") != "board-a,board-b,vendor-x" {
		t.Errorf("DelegatedRoles = %q", got)
	}
	_, err = r2.AddTarget(ctx, "rootfs/board-a/1.1.0.img", strings.NewReader("x"), verify.Custom{Component: "rootfs", Version: "1.1.0", Hardware: []string{"board-a"}}, AddOptions{Role: "board-a"})
	must(err)
	must(r2.Publish(ctx))
	if got := deviceTargets(t, r2, "rootfs/board-a/"); len(got.Targets) != 2 {
		t.Errorf("board-a after the second publish: %d targets, want 2", len(got.Targets))
	}
}

// TestDelegateThreshold: a role whose threshold the available keys do not
// meet is staged, not published.
func TestDelegateThreshold(t *testing.T) {
	r, _ := initRepo(t, InitOptions{})
	k, pub := newDelegationKeys(t, 2)
	r.AddKeys(k[0])
	if err := r.Delegate(RoleTargets, Delegation{Name: "hw", Paths: []string{"hw/*"}, Threshold: 2, Keys: pub}); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(ctx); !errors.Is(err, ErrThreshold) {
		t.Fatalf("Publish: %v, want ErrThreshold", err)
	}
	r.AddKeys(k[1])
	if err := r.Publish(ctx); err != nil {
		t.Fatalf("Publish with both keys: %v", err)
	}
	if got, _ := filepath.Glob(filepath.Join(r.MetadataDir(), "*.hw.json")); len(got) != 1 {
		t.Errorf("published hw metadata %q, want one version", got)
	}
}

func TestDelegateRefuses(t *testing.T) {
	r, _ := initRepo(t, InitOptions{})
	_, pub := newDelegationKeys(t, 1)
	for _, d := range []Delegation{
		{Name: "snapshot", Paths: []string{"*"}, Keys: pub},
		{Name: "a/b", Paths: []string{"*"}, Keys: pub},
		{Name: "a.b", Paths: []string{"*"}, Keys: pub},
		{Name: "ok", Keys: pub},
		{Name: "ok", Paths: []string{"*"}, PathHashPrefixes: []string{"ab"}, Keys: pub},
		{Name: "ok", Paths: []string{"*"}},
		{Name: "ok", Paths: []string{"*"}, Keys: pub, Threshold: 2},
	} {
		if err := r.Delegate(RoleTargets, d); err == nil {
			t.Errorf("Delegate(%+v) accepted", d)
		}
	}
	if err := r.Delegate("missing", Delegation{Name: "ok", Paths: []string{"*"}, Keys: pub}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delegate from a missing role: %v, want ErrNotFound", err)
	}
}
