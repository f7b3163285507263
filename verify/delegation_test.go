package verify_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

func TestDelegations(t *testing.T) {
	for _, consistent := range []bool{false, true} {
		r := newTestRepo(t, consistent)
		r.delegate("apps", []string{"app/*"}, true)
		r.delegate("firmware", []string{"fw/*", "app/*"}, false)
		r.addTarget("", "rootfs/1.0.0", []byte("rootfs"), customFor("rootfs", "1.0.0", "*"))
		r.addTarget("", "app/shadowed", []byte("top"), customFor("app", "1.0.0", "top"))
		r.addTarget("apps", "app/shadowed", []byte("apps"), customFor("app", "1.0.0", "apps"))
		r.addTarget("apps", "app/2.0.0", []byte("app two"), customFor("app", "2.0.0", "*"))
		r.addTarget("apps", "fw/sneaky", []byte("not its path"), customFor("fw", "9.0.0", "*"))
		r.addTarget("firmware", "fw/1.0.0", []byte("fw"), customFor("fw", "1.0.0", "*"))
		r.addTarget("firmware", "app/3.0.0", []byte("after a terminating role"), customFor("app", "3.0.0", "*"))
		r.addTarget("firmware", "fw/bad", []byte("fw"), nil)
		r.publish()
		dir := t.TempDir()
		ts := refresh(t, newClient(t, r, dir))
		if got, want := paths(ts.Targets), []string{"app/2.0.0", "app/shadowed", "fw/1.0.0", "rootfs/1.0.0"}; !slices.Equal(got, want) {
			t.Errorf("consistent %v: Targets = %q, want %q", consistent, got, want)
		}
		for _, tg := range ts.Targets {
			if tg.Path == "app/shadowed" && tg.Custom.Hardware[0] != "top" {
				t.Errorf("app/shadowed from %q, want the top-level targets role", tg.Custom.Hardware)
			}
		}
		var rejected []string
		for _, rj := range ts.Rejected {
			rejected = append(rejected, rj.Path+"@"+rj.Role)
		}
		// app/3.0.0 is listed by firmware, but apps (terminating) answers
		// first for app/*; fw/sneaky is outside apps' paths.
		if want := []string{"app/3.0.0@firmware", "fw/bad@firmware", "fw/sneaky@apps"}; !slices.Equal(rejected, want) {
			t.Errorf("consistent %v: Rejected = %q, want %q", consistent, rejected, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "apps.json")); err != nil {
			t.Errorf("delegated role not stored: %v", err)
		}
		// The stored delegated metadata is used by the next refresh.
		before := len(r.requested())
		refresh(t, newClient(t, r, dir))
		for _, p := range r.requested()[before:] {
			if strings.HasSuffix(p, "apps.json") {
				t.Errorf("stored delegated role fetched again: %s", p)
			}
		}
	}
}

func TestDelegatedRoleUntrusted(t *testing.T) {
	r := newTestRepo(t, false)
	r.delegate("apps", []string{"app/*"}, false)
	r.addTarget("", "rootfs/1.0.0", []byte("rootfs"), customFor("rootfs", "1.0.0", "*"))
	r.addTarget("apps", "app/2.0.0", []byte("app two"), customFor("app", "2.0.0", "*"))
	r.publish()
	// Sign the delegated role with the wrong key.
	priv, _ := tuftest.NewMetadataKey(t)
	tuftest.SignMetadata(t, r.delegated["apps"], priv)
	r.set("metadata/apps.json", tuftest.EncodeMetadata(t, r.delegated["apps"]))
	ts := refresh(t, newClient(t, r, t.TempDir()))
	if got, want := paths(ts.Targets), []string{"rootfs/1.0.0"}; !slices.Equal(got, want) {
		t.Errorf("Targets = %q, want %q", got, want)
	}
	if len(ts.Rejected) != 1 || ts.Rejected[0].Role != "apps" || !errors.Is(ts.Rejected[0].Err, verify.ErrUntrusted) {
		t.Errorf("Rejected = %+v, want the apps role as ErrUntrusted", ts.Rejected)
	}
}
