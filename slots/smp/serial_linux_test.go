package smp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// openPTY opens a pseudo-terminal and returns its master, for the MCU,
// and the path of its terminal, which the gateway opens as it would
// open /dev/ttyACM0.
func openPTY(t testing.TB) (master *os.File, tty string) {
	t.Helper()
	master, tty, err := newPTY()
	if errors.Is(err, errNoPTY) {
		ci.Skipf(t, "no pty: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return master, tty
}

var errNoPTY = errors.New("cannot open /dev/ptmx")

// newPTY opens a pseudo-terminal: its master and the path of its
// terminal. It wraps errNoPTY when the system has none.
func newPTY() (master *os.File, tty string, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", errNoPTY, err)
	}
	rc, err := master.SyscallConn()
	if err != nil {
		master.Close()
		return nil, "", err
	}
	var n int
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr == nil {
			n, ioErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	})
	if err != nil || ioErr != nil {
		master.Close()
		return nil, "", fmt.Errorf("pty: %v %v", err, ioErr)
	}
	return master, fmt.Sprintf("/dev/pts/%d", n), nil
}

// serialRig is a simulated MCU answering on a pty and a Device on the
// other end.
func serialRig(t testing.TB) (*smptest.MCU, *smp.Device, []byte) {
	t.Helper()
	master, tty := openPTY(t)
	v1 := image(12_000, 1, nil)
	m, err := smptest.New(smptest.Config{Dir: t.TempDir(), Factory: v1})
	if err != nil {
		t.Fatal(err)
	}
	m.ServeSerial(master)
	t.Cleanup(func() { m.Close() })
	port, err := smp.OpenSerial(tty, 115200)
	if err != nil {
		t.Fatal(err)
	}
	d, err := smp.New(smp.Config{Name: "uart", Dir: t.TempDir(), Transport: port,
		Client: smp.ClientConfig{Timeout: time.Second}, ResetGrace: 2 * time.Millisecond, ResetTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return m, d, v1
}

// TestSerialPTY runs a trial over SMP console framing on a pty.
func TestSerialPTY(t *testing.T) {
	m, d, _ := serialRig(t)
	ctx := context.Background()
	long := string(make([]byte, 300)) // an echo that spans several frames
	if got, err := d.Client().Echo(ctx, long); err != nil || got != long {
		t.Fatalf("Echo of %d bytes: %d bytes, %v", len(long), len(got), err)
	}
	commitTrial(t, d, m, image(50_000, 2, nil))
}

func TestOpenSerialRefuses(t *testing.T) {
	if _, err := smp.OpenSerial("/dev/null", 12345); !errors.Is(err, smp.ErrConfig) {
		t.Errorf("OpenSerial at 12345 baud: %v, want ErrConfig", err)
	}
	if _, err := smp.OpenSerial("/dev/null", 115200); err == nil {
		t.Errorf("OpenSerial of /dev/null (not a terminal): got nil error")
	}
}
