package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTransferKeys: the low-speed and metadata-deadline keys of the
// configuration file reach the updater's configuration.
func TestTransferKeys(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]byte(`{"root": "` + root + `", "state_dir": "` + dir + `",
		"low_speed_limit": 512, "low_speed_time": "45s", "metadata_timeout": "2m"}`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := build(c)
	if err != nil {
		t.Fatal(err)
	}
	u := d.ucfg
	if u.LowSpeedLimit != 512 || u.LowSpeedTime != 45*time.Second || u.MetadataTimeout != 2*time.Minute {
		t.Errorf("got low_speed_limit %d, low_speed_time %v, metadata_timeout %v; want 512, 45s, 2m",
			u.LowSpeedLimit, u.LowSpeedTime, u.MetadataTimeout)
	}
}

// TestFleetKeys: device id, channel and pin reach the updater's
// configuration; a bad channel or pin is refused.
func TestFleetKeys(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app"), []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := parseConfig([]byte(`{"root": "` + root + `", "state_dir": "` + dir + `",
		"device_id_file": "/run/id", "device_id": "dev-7", "channel": "beta",
		"components": [{"name": "app", "type": "file", "path": "` + dir + `/app", "pin": "1.2.3"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := build(c)
	if err != nil {
		t.Fatal(err)
	}
	u := d.ucfg
	if u.DeviceID != "dev-7" || u.DeviceIDFile != "/run/id" || u.Channel != "beta" || u.Components[0].Pin != "1.2.3" {
		t.Errorf("got device_id %q, device_id_file %q, channel %q, pin %q", u.DeviceID, u.DeviceIDFile, u.Channel, u.Components[0].Pin)
	}
	for _, bad := range []string{`{"channel": "Beta"}`, `{"components": [{"name": "app", "type": "file", "path": "/x", "pin": "1.2"}]}`} {
		if _, err := parseConfig([]byte(bad)); err == nil {
			t.Errorf("parseConfig(%s) accepted", bad)
		}
	}
}
