package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

// cli runs the client in-process and returns its exit code.
func cli(t *testing.T, args ...string) int {
	t.Helper()
	var stderr bytes.Buffer
	code := run(context.Background(), append([]string{"-v=false"}, args...), &stderr)
	if code != 0 {
		t.Logf("tuf-conformance-client %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	}
	return code
}

type env struct {
	repo              *tuftest.Repo
	meta, targets, rt string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{repo: tuftest.New(t), meta: t.TempDir(), targets: t.TempDir()}
	e.rt = filepath.Join(t.TempDir(), "root.json")
	if err := os.WriteFile(e.rt, e.repo.Root(), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) init(t *testing.T) {
	t.Helper()
	if code := cli(t, "--metadata-dir", e.meta, "init", e.rt); code != 0 {
		t.Fatalf("init: exit %d", code)
	}
}

func (e *env) refresh(t *testing.T) int {
	return cli(t, "--metadata-dir", e.meta, "--metadata-url", e.repo.MetadataURL(), "refresh")
}

func (e *env) download(t *testing.T, names ...string) int {
	args := []string{"--metadata-dir", e.meta, "--metadata-url", e.repo.MetadataURL(),
		"--target-base-url", e.repo.TargetsURL(), "--target-dir", e.targets}
	for _, n := range names {
		args = append(args, "--target-name", n)
	}
	return cli(t, append(args, "download")...)
}

// TestInitRefresh: init makes no request and stores the root as
// root.json; refresh stores the top-level roles under plain names and asks
// for the next root first (CLIENT-CLI.md; TUF 5.3).
func TestInitRefresh(t *testing.T) {
	e := newEnv(t)
	e.init(t)
	if n := e.repo.Requests(""); n != 0 {
		t.Errorf("init made %d requests", n)
	}
	if code := e.refresh(t); code != 0 {
		t.Fatalf("refresh: exit %d", code)
	}
	var names []string
	entries, _ := os.ReadDir(e.meta)
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".json") {
			names = append(names, en.Name())
		}
	}
	if want := []string{"root.json", "snapshot.json", "targets.json", "timestamp.json"}; !slices.Equal(names, want) {
		t.Errorf("metadata dir holds %q, want %q", names, want)
	}
	if e.repo.Requests("/metadata/2.root.json") != 1 || e.repo.Requests("/metadata/timestamp.json") != 1 {
		t.Error("refresh did not ask for 2.root.json and timestamp.json once each")
	}
}

// TestDownload: download refreshes implicitly, stores each target under
// its escaped path, does not download a stored target again, and fails
// (exit 1) on a target the repository does not list, after the ones
// before it.
func TestDownload(t *testing.T) {
	e := newEnv(t)
	e.repo.AddTarget("dir/a.txt", []byte("artifact a"), nil)
	e.repo.AddTarget("b.txt", []byte("artifact b"), nil)
	e.repo.Publish()
	e.init(t)
	if code := e.download(t, "dir/a.txt", "b.txt"); code != 0 {
		t.Fatalf("download: exit %d", code)
	}
	got, err := os.ReadFile(filepath.Join(e.targets, url.PathEscape("dir/a.txt")))
	if err != nil || string(got) != "artifact a" {
		t.Errorf("dir/a.txt stored as %q, %v", got, err)
	}
	file := "/targets/dir/" + tuftest.SHA256([]byte("artifact a")) + ".a.txt"
	if n := e.repo.Requests(file); n != 1 {
		t.Errorf("%s requested %d times, want 1", file, n)
	}
	if code := e.download(t, "dir/a.txt"); code != 0 {
		t.Fatalf("second download: exit %d", code)
	}
	if n := e.repo.Requests(file); n != 1 {
		t.Errorf("a stored target was downloaded again (%d requests)", n)
	}
	if code := e.download(t, "b.txt", "missing.txt"); code != 1 {
		t.Errorf("download of a missing target: exit %d, want 1", code)
	}
}

// TestDownloadRefusesSubstitutedBytes: a target file replaced on the
// server is not stored.
func TestDownloadRefusesSubstitutedBytes(t *testing.T) {
	e := newEnv(t)
	e.repo.AddTarget("a.txt", []byte("artifact a"), nil)
	e.repo.Publish()
	e.repo.SetTargetBytes("a.txt", []byte("artifact A"))
	e.init(t)
	if code := e.download(t, "a.txt"); code != 1 {
		t.Errorf("download of substituted bytes: exit %d, want 1", code)
	}
	if _, err := os.Stat(filepath.Join(e.targets, "a.txt")); err == nil {
		t.Error("substituted bytes were stored")
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"--metadata-dir", "x"}, {"--metadata-dir", "x", "frob"}, {"--metadata-dir", "x", "init"}} {
		if code := run(context.Background(), args, &bytes.Buffer{}); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

// TestClockUnderFaketime: with FAKETIME set the time comes from date(1),
// which libfaketime fakes (here a stand-in on PATH).
func TestClockUnderFaketime(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "date"), []byte("#!/bin/sh\necho 1893456000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	t.Setenv("FAKETIME", "@2030-01-01 00:00:00")
	now, err := clock()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := now(), time.Unix(1893456000, 0); got.Before(want) || got.Sub(want) > time.Hour {
		t.Errorf("clock under FAKETIME = %v, want about %v", got, want)
	}
}
