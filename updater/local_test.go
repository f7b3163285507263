package updater

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/internal/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// TestLocalRepository updates from a repository directory (a USB stick)
// through file:// URLs, with the same verification as over HTTP.
func TestLocalRepository(t *testing.T) {
	repo := tuftest.New(t)
	img := image("1.1.0", 5<<20)
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()
	d := newDevice(t, repo)
	d.cfg = func(c *Config) {
		c.MetadataURL = "file://" + filepath.Join(repo.Dir(), "metadata") + "/"
		c.TargetsURL = "file://" + filepath.Join(repo.Dir(), "targets") + "/"
	}
	d.start()
	if err := d.update(); err != nil {
		t.Fatalf("update from a directory: %v", err)
	}
	if !bytes.Equal(d.b.Bytes(), img) {
		t.Fatal("slot b does not hold the image")
	}
	if err := d.reboot(); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if got := d.installed(); got != "1.1.0" {
		t.Errorf("installed %q, want 1.1.0", got)
	}
}

func TestInstallFile(t *testing.T) {
	img := image("1.1.0", 70000)
	other := custom("1.1.0")
	other.Hardware = []string{"another-board"}
	tests := []struct {
		name    string
		file    []byte
		custom  verify.Custom
		wantErr error
	}{
		{"signed image", img, custom("1.1.0"), nil},
		{"tampered image", append(bytes.Clone(img[:len(img)-1]), 'x'), custom("1.1.0"), verify.ErrVerification},
		{"unknown file", []byte("not a release"), custom("1.1.0"), verify.ErrVerification},
		{"wrong hardware", img, other, verify.ErrIncompatible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			repo.AddTarget("rootfs/1.1.0.img", img, tt.custom)
			repo.Publish()
			d := newDevice(t, repo)
			path := filepath.Join(t.TempDir(), "usb-image")
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			err := d.u.InstallFile(context.Background(), path)
			bs, _ := d.boot.Status(context.Background())
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("InstallFile: %v, want %v", err, tt.wantErr)
				}
				if bs.Trial != "" {
					t.Fatalf("slot armed after a refused file: %+v", bs)
				}
				return
			}
			if err != nil {
				t.Fatalf("InstallFile: %v", err)
			}
			if bs.Trial != "b" || !bytes.Equal(d.b.Bytes(), img) {
				t.Fatalf("after InstallFile: %+v; slot b holds the image: %v", bs, bytes.Equal(d.b.Bytes(), img))
			}
		})
	}
}
