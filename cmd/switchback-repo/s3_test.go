package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchback-ota/switchback/repository/s3publish/s3test"
)

func TestPublishToUsage(t *testing.T) {
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	sb(t, exitOK, "init", "-repo", repo, "-keys", keys)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"not s3", []string{"-to", "https://bucket/prefix"}, "s3://bucket/prefix"},
		{"plain http to a remote host", []string{"-to", "s3://b/p", "-endpoint", "http://s3.example.com"}, "loopback"},
		{"endpoint with a path", []string{"-to", "s3://b/p", "-endpoint", "https://s3.example.com/b"}, "scheme://host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"publish", "-repo", repo, "-keys", keys}, tt.args...)
			if out := sb(t, exitUsage, args...); !strings.Contains(out, tt.want) {
				t.Errorf("output %q does not contain %q", out, tt.want)
			}
		})
	}
}

// TestPublishToS3 runs the command against the SeaweedFS service: a first
// upload of everything, then a release that uploads only what is new.
func TestPublishToS3(t *testing.T) {
	b := s3test.New(t)
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	img := filepath.Join(dir, "rootfs.img")
	if err := os.WriteFile(img, []byte("rootfs 1.1.0"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb(t, exitOK, "init", "-repo", repo, "-keys", keys)
	sb(t, exitOK, "add", "-repo", repo, "-keys", keys, "-component", "rootfs", "-version", "1.1.0", "-hardware", "board-a", img)
	to := []string{"-to", b.S3URL("fleet/eu"), "-endpoint", b.Endpoint}
	// the image, 1.targets.json, 2.targets.json, 1.snapshot.json,
	// 2.snapshot.json, 1.root.json, timestamp.json, root.json
	out := sb(t, exitOK, append([]string{"publish", "-repo", repo, "-keys", keys}, to...)...)
	if !strings.Contains(out, "8 uploaded, 0 already there") {
		t.Errorf("first upload printed %q", out)
	}
	if _, ok := b.Objects(t, "fleet/eu/")["fleet/eu/metadata/timestamp.json"]; !ok {
		t.Error("no timestamp.json in the bucket")
	}
	sb(t, exitOK, "add", "-repo", repo, "-keys", keys, "-component", "rootfs", "-version", "1.2.0", "-hardware", "board-a", img)
	// 3.targets.json, 3.snapshot.json, timestamp.json (the image's bytes are
	// the same, but its file name is a new path's)
	out = sb(t, exitOK, append([]string{"publish", "-repo", repo, "-keys", keys, "-prune"}, to...)...)
	if !strings.Contains(out, "4 uploaded, 7 already there, 0 deleted") {
		t.Errorf("second upload printed %q", out)
	}
}
