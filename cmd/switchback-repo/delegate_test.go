package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDelegateFlow: a per-hardware role with two keys of its own and a
// threshold of two signs a release for its hardware; "verify" (a device's
// view) picks it; a release outside the role's paths is refused.
func TestDelegateFlow(t *testing.T) {
	dir := t.TempDir()
	repo, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	sb(t, exitOK, "init", "-repo", repo, "-keys", keys)
	out := sb(t, exitOK, "delegate", "-repo", repo, "-keys", keys, "-paths", "rootfs/board-a/*",
		"-terminating", "-count", "2", "-threshold", "2", "board-a")
	if strings.Count(out, "new board-a key") != 2 {
		t.Errorf("delegate output %q: want two new keys", out)
	}
	img := filepath.Join(dir, "rootfs.img")
	if err := os.WriteFile(img, []byte("board a image"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb(t, exitOK, "add", "-repo", repo, "-keys", keys, "-role", "board-a", "-component", "rootfs",
		"-version", "1.1.0", "-hardware", "board-a", "-path", "rootfs/board-a/1.1.0.img", img)
	out = sb(t, exitFail, "add", "-repo", repo, "-keys", keys, "-role", "board-a", "-component", "rootfs",
		"-version", "1.2.0", "-hardware", "board-b", "-path", "rootfs/board-b/1.2.0.img", img)
	if !strings.Contains(out, "not delegated this path") {
		t.Errorf("add outside the role's paths: %q", out)
	}
	out = sb(t, exitOK, "verify", "-repo", repo, "-root", filepath.Join(repo, "metadata", "1.root.json"),
		"-hardware", "board-a", "-installed", "rootfs=1.0.0")
	if !strings.Contains(out, "rootfs/board-a/1.1.0.img") {
		t.Errorf("verify output %q does not pick the delegated release", out)
	}
	// Without the second key the role cannot be signed: staged, exit 3.
	other := filepath.Join(dir, "one-key")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(keys, "*board-a*"))
	if len(matches) != 2 {
		t.Fatalf("board-a key files %q, want 2", matches)
	}
	if err := os.Rename(matches[1], filepath.Join(other, filepath.Base(matches[1]))); err != nil {
		t.Fatal(err)
	}
	sb(t, exitPending, "add", "-repo", repo, "-keys", keys, "-role", "board-a", "-component", "rootfs",
		"-version", "1.3.0", "-hardware", "board-a", "-path", "rootfs/board-a/1.3.0.img", img)
}
