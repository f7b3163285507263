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
