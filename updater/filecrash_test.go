package updater

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// TestCrashLoopRollsBackFileSlot: a new application binary that dies on
// every start, before any of our code runs, is rolled back by the start
// counter (what `switchback guard` runs in ExecStartPre), and the updater
// records the failure at the next start of the old version.
func TestCrashLoopRollsBackFileSlot(t *testing.T) {
	ctx := context.Background()
	repo := tuftest.New(t)
	appPath := filepath.Join(t.TempDir(), "gateway")
	if err := os.WriteFile(appPath, []byte("v1.0.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	var last *Updater
	newUpdater := func() (*Updater, *slots.File) {
		if last != nil {
			last.Close() // its process ended
		}
		f, err := slots.NewFile(appPath)
		if err != nil {
			t.Fatal(err)
		}
		u, err := New(Config{
			Hardware: hw, StateDir: stateDir, TrustedRoot: repo.Root(),
			MetadataURL: repo.MetadataURL(), TargetsURL: repo.TargetsURL(),
			Components:           []Component{{Name: "app", Slots: f.Slots(), Boot: f, FactoryVersion: "1.0.0"}},
			ExternalStartCounter: true,
			Tries:                3,
			ConfirmTimeout:       5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		last = u
		t.Cleanup(func() { u.Close() })
		return u, f
	}
	repo.AddTarget("app/1.1.0", []byte("v1.1.0 crashes on start"), verify.Custom{Component: "app", Version: "1.1.0", Hardware: []string{hw}})
	repo.Publish()
	u, _ := newUpdater()
	ups, err := u.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Install(ctx, ups[0]); !errors.Is(err, ErrRestartRequired) {
		t.Fatalf("Install with no Restart function: %v, want ErrRestartRequired", err)
	}
	if got, _ := os.ReadFile(appPath); string(got) != "v1.1.0 crashes on start" {
		t.Fatalf("after install the app is %q, want the new version in place", got)
	}
	// systemd restarts the crashing unit; the guard counts each start.
	for i := 0; ; i++ {
		_, f := newUpdater()
		bs, err := f.CountStart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if bs.Booted != bs.Trial || bs.Trial == "" {
			if i != 3 {
				t.Errorf("rolled back after %d starts, want 3", i)
			}
			break
		}
		if i > 5 {
			t.Fatal("never rolled back")
		}
	}
	if got, _ := os.ReadFile(appPath); string(got) != "v1.0.0" {
		t.Fatalf("after the crash loop the app is %q, want v1.0.0 back", got)
	}
	// The old version starts and the agent in it confirms: the rollback
	// is recorded and the release blocklisted.
	u, _ = newUpdater()
	if err := u.Confirm(ctx); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("confirm on the old version: %v, want ErrRolledBack", err)
	}
	if _, err := u.Check(ctx); !errors.Is(err, ErrNoUpdate) {
		t.Errorf("check after crash loop: %v, want no update", err)
	}
	st, _ := u.Status(ctx)
	if len(st.Blocklist) != 1 || st.Blocklist[0].Version != "1.1.0" {
		t.Errorf("blocklist = %+v, want 1.1.0", st.Blocklist)
	}
}
