package oci

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/switchback-ota/switchback/verify"
)

// killChild is the environment of TestKillChild: the install to run and
// the stage at which the process kills itself.
type killChild struct {
	Dir, Host, Repo string
	Manifest        []byte // to arm; nil: start the armed trial and commit it
	KillAt          int
}

// TestKillChild runs only as the child of TestKillAtEveryStage: it arms
// the manifest and SIGKILLs itself at the KillAt-th stage.
func TestKillChild(t *testing.T) {
	env := os.Getenv("SWITCHBACK_OCI_KILL")
	if env == "" {
		t.Skip("run by TestKillAtEveryStage")
	}
	var k killChild
	if err := json.Unmarshal([]byte(env), &k); err != nil {
		t.Fatal(err)
	}
	n := 0
	stage = func(string) {
		if n++; n == k.KillAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	c, err := New(Config{Dir: k.Dir, Hardware: "board-a", Registry: RegistryConfig{Host: k.Host}, Resolve: staticResolver(verify.OCI{Repository: k.Repo})})
	if err != nil {
		t.Fatal(err)
	}
	if k.Manifest == nil {
		st, err := c.CountStart(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Commit(context.Background(), st.Booted); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := armTrial(t, c, k.Manifest); err != nil {
		t.Fatal(err)
	}
}

// runKillChild runs TestKillChild for k and reports whether it was killed.
func runKillChild(t *testing.T, k killChild) bool {
	t.Helper()
	env, _ := json.Marshal(k)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SWITCHBACK_OCI_KILL="+string(env))
	out, err := cmd.CombinedOutput()
	killed := err != nil && cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	if err != nil && !killed {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return killed
}

// TestKillAtEveryStage kills an install of v2 over a committed v1 at every
// stage (after each blob, each layer, the unpack, the rename, the arm):
// after each kill, the slot that starts holds a complete v1 or v2 whose
// container runs (when runc is here), and the install, run again, finishes.
func TestKillAtEveryStage(t *testing.T) {
	host := testRegistry(t)
	repo := randomName("test/kill-")
	// With runc at hand, each kill is followed by a start of the container.
	base, cmd := makeLayer(t, file("base", randomName(""))), []string{"/bin/true"}
	runc := runcAvailable()
	if runc != nil {
		base = busyboxLayer(t, runc)
		cmd = []string{"/bin/busybox", "sh", "-c", "echo ok > /tmp/ready; exec /bin/busybox sleep 600"}
	} else {
		t.Log("no runc (or not root): the slot that starts is checked, not started")
	}
	v1 := pushImage(t, host, repo, "v1", cmd, base, makeLayer(t, file("version", "1")))
	v2 := pushImage(t, host, repo, "v2", cmd, base, makeLayer(t, file("version", "2")), makeLayer(t, file("extra", "2")))
	for killAt := 1; ; killAt++ {
		dir := t.TempDir()
		c, err := New(Config{Dir: dir, Hardware: "board-a", Registry: RegistryConfig{Host: host}, Resolve: staticResolver(verify.OCI{Repository: repo})})
		if err != nil {
			t.Fatal(err)
		}
		slot, err := armTrial(t, c, v1.manifest)
		if err != nil {
			t.Fatal(err)
		}
		bootTrial(t, c, slot)
		killed := runKillChild(t, killChild{Dir: dir, Host: host, Repo: repo, Manifest: v2.manifest, KillAt: killAt})
		checkStarts(t, dir, host, repo, killAt, runc != nil)
		if !killed {
			t.Logf("%d stages, each killed", killAt-1)
			return
		}
		// The install, run again, finishes.
		c2, err := New(Config{Dir: dir, Hardware: "board-a", Registry: RegistryConfig{Host: host}, Resolve: staticResolver(verify.OCI{Repository: repo})})
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := c2.Status(context.Background()); st.Trial == "" {
			if _, err := armTrial(t, c2, v2.manifest); err != nil {
				t.Fatalf("kill at stage %d: the install run again: %v", killAt, err)
			}
		}
		checkStarts(t, dir, host, repo, killAt, false)
	}
}

// checkStarts checks that the slot that would start next holds a complete
// image and, with start, that its container runs and answers its check.
func checkStarts(t *testing.T, dir, host, repo string, killAt int, start bool) {
	t.Helper()
	c, err := New(Config{Dir: dir, Hardware: "board-a", Registry: RegistryConfig{Host: host}, Resolve: staticResolver(verify.OCI{Repository: repo})})
	if err != nil {
		t.Fatalf("kill at stage %d: reopening: %v", killAt, err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.Bundle(st.Booted), "rootfs", "version"))
	if err != nil || !c.HasImage(st.Booted) {
		t.Fatalf("kill at stage %d: slot %s starts without a complete image: %v", killAt, st.Booted, err)
	}
	if v, _ := strconv.Atoi(string(b)); v != 1 && v != 2 {
		t.Fatalf("kill at stage %d: slot %s holds version %q", killAt, st.Booted, b)
	}
	if start {
		r := &Runc{Component: c, ID: randomName("sb-kill-"), Check: []string{"/bin/busybox", "test", "-f", "/tmp/ready"}}
		defer r.Stop(context.Background())
		if err := r.Restart(context.Background(), "app"); err != nil {
			t.Fatalf("kill at stage %d: starting slot %s: %v", killAt, st.Booted, err)
		}
		if err := waitCheck(context.Background(), r.HealthCheck(), true); err != nil {
			t.Fatalf("kill at stage %d: the container of slot %s does not run: %v", killAt, st.Booted, err)
		}
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "bundles", ".tmp-*")); len(tmps) > 0 {
		t.Fatalf("kill at stage %d: temporary bundles survived New: %v", killAt, tmps)
	}
}

// runcAvailable returns busybox's bytes when root, runc and busybox are
// here, else nil.
func runcAvailable() []byte {
	bb, err := os.ReadFile("/bin/busybox")
	if _, rerr := exec.LookPath("runc"); rerr != nil || err != nil || os.Geteuid() != 0 {
		return nil
	}
	return bb
}

// TestKillDuringCommit kills the commit of a v2 trial at every stage
// (after the commit is recorded, after index.json is rewritten, after each
// blob the collection removes: a stray blob and a stray partial download
// are there to be removed): after each kill the committed v2 starts (its
// container runs, when runc is here), the rollback image v1 is complete,
// the layout's index.json names only blobs that are present (skopeo reads
// each image from it, when it is here), and the collection run again
// finishes and removes the strays.
func TestKillDuringCommit(t *testing.T) {
	host := testRegistry(t)
	repo := randomName("test/killgc-")
	base, cmd := makeLayer(t, file("base", randomName(""))), []string{"/bin/true"}
	runc := runcAvailable()
	if runc != nil {
		base = busyboxLayer(t, runc)
		cmd = []string{"/bin/busybox", "sh", "-c", "echo ok > /tmp/ready; exec /bin/busybox sleep 600"}
	}
	v1 := pushImage(t, host, repo, "v1", cmd, base, makeLayer(t, file("version", "1")))
	v2 := pushImage(t, host, repo, "v2", cmd, base, makeLayer(t, file("version", "2")))
	open := func(dir string) *Component {
		c, err := New(Config{Dir: dir, Hardware: "board-a", Registry: RegistryConfig{Host: host}, Resolve: staticResolver(verify.OCI{Repository: repo})})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	strays := []string{digestOf([]byte("stray")), digestOf([]byte("partial"))}
	for killAt := 1; ; killAt++ {
		dir := t.TempDir()
		c := open(dir)
		slot, err := armTrial(t, c, v1.manifest)
		if err != nil {
			t.Fatal(err)
		}
		bootTrial(t, c, slot)
		if _, err := armTrial(t, c, v2.manifest); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(c.store.Path(strays[0]), []byte("stray"), 0o644)
		os.WriteFile(c.store.Path(strays[1])+".part", []byte("part"), 0o644)
		killed := runKillChild(t, killChild{Dir: dir, Host: host, Repo: repo, KillAt: killAt})
		checkStarts(t, dir, host, repo, killAt, runc != nil)
		c = open(dir)
		st, _ := c.Status(context.Background())
		for _, s := range []string{"a", "b"} {
			if !c.HasImage(s) {
				t.Fatalf("kill at stage %d: slot %s lost its image (status %+v)", killAt, s, st)
			}
			checkLayout(t, c, s)
		}
		if _, err := c.GC(); err != nil {
			t.Fatalf("kill at stage %d: GC run again: %v", killAt, err)
		}
		for _, p := range []string{c.store.Path(strays[0]), c.store.Path(strays[1]) + ".part"} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("kill at stage %d: %s survives the collection run again", killAt, filepath.Base(p))
			}
		}
		if !killed {
			t.Logf("%d stages, each killed", killAt-1)
			return
		}
	}
}
