package updater

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

func rolledOut(start time.Time) *verify.Rollout {
	return &verify.Rollout{Start: start, Salt: "rootfs-1.1.0",
		Ramp: []verify.RampPoint{{After: "0s", Percent: 1}, {After: "24h", Percent: 10}, {After: "72h", Percent: 100}}}
}

// A halt is one re-signed targets file: a device that installed the
// release keeps it, one that did not stops taking it at its next check.
func TestRolloutHaltStopsNewInstalls(t *testing.T) {
	repo := tuftest.New(t)
	c := custom("1.1.0")
	c.Rollout = rolledOut(time.Now().Add(-100 * time.Hour))
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 4096), c)
	repo.Publish()
	early := newDevice(t, repo)
	if err := early.update(); err != nil {
		t.Fatalf("update under a full rollout: %v", err)
	}
	if err := early.reboot(); err != nil {
		t.Fatal(err)
	}
	halted := *c.Rollout
	halted.Halted = true
	if err := repo.Repository().SetRollout("rootfs/1.1.0.img", &halted); err != nil {
		t.Fatal(err)
	}
	repo.Publish()
	late := newDevice(t, repo)
	if _, err := late.u.Check(context.Background()); !errors.Is(err, ErrNoUpdate) || !errors.Is(err, verify.ErrHalted) {
		t.Errorf("Check on a device without the release = %v, want ErrNoUpdate with ErrHalted", err)
	}
	if _, err := early.u.Check(context.Background()); !errors.Is(err, ErrNoUpdate) {
		t.Errorf("Check on the device with the release = %v, want ErrNoUpdate", err)
	}
	if got := early.installed(); got != "1.1.0" {
		t.Errorf("installed = %q, want 1.1.0 kept", got)
	}
}

func TestRolloutDeviceIDAndClock(t *testing.T) {
	start := time.Now().Add(-time.Hour) // 1 % plus a little
	idFile := filepath.Join(t.TempDir(), "machine-id")
	tests := []struct {
		name    string
		cfg     func(*Config)
		wantErr error // nil: an update is offered
	}{
		{"device in the first cohort, id from a file", func(c *Config) { c.DeviceIDFile = idFile }, nil},
		{"device in a late cohort", func(c *Config) { c.DeviceID = lateID(t) }, verify.ErrNotYet},
		{"no device id", func(c *Config) { c.DeviceIDFile = filepath.Join(t.TempDir(), "none") }, verify.ErrNotYet},
		{"clock behind the start", func(c *Config) {
			c.DeviceIDFile = idFile
			c.Now = func() time.Time { return start.Add(-time.Minute) }
		}, verify.ErrNotYet},
	}
	if err := os.WriteFile(idFile, []byte(earlyID(t)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := tuftest.New(t)
	c := custom("1.1.0")
	c.Rollout = rolledOut(start)
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 4096), c)
	repo.Publish()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeviceWith(t, repo, tt.cfg)
			ups, err := d.u.Check(context.Background())
			if tt.wantErr == nil {
				if err != nil || len(ups) != 1 {
					t.Fatalf("Check = %v, %v; want one update", ups, err)
				}
				return
			}
			if !errors.Is(err, ErrNoUpdate) || !errors.Is(err, tt.wantErr) {
				t.Errorf("Check = %v, want ErrNoUpdate with %v", err, tt.wantErr)
			}
		})
	}
}

func idWhere(t *testing.T, ok func(bucket float64) bool) string {
	t.Helper()
	for i := range 100_000 {
		id := "machine-" + string(rune('a'+i%26)) + time.Duration(i).String()
		if ok(verify.Bucket(id, "rootfs-1.1.0")) {
			return id
		}
	}
	t.Fatal("no such id")
	return ""
}

func earlyID(t *testing.T) string { return idWhere(t, func(b float64) bool { return b < 0.5 }) }
func lateID(t *testing.T) string  { return idWhere(t, func(b float64) bool { return b > 50 }) }

func TestChannelAndPin(t *testing.T) {
	repo := tuftest.New(t)
	beta := custom("1.2.0-beta.1")
	beta.Channels = []string{"beta"}
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 4096), custom("1.1.0"))
	repo.AddTarget("rootfs/1.2.0-beta.1.img", image("1.2.0-beta.1", 4096), beta)
	repo.AddTarget("rootfs/1.0.5.img", image("1.0.5", 4096), custom("1.0.5"))
	repo.Publish()
	tests := []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"stable by default", nil, "1.1.0"},
		{"beta", func(c *Config) { c.Channel = "beta" }, "1.2.0-beta.1"},
		{"pinned", func(c *Config) { c.Components[0].Pin = "1.0.5" }, "1.0.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDeviceWith(t, repo, tt.cfg)
			ups, err := d.u.Check(context.Background())
			if err != nil || len(ups) != 1 || ups[0].To != tt.want {
				t.Fatalf("Check = %+v, %v; want %s", ups, err, tt.want)
			}
		})
	}
	if _, err := New(Config{Hardware: hw, Channel: "Beta!"}); err == nil {
		t.Error("New accepted a bad channel")
	}
}
