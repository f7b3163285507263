package updater

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

// TestOneUpdaterPerStateDir: a second Updater on a StateDir in use fails
// with ErrStateDirLocked naming the holder's PID, until the first is
// closed; a closed Updater refuses to act.
func TestOneUpdaterPerStateDir(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	first := d.u
	cfg := first.cfg
	_, err := New(cfg)
	if !errors.Is(err, ErrStateDirLocked) {
		t.Fatalf("second New on the same StateDir = %v, want ErrStateDirLocked", err)
	}
	if want := fmt.Sprintf("in use by PID %d", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := first.Check(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Check after Close = %v, want ErrClosed", err)
	}
	second, err := New(cfg)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	second.Close()
}

// TestLockHelper holds the lock of a StateDir in a child process of
// TestStateDirLockedByOtherProcess until its stdin closes.
func TestLockHelper(t *testing.T) {
	dir := os.Getenv("SWITCHBACK_LOCK_DIR")
	if dir == "" {
		t.Skip("helper process of TestStateDirLockedByOtherProcess")
	}
	l, err := LockStateDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
}

// TestStateDirLockedByOtherProcess: while another process holds the
// StateDir, New fails naming its PID; LockStateDir with a wait takes the
// lock once that process is gone.
func TestStateDirLockedByOtherProcess(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	cfg := d.u.cfg
	d.u.Close()
	child := exec.Command(os.Args[0], "-test.run=^TestLockHelper$")
	child.Env = append(os.Environ(), "SWITCHBACK_LOCK_DIR="+cfg.StateDir)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); child.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	_, err = New(cfg)
	if !errors.Is(err, ErrStateDirLocked) {
		t.Fatalf("New while another process holds the StateDir = %v, want ErrStateDirLocked", err)
	}
	if want := fmt.Sprintf("in use by PID %d", child.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	stdin.Close() // the child lets go and exits
	l, err := LockStateDir(cfg.StateDir, time.Minute)
	if err != nil {
		t.Fatalf("LockStateDir with a wait: %v", err)
	}
	l.Unlock()
}

// TestReadStatusBesideTheWriter reads a device's status while its Updater
// holds the StateDir, and after a commit, without changing anything.
func TestReadStatusBesideTheWriter(t *testing.T) {
	repo := tuftest.New(t)
	d := newDevice(t, repo)
	ctx := context.Background()
	st, err := ReadStatus(ctx, d.u.cfg)
	if err != nil {
		t.Fatalf("ReadStatus beside the writer: %v", err)
	}
	if got := st.Components[0].Installed; got != "1.0.0" {
		t.Errorf("before any update: installed %q, want the factory version 1.0.0", got)
	}
	repo.AddTarget("rootfs/1.1.0.img", image("1.1.0", 1<<20), custom("1.1.0"))
	repo.Publish()
	if err := d.update(); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := d.reboot(); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	st, err = ReadStatus(ctx, d.u.cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := d.u.Status(ctx)
	if got := st.Components[0]; got.Installed != "1.1.0" || got.Slots["b"] != want.Components[0].Slots["b"] || !reflect.DeepEqual(got.Boot, want.Components[0].Boot) {
		t.Errorf("ReadStatus = %+v, want what the writer's Status says: %+v", got, want.Components[0])
	}
	statePath := filepath.Join(d.stateDir, stateFile)
	if err := os.WriteFile(statePath, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStatus(ctx, d.u.cfg); err == nil {
		t.Error("ReadStatus of a corrupt state file succeeded")
	}
	if b, _ := os.ReadFile(statePath); string(b) != "{not json" {
		t.Error("ReadStatus changed the state file; a reader must not")
	}
}
