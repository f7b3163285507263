package updater

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

func TestConfigValidation(t *testing.T) {
	repo := tuftest.New(t)
	badCA := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(badCA, []byte("not a certificate"), 0o600)
	boot := slotstest.NewFakeBoot("a", "b")
	two := []slots.Slot{slotstest.NewMemSlot("a", 1<<20), slotstest.NewMemSlot("b", 1<<20)}
	good := func() Config {
		return Config{Hardware: hw, StateDir: t.TempDir(), TrustedRoot: repo.Root(),
			MetadataURL: repo.MetadataURL(), TargetsURL: repo.TargetsURL(),
			Components: []Component{{Name: "rootfs", Slots: two, Boot: boot}}}
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"no hardware", func(c *Config) { c.Hardware = "" }, "Hardware is required"},
		{"no root", func(c *Config) { c.TrustedRoot = nil }, "TrustedRoot is required"},
		{"one slot", func(c *Config) { c.Components[0].Slots = two[:1] }, "at least two slots"},
		{"same slot twice", func(c *Config) { c.Components[0].Slots = []slots.Slot{two[0], two[0]} }, "distinct"},
		{"component twice", func(c *Config) { c.Components = append(c.Components, c.Components[0]) }, "listed twice"},
		{"tries out of range", func(c *Config) { c.Tries = 12 }, "out of range"},
		{"unreadable CA bundle", func(c *Config) { c.CAFile = badCA }, "ca"},
		{"client certificate without key", func(c *Config) { c.CertFile = badCA }, "key"},
		{"negative poll interval", func(c *Config) { c.PollInterval = -time.Second }, "PollInterval"},
		{"negative poll jitter", func(c *Config) { c.PollJitter = -time.Second }, "PollJitter"},
		{"negative confirm timeout", func(c *Config) { c.ConfirmTimeout = -time.Second }, "ConfirmTimeout"},
		{"negative stall timeout", func(c *Config) { c.StallTimeout = -time.Second }, "StallTimeout"},
		{"negative rate limit", func(c *Config) { c.RateLimit = -1 }, "RateLimit"},
		{"negative full refresh interval means always full", func(c *Config) { c.FullRefreshInterval = -time.Second }, ""},
		{"factory version not semver", func(c *Config) { c.Components[0].FactoryVersion = "latest" }, "FactoryVersion"},
		{"semver factory version", func(c *Config) { c.Components[0].FactoryVersion = "v1.0.0" }, ""},
		{"TLS files with an HTTPClient", func(c *Config) { c.HTTPClient = &http.Client{}; c.CAFile = badCA }, "do not apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.edit(&cfg)
			_, err := New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.wantErr)) {
				t.Errorf("New: %v, want an error about %q", err, tt.wantErr)
			}
		})
	}
}
