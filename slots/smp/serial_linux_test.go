package smp_test

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
)

// openPTY opens a pseudo-terminal pair in raw mode: the MCU gets the
// master, the gateway the terminal, as it would get /dev/ttyACM0.
func openPTY(t testing.TB) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pty in CI: %v", err)
		}
		t.Skipf("no pty: %v", err)
	}
	var n int
	ctl := func(f *os.File, op func(fd int) error) {
		t.Helper()
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var opErr error
		if err := rc.Control(func(fd uintptr) { opErr = op(int(fd)) }); err != nil || opErr != nil {
			t.Fatalf("pty ioctl: %v %v", err, opErr)
		}
	}
	ctl(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		return err
	})
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	ctl(tty, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		// cfmakeraw: no echo, no line editing, no CR/LF translation.
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		tio.Cflag &^= unix.CSIZE | unix.PARENB
		tio.Cflag |= unix.CS8
		tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	})
	return master, tty
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
	d, err := smp.New(smp.Config{Name: "uart", Dir: t.TempDir(), Transport: smp.NewSerial(tty),
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
	v2 := image(50_000, 2, nil)
	stage(t, d, "b", v2)
	if err := d.Arm(ctx, "b", 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.ImageCheck().Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, d, slots.BootStatus{Booted: "b", Primary: "b"})
	wantRunning(t, m, v2)
}
