package updater

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
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
