package updater

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

// TestNoRestartFunction: with Config.Restart nil, Install arms the release
// and returns ErrRestartRequired, and Run returns it instead of polling on
// while the new version waits; a failed Restart stops Run the same way.
func TestNoRestartFunction(t *testing.T) {
	restartErr := errors.New("cannot restart")
	tests := []struct {
		name    string
		restart func(context.Context, string) error
		run     bool // Run, else Check and Install
	}{
		{"Install, nil Restart", nil, false},
		{"Run, nil Restart", nil, true},
		{"Run, failing Restart", func(context.Context, string) error { return restartErr }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 5000), custom("1.1.0"))
			repo.Publish()
			d := newDevice(t, repo)
			d.cfg = func(c *Config) { c.Restart = tt.restart }
			d.start()
			var err error
			if tt.run {
				// The deadline only bounds a Run that would poll on.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err = d.u.Run(ctx)
			} else {
				err = d.update()
			}
			if !errors.Is(err, ErrRestartRequired) {
				t.Fatalf("got %v, want ErrRestartRequired", err)
			}
			if tt.restart != nil && !errors.Is(err, restartErr) {
				t.Errorf("got %v, want the Restart error too", err)
			}
			if pd := d.pending(); pd == nil || pd.Phase != PhaseArmed {
				t.Errorf("pending %+v, want armed", pd)
			}
			d.confirmed("1.1.0")
		})
	}
}

// TestRollbackWithoutRestartFunction: a failed trial rolled back by
// Confirm needs a restart into the previous version; with no Restart,
// Confirm and Run say so.
func TestRollbackWithoutRestartFunction(t *testing.T) {
	repo := tuftest.New(t)
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 5000), custom("1.1.0"))
	repo.Publish()
	d := newDevice(t, repo)
	if err := d.update(); err != nil {
		t.Fatal(err)
	}
	d.healthy.Store(false)
	d.cfg = func(c *Config) { c.Restart = nil }
	if err := d.boot.Reboot(); err != nil {
		t.Fatal(err)
	}
	d.start()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.u.Run(ctx)
	if !errors.Is(err, ErrRestartRequired) || !errors.Is(err, ErrRolledBack) {
		t.Fatalf("Run after a failed trial: %v, want ErrRolledBack and ErrRestartRequired", err)
	}
}
